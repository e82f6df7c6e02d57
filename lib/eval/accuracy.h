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

// Runs `model` on each sample. Throws mopt::Error if the executor cannot run it.
Outputs run_samples(const ir::Model& model, const std::vector<data::Feeds>& samples, int threads = 0);

struct OutputMetrics {
  std::string name;
  uint64_t elements = 0;
  double max_abs_error = 0, mean_abs_error = 0, relative_l2 = 0, cosine = 1, snr_db = 0;
  uint64_t nonfinite_mismatches = 0;  // NaN/Inf in one model where the other has a finite value
  // Classifier-like outputs ([N, C] after dropping unit dims, C >= 2): agreement of predictions.
  bool classifier = false;
  uint64_t rows = 0;
  double top1_agreement = 0;                // fraction of rows with the same argmax
  std::optional<double> top5_agreement;     // reference top-1 within candidate top-5 (C >= 5)
};

struct LabelMetrics {
  std::string output;
  uint64_t count = 0;
  double reference_accuracy = 0, candidate_accuracy = 0;
  double drop() const { return reference_accuracy - candidate_accuracy; }  // fraction, positive = worse
};

struct Comparison {
  std::string data;  // "random (N samples, seed S)" or the data path
  size_t samples = 0;
  std::vector<OutputMetrics> outputs;
  std::optional<LabelMetrics> labels;
  double reference_seconds = 0, candidate_seconds = 0;
};

// `labels`: integer class per row, rows concatenated over samples in order; `label_output` picks the
// output (default: the first classifier-like one).
Comparison compare_outputs(const Outputs& reference, const Outputs& candidate, const exec::Array* labels = nullptr,
                           const std::string& label_output = "");
// Accuracy of one model's outputs against labels (mopt run --labels).
LabelMetrics label_accuracy(const Outputs& outputs, const exec::Array& labels, const std::string& label_output = "");

// The data and reference outputs the driver measures accuracy with, offered to passes that search for
// an accuracy target or report per-layer errors (quantize's accuracy-aware fallback).
struct Evaluation {
  std::vector<data::Feeds> samples;
  Outputs reference;
  std::optional<exec::Array> labels;
  std::string label_output;
  int threads = 0;
  // Runs `model` on the samples and compares its outputs with the reference (and labels).
  Comparison evaluate(const ir::Model& model) const;
};

struct Gates {
  std::optional<double> max_accuracy_drop;  // percentage points
  std::optional<double> min_cosine;
  std::optional<uint64_t> max_size;  // bytes of the output model (file + external data)
  bool any() const { return max_accuracy_drop || min_cosine || max_size; }
};

struct GateResult {
  std::string gate;       // "max-accuracy-drop", ...
  bool passed = false;
  std::string measured;   // the number that was checked, or why it could not be measured
  std::string limit;
  std::string message;    // one line for the terminal
};

// The accuracy drop in percentage points: labelled accuracy when labels were given, otherwise the top-1
// disagreement on the first classifier-like output; nullopt when neither exists. `basis` says which.
std::optional<double> accuracy_drop_points(const Comparison& comparison, std::string* basis = nullptr);

// Evaluates every set gate. The accuracy gate uses labels when given, otherwise the candidate's top-1
// agreement with the original (drop = 100% - agreement); with neither it fails as not measurable.
std::vector<GateResult> check_gates(const Gates& gates, const Comparison* comparison, uint64_t output_bytes);

nlohmann::json to_json(const Comparison& comparison);
nlohmann::json to_json(const std::vector<GateResult>& gates);
// A few lines for the terminal.
std::string summary(const Comparison& comparison);

}  // namespace mopt::eval
