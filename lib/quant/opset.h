// Opset upgrades of the default ONNX domain with ONNX's own version converter, for rewrites that write
// operators newer than a model imports (per-axis QuantizeLinear needs opset 13; old exports use 7).
#pragma once
#include <cstdint>

#include "ir/ir.h"

namespace mopt::quant {

// Converts `model` in place to default-domain opset `target` (>= its current opset). Throws mopt::Error
// naming the converter's complaint (for example an operator it has no adapter for).
void upgrade_opset(ir::Model& model, int64_t target);

// Brings an IR < 4 model to IR version `target` (>= 4): initializers stop being listed as graph inputs,
// so they are weights a rewrite may replace (ONNX Runtime treats them as constants in IR < 4 models too).
// Returns false when the model already had IR version >= 4.
bool upgrade_ir_version(ir::Model& model, int64_t target);

}  // namespace mopt::quant
