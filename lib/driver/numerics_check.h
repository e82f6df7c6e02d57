// --verify-numerics: an instrument (pass/instrument.h) that runs the model on the accuracy samples after
// every pass that changed it and has the pass undone when an output moved by more than
// tolerance * max(1, max|output|) (eval::scaled_max_difference, NaN-aware) from the last accepted state.
#pragma once
#include "eval/accuracy.h"
#include "pass/instrument.h"

namespace mopt::driver {

class NumericsCheck : public pass::PassInstrument {
 public:
  // `evaluation` (samples and the original's outputs) must outlive the check. A usage error when there is
  // none (--accuracy off) or it has no samples.
  NumericsCheck(const eval::Evaluation* evaluation, double tolerance);
  void before_pipeline(const ir::Model&) override;
  bool may_undo() const override { return true; }
  std::string after_change(const std::string& pass, const ir::Model& model) override;

 private:
  const eval::Evaluation& evaluation_;
  double tolerance_;
  eval::Outputs current_;  // the outputs of the last accepted state
};

}  // namespace mopt::driver
