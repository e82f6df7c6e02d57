// Opset and IR versions: converting the default ONNX domain to another opset with ONNX's own version
// converter (up or down), and moving the IR version.
#pragma once
#include <cstdint>

#include "ir/ir.h"

namespace mopt::convert {

// The newest default-domain opset mopt converts to, runs and writes.
inline constexpr int64_t kNewestOpset = 21;

// Converts `model` in place to default-domain opset `target`, up or down, and raises the IR version to
// at least the one released with that opset. Softmax, LogSoftmax and Hardmax cross opset 13 through
// mopt's own rewrite, which needs no input shape (ONNX's adapter does); opsets 18 to 21, which ONNX
// 1.12's converter does not know, are reached by mopt's own adapter (up only). IR 3 is left as
// upgrade_ir_version does. Throws mopt::Error with the converter's complaint (an operator it has no
// adapter for, named) when it cannot be done; the model is then unchanged. Returns false when the model
// already imports `target`.
bool convert_opset(ir::Model& model, int64_t target);

// The oldest IR version ONNX released together with `opset` (opset 13 came with IR 7).
int64_t min_ir_version_for_opset(int64_t opset);

// Brings an IR < 4 model to IR version `target` (>= 4): initializers stop being listed as graph inputs,
// so they are weights a rewrite may replace (ONNX Runtime treats them as constants in IR < 4 models too).
// Returns false when the model already had IR version >= 4.
bool upgrade_ir_version(ir::Model& model, int64_t target);

// Sets the IR version to `target`. Usage error when it is older than the model's opset needs or than 4
// (IR 3 lists every initializer as an input), or newer than 11.
void set_ir_version(ir::Model& model, int64_t target);

}  // namespace mopt::convert
