// Runs a pipeline over a model: times every pass, gathers its counters, and verifies the result. The IR
// invariants and the ONNX checker run on the input first, after every pass with --verify-each, and on
// the final model always. A pass that breaks a model the checker accepted is an error: nothing is
// written. Instruments (instrument.h) check every change further and may undo it (--verify-numerics).
#pragma once
#include <string>
#include <vector>

#include "ir/verify.h"
#include "pass/instrument.h"
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
  int64_t rolled_back = 0;  // runs an instrument undid (--verify-numerics: the outputs drifted)
};

struct ManagerOptions {
  bool verify_each = false;
  bool explain = false;
  const eval::Evaluation* evaluation = nullptr;  // handed to every pass (PassContext::evaluation)
  std::vector<PassInstrument*> instruments;      // run after every change, in this order
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
