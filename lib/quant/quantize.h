// Quantization rewrites of a model's main graph, shared by the `quantize` pass and `mopt quantize`.
//
//   dynamic      weights int8 at rest, activations quantized at run time (DynamicQuantizeLinear +
//                MatMulInteger, as ONNX Runtime's quantize_dynamic writes); MatMul and Gemm
//   static       activations and weights quantized with calibrated ranges, written as QDQ
//                (QuantizeLinear/DequantizeLinear pairs around operators) or QOperator (QLinearConv,
//                QLinearMatMul, integer MaxPool/Reshape/...: the QDQ form with its patterns fused)
//   weight-only  MatMul weights in 4- or 8-bit blocks along K with a scale (and zero point) per block,
//                written as ONNX Runtime's com.microsoft MatMulNBits (QOperator) or ONNX's blocked
//                DequantizeLinear (QDQ, opset 21)
//
// Every rewrite keeps the graph's interface (inputs and outputs keep names and float types) and leaves
// alone what it cannot prove it handles: non-constant weights, unknown attributes, non-float tensors,
// opsets below what the written operators need. The summary says what was quantized, with which
// parameters, and why each skipped node was skipped.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ir/ir.h"
#include "quant/calibrate.h"

namespace mopt::quant {

enum class Mode { Dynamic, Static, WeightOnly };
enum class Format { QDQ, QOperator };
// Where the quantized model runs. OrtCpu keeps float the int8 regions that ONNX Runtime's CPU kernels
// would run slower than float (placement.cpp); Portable quantizes whatever the mode handles.
enum class Target { OrtCpu, Portable };

struct QuantizeConfig {
  Mode mode = Mode::Dynamic;
  std::optional<Format> format;  // unset: the mode's default (output_format)
  Target target = Target::OrtCpu;
  bool per_channel = false;
  int32_t weight_type = ir::dtype::kInt8;
  int32_t activation_type = ir::dtype::kUint8;
  // Static: activation tensors by name with their own quantized type (int8, uint8, int16, uint16; 16 bits
  // need opset 21), e.g. a tensor whose range int8 cannot resolve; the others get activation_type.
  std::map<std::string, int32_t> activation_types;
  // Static: activation tensors by name with their own symmetry (the overrides file), the others get
  // symmetric_activations.
  std::map<std::string, bool> activation_symmetry;
  bool symmetric_weights = true;
  bool symmetric_activations = false;
  bool bias_correction = false;  // static: cancel the mean output shift of rounded weights (qdq.cpp)
  std::set<std::string> op_types;  // empty: the mode's defaults (default_op_types)
  std::set<std::string> exclude_nodes, exclude_op_types;
  bool keep_first = false, keep_last = false;  // first/last Conv, MatMul or Gemm stays float
  // weight-only
  int bits = 4;
  int64_t block_size = 32;
  bool block_search = false;   // each block's range shrunk to the least squared rounding error (weight_only.cpp)
  int64_t accuracy_level = 0;  // MatMulNBits accuracy_level (0: unset, 4: int8 compute of A)
  // Static: QDQ unless set; weight-only: QOperator (MatMulNBits) unless set.
  Format output_format() const { return format.value_or(mode == Mode::WeightOnly ? Format::QOperator : Format::QDQ); }
};

std::set<std::string> default_op_types(Mode mode);
std::set<std::string> supported_op_types(Mode mode);  // what --op-types may name
// Operators that move values without arithmetic (MaxPool, Reshape, Flatten, Transpose, Squeeze,
// Unsqueeze): quantized with their input's parameters, so they run exactly on integer tensors.
bool moves_values(const std::string& op_type);
Mode parse_mode(const std::string& name);
Format parse_format(const std::string& name);
Target parse_target(const std::string& name);
// Multiply-adds per output value of a Conv, MatMul or Gemm (its weight's reduction axes), or nullopt
// when the shapes do not say.
std::optional<int64_t> reduction_depth(const ir::Node& node);
int32_t parse_qtype(const std::string& name, bool allow_4bit = false, bool allow_16bit = false);
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
  bool symmetric = false;                    // activations: a symmetric range (symmetric-activations or an override)
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

// A connected region of nodes quantized together (static mode): int8 data flows between its members,
// and QuantizeLinear/DequantizeLinear convert at its borders. See placement.cpp.
struct RegionRecord {
  std::vector<std::string> nodes;
  std::optional<int64_t> multiply_adds;  // per calibration sample, of its Conv/MatMul/Gemm (MatMul/Gemm: counted
                                         // 1/kMatMulSavingsDivisor); nullopt: unknown
  int64_t converted_values = 0;          // per calibration sample, quantized or dequantized at its borders
  int64_t border_tensors = 0;            // tensors converted at its borders (one Q or DQ node each)
  int64_t cost = 0;                      // what int8 must save to pay off, in multiply-adds (placement.cpp)
  bool kept_float = false;
};

struct QuantizeSummary {
  std::string mode;
  std::vector<RegionRecord> regions;
  std::vector<LayerRecord> layers;
  std::vector<std::pair<std::string, std::string>> skipped;  // node, reason
  std::vector<TensorRecord> tensors;
  std::vector<std::string> notes;
  int64_t biases_corrected = 0;
  // Weight-only with block_search: relative L2 rounding error of the MatMul weights with full-range blocks
  // and with the searched ranges.
  std::optional<std::pair<double, double>> weight_error;
  std::vector<std::string> warnings;  // what may make the result worse than the user expects (report warnings)
  int64_t nodes_quantized() const { return static_cast<int64_t>(layers.size()); }
};

// Nodes the config selects and that the mode can handle, in graph order; skipped nodes with reasons
// are appended to `skipped` (only nodes whose op type is selected are mentioned).
std::vector<ir::Node*> select_nodes(const ir::Model& model, const QuantizeConfig& config,
                                    std::vector<std::pair<std::string, std::string>>* skipped);

// TensorRecord::method of an activation whose range the user gave (quantize(tensor-range=...)).
inline constexpr const char* kOverrideMethod = "tensor-range";

// Bias correction (QuantizeConfig::bias_correction): the inputs whose per-channel means calibration must record,
// with their channel axis (1 for Conv's NCHW input, -1 for MatMul/Gemm's reduction axis).
std::map<std::string, int64_t> bias_correction_inputs(const ir::Model& model, const QuantizeConfig& config);

// Rewrites `model` in place. Static mode needs `table` (ranges of the tensors it quantizes). Throws
// mopt::Error (usage) for a configuration the model cannot take, e.g. per-channel QDQ below opset 13.
QuantizeSummary quantize_model(ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table);

nlohmann::json to_json(const QuantizeSummary& summary);

// Conversion cost of one value crossing an int8 region's border (quantized on the way in or dequantized on
// the way out), in the multiply-adds the int8 kernels must save to pay for it. Measured in ONNX Runtime
// 1.30's CPU kernels (2 threads, AMD EPYC Zen 4 with AVX-512 VNNI; scripts/bench_qdq_cost.sh,
// bench/qdq_cost.txt): a lone op with a quantized input and a dequantized output, about two conversions
// per output, against float: 3x3 Conv 1.27x at K=72 multiply-adds per output, 0.96x at 144, 0.78x at 288;
// MatMul 1.01x at K=64, 0.87x at 128, 0.48x at 512. So 32-72 per conversion, and squeezenet ran slower
// with its regions of 48 and 57 kept float than quantized: the low end is used, and only regions that
// clearly lose stay float.
constexpr int64_t kMultiplyAddsPerConvertedValue = 32;
// Fixed cost of each int8 kernel and border conversion a region runs, in the same multiply-adds: ONNX
// Runtime's int8 calls cost a few microseconds more than their float twins, which tiny models never
// earn back (mnist_winml, 0.8 M multiply-adds per image over 6 quantized nodes and 2 border
// conversions, ran 1.4-1.6x slower in int8).
constexpr int64_t kMultiplyAddsPerInt8Node = 500'000;
// MatMul and Gemm multiply-adds count 1/kMatMulSavingsDivisor of a Conv's: inside real models int8
// MatMul lost where int8 Conv won at the same balance (digits_vit's MatMul regions at 43-48 multiply-adds
// per conversion ran 1.3x slower than float; squeezenet's Conv regions at 48-57 faster), and dynamic
// MatMulInteger with K=64 was slower too (digits_vit 1.17x).
constexpr int64_t kMatMulSavingsDivisor = 2;

// --target ort-cpu: drops from `nodes` every region whose multiply-adds do not pay for its border
// conversions and int8 calls (kMultiplyAddsPerConvertedValue, kMultiplyAddsPerInt8Node), with the reason in `summary.skipped`; every region goes
// to `summary.regions`. Element counts come from the calibration table.
void keep_unprofitable_regions_float(const CalibrationTable& table, std::vector<ir::Node*>& nodes, QuantizeSummary& summary);

// ---- the rewrites behind quantize_model (one file each) ----
void quantize_dynamic(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                      QuantizeSummary& summary);
void quantize_static_qdq(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                         const CalibrationTable& table, QuantizeSummary& summary);
// The opset static QDQ needs: 10 per tensor, 13 per channel (an axis), 21 with 16-bit activations.
int64_t static_qdq_opset(const QuantizeConfig& config);
// Fuses DequantizeLinear -> op -> QuantizeLinear patterns of a QDQ graph into QOperator nodes.
void qdq_to_qoperator(ir::Model& model, QuantizeSummary& summary);
void quantize_weight_only(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                          QuantizeSummary& summary);
// Weight-only: Gathers from embedding tables become int8 rows with a scale each (embedding.cpp).
void quantize_gathers(ir::Model& model, const std::vector<ir::Node*>& nodes, QuantizeSummary& summary);
// A Gather along axis 0 of a constant float32 [V, D] table with indices computed at run time (an embedding).
bool is_embedding_gather(const ir::Node& node);

}  // namespace mopt::quant
