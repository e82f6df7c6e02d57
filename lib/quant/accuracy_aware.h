// Measuring what quantization cost, layer by layer, and keeping the most sensitive layers in float
// until the accuracy target holds.
//
// Per-layer error: the float model and the quantized model run on the same samples and each quantized
// layer's output is compared (ONNX Runtime's qdq_loss_debug, reported instead of printed).
//
// Accuracy-aware fallback, deterministic and bounded (1 + L + ceil(log2 L) evaluations for L layers):
//   1. quantize everything; done if the accuracy drop is within the target
//   2. sensitivity: quantize each Conv/MatMul/Gemm alone, measure the outputs' relative L2 error
//   3. binary search the smallest k such that keeping the k most sensitive layers in float meets the
//      target (assumes more float layers never hurt, which the final evaluation re-checks)
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/accuracy.h"
#include "quant/quantize.h"

namespace mopt::quant {

// Fills each layer's error fields from float captures (by `output`) and quantized ones (by `value`).
void add_layer_errors(const eval::Captures& float_values, const eval::Captures& quantized_values, QuantizeSummary& summary);

struct FallbackResult {
  double target = 0;
  double initial_drop = 0, final_drop = 0;
  std::string basis;  // what the drop measures
  int evaluations = 0;
  std::vector<std::pair<std::string, double>> sensitivity;  // node -> relative L2 when quantized alone, descending
  std::vector<std::string> kept_float;
  nlohmann::json to_json() const;
};

// Chooses layers to keep in float so that quantizing `model` with `config` (plus those exclusions)
// drops accuracy by at most `max_drop` points on `evaluation`. `model` is not modified; candidates are
// quantized on copies. Nodes of `config` must have names (see rewrite::name_unnamed_nodes).
FallbackResult accuracy_aware_exclusions(const ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table,
                                         const eval::Evaluation& evaluation, double max_drop);

}  // namespace mopt::quant
