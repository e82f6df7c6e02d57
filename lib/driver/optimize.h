// The job every optimizing command runs: load the model, run a pipeline, verify, save atomically,
// write the report. Commands (optimize, later quantize, fuse, ...) differ only in the pipeline they
// build and their default output suffix.
#pragma once
#include <filesystem>
#include <optional>
#include <string>

#include "data/feeds.h"
#include "eval/accuracy.h"
#include "io/model_io.h"
#include "pass/manager.h"
#include "report/report.h"

namespace mopt::driver {

namespace fs = std::filesystem;

// How the accuracy of the output is measured against the input.
// How the accuracy of the output is measured against the input. Real data wins: an explicit source, else
// the command's calibration data (a held-out part of it when there is enough), else random inputs, and
// then every verdict says so.
struct AccuracyRequest {
  std::string source = "random";  // "random", "off", or a data path (file or folder)
  bool source_explicit = false;   // the user named the source (--accuracy/--data); "random" then is a choice
  std::string calibration;        // the command's calibration data (quantize/clip --data), used when no source is named
  bool required = false;          // asked for explicitly (or a gate needs it): failing to measure is an error
  std::vector<std::string> decisions;  // flags that decide on the data (gates, --auto-mixed): refused on unasked random data
  int random_samples = 4;
  uint64_t seed = 0;
  data::ShapeOverrides shapes;
  std::string labels;             // .npy of integer labels, optional
  std::string classifier_output;  // "" (by shape), "none" or an output name (also the output scored against labels)
  std::vector<std::string> feedback;  // "OUT=IN": the samples are a sequence with OUT fed back to IN
  int threads = 0;
};

// The kind of data `request` measures on, known before anything is loaded.
// The files a run reads, each once: every model with its external data files, then the data files named
// for accuracy, calibration and labels (a folder stands for its files); hashed for the documents' headers.
std::vector<fs::path> files_read(const std::vector<std::pair<fs::path, io::LoadInfo>>& models, const AccuracyRequest& accuracy);
std::string data_kind(const AccuracyRequest& request);

// Usage error when `request.decisions` would decide on random data the user did not ask for.
void refuse_decisions_on_unasked_random(const AccuracyRequest& request);

// Samples for `model` from the request's source (see AccuracyRequest), and where they came from.
std::vector<data::Feeds> load_or_generate_samples(const ir::Model& model, const AccuracyRequest& request,
                                                  eval::DataSource* source, std::vector<std::string>* warnings = nullptr);

struct OptimizeRequest {
  std::string command = "optimize";
  std::vector<std::string> command_line;  // for the report's header
  fs::path input;
  fs::path output;       // empty: <input stem><default_suffix> beside the input
  std::string default_suffix = ".opt.onnx";
  fs::path report;       // empty: <output>.report.json
  fs::path markdown;     // empty: none; else the report as Markdown (report/markdown.h)
  fs::path html;         // empty: none; else the report as one HTML page (report/html.h)
  bool in_place = false;
  pass::Pipeline pipeline;
  pass::ManagerOptions manager;
  // Run the model on the accuracy samples after every pass that changed it and undo a pass whose outputs
  // move by more than numerics_tolerance * max(1, max|output|) (driver/numerics_check.h).
  bool verify_numerics = false;
  double numerics_tolerance = 1e-4;
  // External data for the output: a threshold in bytes; unset keeps the input's layout (external data
  // with a 1 KiB threshold if the input used it, otherwise everything inline).
  std::optional<uint64_t> external_data_threshold;
  bool compressed_size = true;  // zstd size of input and output in the report
  AccuracyRequest accuracy;
  eval::Gates gates;
  // The passes this command exists to run ("quantize"; "clip-weights", "clip-activations"): when none of
  // them changed anything the command fails with their reasons and writes nothing, unless allow_unchanged.
  std::vector<std::string> required_change;
  bool allow_unchanged = false;
  bool per_layer = true;  // per-layer error by original node name in the report (accuracy.layers)
};

struct OptimizeResult {
  fs::path output;
  fs::path report;
  report::RunReport run;
  std::vector<eval::GateResult> gates;
  bool input_kept = false;  // --in-place and a failed gate: the input was not replaced (the report was written)
  bool gates_passed() const {
    for (const auto& g : gates) {
      if (!g.passed) return false;
    }
    return true;
  }
};

// The output path for `input` when none is given: model.onnx -> model<suffix>.
fs::path default_output(const fs::path& input, const std::string& suffix);

// Throws mopt::Error on any failure; then no output model and no report are written. A failed quality
// gate is not an error: the model and report are written and OptimizeResult::gates says what failed.
OptimizeResult run_optimize(const OptimizeRequest& request);

}  // namespace mopt::driver
