// Accuracy of a candidate model against the original: both run on the same samples with the reference
// executor, then every output is compared (max/mean abs error, relative L2, cosine, SNR), classifier-like
// outputs also by top-1/top-5 agreement, and with labels by the accuracy of each model. Quality gates
// turn these numbers into a CI pass/fail (exit 3).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "data/feeds.h"
#include "exec/array.h"
#include "exec/executor.h"
#include "ir/ir.h"

namespace mopt::eval {

// Outputs of one model on every sample, in graph output order.
struct Outputs {
  std::vector<std::string> names;
  std::vector<std::vector<exec::Array>> per_sample;
  double seconds = 0;
};

// Values of `names` (main graph) computed by `model` on each of `samples`, sharing the executor's buffers.
using Captures = std::vector<std::map<std::string, exec::Array>>;
Captures capture_values(const ir::Model& model, const std::vector<data::Feeds>& samples, const std::set<std::string>& names,
                        int threads);

// Outputs fed back as inputs when samples are a sequence (RNN/VAD state): {output, input} pairs.
using Feedback = std::vector<std::pair<std::string, std::string>>;
// Parses "stateN=state"; usage error unless OUT names an output and IN an input of `model`.
std::pair<std::string, std::string> parse_feedback(const ir::Model& model, const std::string& spec);

// Runs `model` on each sample. With `feedback`, the samples are a sequence: from the second on, each
// input named there takes the previous sample's output instead of its data, as a streaming caller
// would do; each model carries its own state. Throws mopt::Error if the executor cannot run it.
// Float16 is computed as `float16` says (exec::Float16Compute; by default as ONNX Runtime's CPU provider).
Outputs run_samples(const ir::Model& model, const std::vector<data::Feeds>& samples, int threads = 0,
                    const Feedback& feedback = {},
                    exec::Float16Compute float16 = exec::Float16Compute::kLikeOnnxRuntimeCpu);
// The feeds `model` sees over the sequence with its own state carried: the samples with each fed-back
// input replaced (calibration and per-layer comparisons run them as independent samples).
std::vector<data::Feeds> carry_state(const ir::Model& model, std::vector<data::Feeds> samples, const Feedback& feedback,
                                     int threads = 0);

// An output's numbers. A comparison cannot lie: NaN/Inf in the optimized output where the original is
// finite makes the output `broken` (max error and rel-L2 infinite, cosine and SNR undefined, every gate
// fails); cosine and SNR are undefined (nullopt, with the reason) when they would say nothing, e.g. for two
// near-zero outputs, instead of reading 0 or 1.
struct OutputMetrics {
  std::string name;
  uint64_t elements = 0;
  double max_abs_error = 0, mean_abs_error = 0, relative_l2 = 0;
  std::optional<double> cosine, snr_db;  // snr_db is +inf for identical outputs
  std::string undefined_reason;          // why cosine (and SNR) are not given
  uint64_t nonfinite_mismatches = 0;     // NaN/Inf in one model where the other has a finite value
  uint64_t new_nonfinite = 0;            // ... of which NaN/Inf in the optimized model
  bool broken() const { return new_nonfinite > 0; }
  // Classifier-like outputs ([N, C] after dropping unit dims, C >= 2; or the one --classifier-output
  // names): agreement of predictions.
  bool classifier = false;
  uint64_t rows = 0;
  double top1_agreement = 0;                // fraction of rows with the same argmax
  std::optional<double> top5_agreement;     // reference top-1 within candidate top-5 (C >= 5)
};

// Largest |reference - candidate| relative to max(1, max|finite reference|): the tolerance check of
// --verify-numerics and of the tests. A NaN or infinity on one side only (or of the other sign) is an
// infinite difference; the same non-finite value on both sides agrees; different sizes are infinite too.
double scaled_max_difference(const exec::Array& reference, const exec::Array& candidate);

// The one NaN-aware comparison of two tensors' values, accumulated over samples (outputs, per-layer
// errors of the accuracy report and of quantize's details, tests).
class MetricAccumulator {
 public:
  void add(const std::vector<double>& reference, const std::vector<double>& candidate);
  OutputMetrics finish(const std::string& name) const;  // no classifier fields

 private:
  uint64_t elements_ = 0, nonfinite_mismatches_ = 0, new_nonfinite_ = 0;
  double max_abs_ = 0, sum_abs_ = 0, sum_sq_ref_ = 0, sum_sq_err_ = 0, sum_sq_cand_ = 0, dot_ = 0;
};

struct LabelMetrics {
  std::string output;
  uint64_t count = 0;
  double reference_accuracy = 0, candidate_accuracy = 0;
  double drop() const { return reference_accuracy - candidate_accuracy; }  // fraction, positive = worse
};

// Where the samples came from; every verdict says it.
struct DataSource {
  std::string kind = "random";  // "random", "data" (--accuracy/--data PATH), "calibration-holdout", "calibration"
  std::string description;      // "random inputs (seed 0)", the path, ...
  std::string note;             // e.g. "the calibration samples themselves: not independent of the calibration"
  bool random_requested = false;  // the user asked for random data (--accuracy random): verdicts on it are accepted
  bool is_random() const { return kind == "random"; }
};

// A decision (`what`: a gate, the accuracy-aware fallback, --auto-mixed) refuses random data the user did
// not ask for: a usage error that says what to pass instead.
void require_real_data(const DataSource& source, const std::string& what);

struct Comparison {
  DataSource data;
  size_t samples = 0;
  std::string classifier_note;  // which outputs were scored as classifiers, and why
  std::vector<OutputMetrics> outputs;
  std::optional<LabelMetrics> labels;
  double reference_seconds = 0, candidate_seconds = 0;
};

// `labels`: integer class per row, rows concatenated over samples in order. `classifier_output` says which
// output is scored as a classifier (top-1/top-5 agreement, labels): "" for every classifier-like one (the
// first for labels), "none" for none, or an output's name.
Comparison compare_outputs(const Outputs& reference, const Outputs& candidate, const exec::Array* labels = nullptr,
                           const std::string& classifier_output = "");
// Accuracy of one model's outputs against labels (mopt run --labels).
LabelMetrics label_accuracy(const Outputs& outputs, const exec::Array& labels, const std::string& classifier_output = "");

// The data and reference outputs the driver measures accuracy with, offered to passes that search for
// an accuracy target or report per-layer errors (quantize's accuracy-aware fallback).
struct Evaluation {
  std::vector<data::Feeds> samples;
  Outputs reference;
  std::optional<exec::Array> labels;
  std::string classifier_output;
  Feedback feedback;
  DataSource source;
  // The calibration data the samples were held out of (kind "calibration-holdout"): a pass calibrating on
  // this path leaves the held-out samples out (data::split_holdout).
  std::string holdout_of;
  int threads = 0;
  std::vector<std::string> input_names;  // the original's, in order: a renamed input is fed by position
  // Runs `model` on the samples (an input a pass renamed is fed by position, data::feeds_for).
  Outputs run(const ir::Model& model, exec::Float16Compute float16 = exec::Float16Compute::kLikeOnnxRuntimeCpu) const;
  // Runs `model` on the samples and compares its outputs with the reference (and labels).
  Comparison evaluate(const ir::Model& model,
                      exec::Float16Compute float16 = exec::Float16Compute::kLikeOnnxRuntimeCpu) const;
};

// The lowest cosine over the outputs; nullopt when an output is broken or its cosine undefined.
std::optional<double> lowest_cosine(const Comparison& comparison);

// When a result counts as DEGRADED (documented in the README, "How mopt measures accuracy").
struct Thresholds {
  double min_cosine = 0.99;       // on every output with a defined cosine
  double max_drop_points = 1.0;   // labelled accuracy, else top-1 disagreement of a classifier output
};

struct Verdict {
  std::string status = "ok";          // "ok", "degraded", "not-judged" (no metric could judge the outputs)
  std::vector<std::string> reasons;   // one line each, worst first
  std::vector<std::string> worst_outputs;
  bool degraded() const { return status == "degraded"; }
};
Verdict judge(const Comparison& comparison, const Thresholds& thresholds = {});

// Calibration samples from `path` for `model`, without the ones the accuracy check holds out of them
// (`evaluation->holdout_of == path`), so the verdict is measured on data the calibration did not see.
std::vector<data::Feeds> load_calibration(const ir::Model& model, const std::string& path, const Evaluation* evaluation);

struct Gates {
  std::optional<double> max_accuracy_drop;  // percentage points
  std::optional<double> min_cosine;
  std::optional<uint64_t> max_size;  // bytes of the output model (file + external data)
  bool fail_on_degraded = false;     // a DEGRADED verdict fails (exit 3)
  bool any() const { return max_accuracy_drop || min_cosine || max_size || fail_on_degraded; }
  bool judge_accuracy() const { return max_accuracy_drop || min_cosine || fail_on_degraded; }
};

struct GateResult {
  std::string gate;                // "max-accuracy-drop", "min-cosine", "max-size", "fail-on-degraded"
  bool passed = false;
  std::optional<double> measured;  // the number that was checked, in `unit`; unset when it could not be measured
  std::optional<double> limit;     // unset for fail-on-degraded (it judges the verdict)
  std::string unit;                // "pp" (percentage points), "cosine", "bytes"; "" for fail-on-degraded
  std::string unmeasured_reason;   // why a number gate has no `measured`: "broken", "not measurable"
  std::string verdict;             // fail-on-degraded: the verdict's status it judged ("ok", "degraded", "not-judged")
  std::string message;             // one line for the terminal
};

// The accuracy drop in percentage points: labelled accuracy when labels were given, otherwise the top-1
// disagreement on the first classifier-like output; nullopt when neither exists. `basis` says which.
std::optional<double> accuracy_drop_points(const Comparison& comparison, std::string* basis = nullptr);

// Evaluates every set gate. The accuracy gate uses labels when given, otherwise the candidate's top-1
// agreement with the original (drop = 100% - agreement); with neither it fails as not measurable. An
// output with new NaN/Inf values fails every gate.
std::vector<GateResult> check_gates(const Gates& gates, const Comparison* comparison, uint64_t output_bytes);

nlohmann::json to_json(const DataSource& source);
nlohmann::json to_json(const Verdict& verdict);
nlohmann::json to_json(const Comparison& comparison);
nlohmann::json to_json(const std::vector<GateResult>& gates);
// A few lines for the terminal.
std::string summary(const Comparison& comparison);
// One line: "verdict: DEGRADED on <data>: ..." / "verdict: ok on <data> ...".
std::string summary(const Verdict& verdict, const DataSource& source);

}  // namespace mopt::eval
