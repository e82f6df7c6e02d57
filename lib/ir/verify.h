// Checks run after passes: the IR's own invariants (use lists, topological order, unique names), and
// ONNX's checker on the exported model. ONNX 1.12's checker knows opsets up to 17; a model importing a
// newer opset is not judged (and the result says so) rather than rejected.
#pragma once
#include <optional>
#include <string>

#include "ir/ir.h"

namespace mopt::ir {

// Throws mopt::Error describing the first broken invariant.
void verify_invariants(const Model& model);

struct CheckResult {
  enum class Status { Passed, Failed, NotJudged } status = Status::Passed;
  std::string message;  // the checker's complaint, or why it could not judge the model
};
CheckResult run_onnx_checker(const Model& model);
// Why ONNX 1.12's checker and schemas cannot judge this model (an opset or IR version newer than it
// knows), or nullopt when they can.
std::optional<std::string> newer_than_onnx_knows(const Model& model);

// The exported model with every payload inlined up to `inline_limit` bytes and larger ones left as a
// placeholder of the right type, for ONNX tools that need the graph but not the big weights
// (checker, shape inference). Avoids copying hundreds of MB to run them. Floating-point tensors are
// inlined only up to `float_inline_limit`: shape inference reads integer shapes, axes and indices, and of
// the floats only tiny ones (Resize scales, Range bounds), never weights.
onnx::ModelProto export_for_analysis(const Model& model, uint64_t inline_limit = 1 << 20,
                                     uint64_t float_inline_limit = 1 << 20);

}  // namespace mopt::ir
