// Quantization rewrites of a model's main graph, shared by the `quantize` pass and `mopt quantize`.
//
//   dynamic      weights int8 at rest, activations quantized at run time (DynamicQuantizeLinear +
//                MatMulInteger, as ONNX Runtime's quantize_dynamic writes); MatMul and Gemm
//   static       activations and weights quantized with calibrated ranges, written as QDQ
//                (QuantizeLinear/DequantizeLinear pairs around operators) or QOperator (QLinearConv,
//                QLinearMatMul, integer MaxPool/Reshape/...: the QDQ form with its patterns fused)
//   weight-only  MatMul weights in 4- or 8-bit blocks along K with a scale (and zero point) per block,
//                written as ONNX Runtime's com.microsoft MatMulNBits
//
// Every rewrite keeps the graph's interface (inputs and outputs keep names and float types) and leaves
// alone what it cannot prove it handles: non-constant weights, unknown attributes, non-float tensors,
// opsets below what the written operators need. The summary says what was quantized, with which
// parameters, and why each skipped node was skipped.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ir/ir.h"
#include "quant/calibrate.h"

namespace mopt::quant {

enum class Mode { Dynamic, Static, WeightOnly };
enum class Format { QDQ, QOperator };

struct QuantizeConfig {
  Mode mode = Mode::Dynamic;
  Format format = Format::QDQ;
  bool per_channel = false;
  int32_t weight_type = ir::dtype::kInt8;
  int32_t activation_type = ir::dtype::kUint8;
  bool symmetric_weights = true;
  bool symmetric_activations = false;
  std::set<std::string> op_types;  // empty: the mode's defaults (default_op_types)
  std::set<std::string> exclude_nodes, exclude_op_types;
  bool keep_first = false, keep_last = false;  // first/last Conv, MatMul or Gemm stays float
  // weight-only
  int bits = 4;
  int64_t block_size = 32;
  int64_t accuracy_level = 0;  // MatMulNBits accuracy_level (0: unset, 4: int8 compute of A)
};

std::set<std::string> default_op_types(Mode mode);
std::set<std::string> supported_op_types(Mode mode);  // what --op-types may name
// Operators that move values without arithmetic (MaxPool, Reshape, Flatten, Transpose, Squeeze,
// Unsqueeze): quantized with their input's parameters, so they run exactly on integer tensors.
bool moves_values(const std::string& op_type);
Mode parse_mode(const std::string& name);
Format parse_format(const std::string& name);
int32_t parse_qtype(const std::string& name, bool allow_4bit = false);
const char* name(Mode mode);

// One quantized tensor in the report.
struct TensorRecord {
  std::string name;   // the float tensor
  std::string role;   // "weight", "bias", "activation"
  std::string dtype;  // quantized type
  std::string method; // "minmax", "entropy", ... for activations; "minmax" for weights; "dynamic"
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  int64_t axis = -1;  // per-channel axis, or -1
  int64_t block_size = 0;
  double min = 0, max = 0;                   // the range the parameters cover
  double observed_min = 0, observed_max = 0; // the float values seen (weights: their range)
};

// A quantized node: `output` is its float output in the original model, `value` the name carrying that
// (dequantized) value in the quantized model, for per-layer error reports.
struct LayerRecord {
  std::string node, op_type, output, value;
  // Error of the layer's output against the float model on the same inputs (like ONNX Runtime's
  // qdq_loss_debug), when measured: relative L2, cosine similarity, max |difference|.
  std::optional<double> relative_l2, cosine, max_abs_error;
  static LayerRecord of(const ir::Node& node, std::string output, std::string value) {
    std::string label = node.name().empty() ? node.op_type() + " -> " + output : node.name();
    return {std::move(label), node.op_type(), std::move(output), std::move(value), std::nullopt, std::nullopt, std::nullopt};
  }
};

struct QuantizeSummary {
  std::string mode;
  std::vector<LayerRecord> layers;
  std::vector<std::pair<std::string, std::string>> skipped;  // node, reason
  std::vector<TensorRecord> tensors;
  std::vector<std::string> notes;
  std::vector<std::string> warnings;  // what may make the result worse than the user expects (report warnings)
  int64_t nodes_quantized() const { return static_cast<int64_t>(layers.size()); }
};

// Nodes the config selects and that the mode can handle, in graph order; skipped nodes with reasons
// are appended to `skipped` (only nodes whose op type is selected are mentioned).
std::vector<ir::Node*> select_nodes(const ir::Model& model, const QuantizeConfig& config,
                                    std::vector<std::pair<std::string, std::string>>* skipped);

// Rewrites `model` in place. Static mode needs `table` (ranges of the tensors it quantizes). Throws
// mopt::Error (usage) for a configuration the model cannot take, e.g. per-channel QDQ below opset 13.
QuantizeSummary quantize_model(ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table);

nlohmann::json to_json(const QuantizeSummary& summary);

// ---- the rewrites behind quantize_model (one file each) ----
void quantize_dynamic(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                      QuantizeSummary& summary);
void quantize_static_qdq(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                         const CalibrationTable& table, QuantizeSummary& summary);
// Fuses DequantizeLinear -> op -> QuantizeLinear patterns of a QDQ graph into QOperator nodes.
void qdq_to_qoperator(ir::Model& model, QuantizeSummary& summary);
void quantize_weight_only(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                          QuantizeSummary& summary);

}  // namespace mopt::quant
