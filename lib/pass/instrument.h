// Instruments: checks the pass manager runs after every pass that changed the model, installed by whoever
// runs the pipeline (the driver installs --verify-numerics, driver/numerics_check.h; tests install their
// own). The manager itself needs only the IR: it times passes, gathers counters, and checks invariants
// and the ONNX checker.
#pragma once
#include <string>

#include "ir/ir.h"

namespace mopt::pass {

class PassInstrument {
 public:
  virtual ~PassInstrument() = default;
  // Before the first pass, on the input model.
  virtual void before_pipeline(const ir::Model&) {}
  // Whether after_change may ask to undo a pass: the manager then keeps a copy of the model before each pass.
  virtual bool may_undo() const { return false; }
  // After `pass` (its pipeline text) changed the model: "" to keep the change, else why it must be undone
  // (the manager restores the copy, warns with the reason, and does not run that pass again).
  virtual std::string after_change(const std::string& pass, const ir::Model& model) = 0;
};

}  // namespace mopt::pass
