// Measuring what quantization cost, layer by layer, and keeping the most sensitive layers in float
// until the accuracy target holds.
//
// Per-layer error: the float model and the quantized model run on the same samples and each quantized
// layer's output is compared (ONNX Runtime's qdq_loss_debug, reported instead of printed).
//
// Accuracy-aware fallback, deterministic and bounded (1 + L + ceil(log2 L) evaluations for L layers),
// towards a target in accuracy-drop points (labels or a classifier-like output) and/or a lowest output
// cosine (any model: detectors, regressors, recurrent models):
//   1. quantize everything; done if the target holds
//   2. sensitivity: quantize each Conv/MatMul/Gemm alone, measure the outputs' relative L2 error
//   3. binary search the smallest k such that keeping the k most sensitive layers in float meets the
//      target (assumes more float layers never hurt, which the final evaluation re-checks)
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/accuracy.h"
#include "quant/quantize.h"

namespace mopt::quant {

// Fills each layer's error fields from float captures (by `output`) and quantized ones (by `value`).
void add_layer_errors(const eval::Captures& float_values, const eval::Captures& quantized_values, QuantizeSummary& summary);

// What the search must reach: at most `max_drop` points and/or at least `min_cosine` on every output (an
// undefined cosine never meets it). At least one is set.
struct FallbackTarget {
  std::optional<double> max_drop, min_cosine;
};

// What one quantized candidate measured: the drop (when a drop target is set) and the lowest output cosine.
struct FallbackScore {
  std::optional<double> drop;
  std::optional<double> cosine;  // null: undefined on some output
  bool meets(const FallbackTarget& target) const;
  std::string describe() const;  // "drop 1.25 pp, cosine 0.9847"
};

struct FallbackResult {
  FallbackTarget target;
  FallbackScore initial, final_score;
  std::string basis;  // what the drop measures
  int evaluations = 0;
  std::vector<std::pair<std::string, double>> sensitivity;  // node -> relative L2 when quantized alone, descending
  std::vector<std::string> kept_float;
  nlohmann::json to_json() const;
};

// Chooses layers to keep in float so that quantizing `model` with `config` (plus those exclusions)
// meets `target` on `evaluation`. `model` is not modified; candidates are
// quantized on copies. Nodes of `config` must have names (see rewrite::name_unnamed_nodes).
FallbackResult accuracy_aware_exclusions(const ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table,
                                         const eval::Evaluation& evaluation, const FallbackTarget& target);

}  // namespace mopt::quant
