// Runs a pipeline over a model: times every pass, gathers its counters, and verifies the result.
// With verify_numerics, every change is also checked on data and undone when it moves the outputs. The IR
// invariants and the ONNX checker run on the input first, after every pass with --verify-each, and on
// the final model always. A pass that breaks a model the checker accepted is an error: nothing is
// written.
#pragma once
#include <string>
#include <vector>

#include "ir/verify.h"
#include "pass/pipeline.h"

namespace mopt::pass {

struct PassRun {
  std::string name;
  std::string spec;  // the pass with its options, as in pipeline text
  int64_t runs = 0;  // more than one inside fixpoint
  bool changed = false;
  std::string unchanged_reason;  // the pass's PassResult::unchanged_reason of its last run
  double seconds = 0;
  std::vector<std::pair<std::string, int64_t>> counters;
  nlohmann::json details;  // the pass's PassContext::details() of its last run
  int64_t rolled_back = 0;  // runs undone by --verify-numerics because the outputs drifted
};

struct ManagerOptions {
  bool verify_each = false;
  bool explain = false;
  const eval::Evaluation* evaluation = nullptr;  // handed to every pass (PassContext::evaluation)
  // Run the model on the evaluation's samples before and after every pass that changed it; a pass whose
  // outputs drift by more than tolerance * max(1, max|output|) is rolled back, with a warning naming it.
  bool verify_numerics = false;
  double numerics_tolerance = 1e-4;
};

struct PipelineResult {
  std::vector<PassRun> passes;
  std::vector<std::string> warnings;
  ir::CheckResult input_check;
  ir::CheckResult output_check;
  double seconds = 0;
};

PipelineResult run_pipeline(const Pipeline& pipeline, ir::Model& model, const ManagerOptions& options = {});

}  // namespace mopt::pass
