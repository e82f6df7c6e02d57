// The job every optimizing command runs: load the model, run a pipeline, verify, save atomically,
// write the report. Commands (optimize, later quantize, fuse, ...) differ only in the pipeline they
// build and their default output suffix.
#pragma once
#include <filesystem>
#include <optional>
#include <string>

#include "io/model_io.h"
#include "pass/manager.h"
#include "report/report.h"

namespace mopt::driver {

namespace fs = std::filesystem;

struct OptimizeRequest {
  std::string command = "optimize";
  fs::path input;
  fs::path output;       // empty: <input stem><default_suffix> beside the input
  std::string default_suffix = ".opt.onnx";
  fs::path report;       // empty: <output>.report.json
  bool in_place = false;
  pass::Pipeline pipeline;
  pass::ManagerOptions manager;
  // External data for the output: a threshold in bytes; unset keeps the input's layout (external data
  // with a 1 KiB threshold if the input used it, otherwise everything inline).
  std::optional<uint64_t> external_data_threshold;
  bool compressed_size = true;  // zstd size of input and output in the report
};

struct OptimizeResult {
  fs::path output;
  fs::path report;
  report::RunReport run;
};

// The output path for `input` when none is given: model.onnx -> model<suffix>.
fs::path default_output(const fs::path& input, const std::string& suffix);

// Throws mopt::Error on any failure; then no output model and no report are written.
OptimizeResult run_optimize(const OptimizeRequest& request);

}  // namespace mopt::driver
