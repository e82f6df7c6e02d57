// Node selection, the quantize_model entry point and the summary JSON; the rewrites live in
// dynamic.cpp, qdq.cpp, qoperator.cpp, weight_only.cpp and embedding.cpp.
#include "quant/quantize.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes
namespace {

namespace d = ir::dtype;

bool is_weighted(const std::string& op) { return op == "Conv" || op == "MatMul" || op == "Gemm"; }

// A float32 constant: weights must be float32 (float16 weights are not supported yet).
const char* float_constant_problem(const ir::Value* v) {
  if (v == nullptr) return "has no weight input";
  const ir::Tensor* t = v->constant();
  if (t == nullptr) return "its weight is not a constant";
  if (t->dtype() != d::kFloat) return "its weight is not float32";
  return nullptr;
}

bool is_float_or_unknown(const ir::Value* v) {
  if (!v->has_type() || !v->info().type().has_tensor_type()) return true;
  const int32_t t = v->info().type().tensor_type().elem_type();
  return t == 0 || t == d::kFloat;
}

// Why `node` cannot be quantized in `mode`, or nullptr.
const char* unsupported_reason(const ir::Node& node, Mode mode) {
  const std::string& op = node.op_type();
  if (!node.is_default_domain()) return "not an ONNX-domain operator";
  if (op == "Gather") return mode == Mode::WeightOnly ? nullptr : "not supported in this mode";  // an embedding (select_nodes)
  for (const ir::Value* v : node.inputs()) {
    if (v && !v->constant() && !is_float_or_unknown(v)) return "an input is not float32";
  }
  if (op == "Conv") {
    if (node.input(0) == nullptr || node.input(0)->constant()) return "its input is a constant";
    if (const char* p = float_constant_problem(node.input(1))) return p;
    if (node.input(2) && float_constant_problem(node.input(2))) return "its bias is not a float32 constant";
    return nullptr;
  }
  if (op == "MatMul") {
    if (node.input(0) == nullptr || node.input(0)->constant()) return "its first input is a constant";
    const ir::Tensor* w = node.input(1) ? node.input(1)->constant() : nullptr;
    if (w == nullptr) return mode == Mode::Static ? nullptr : "its weight is not a constant";
    if (const char* p = float_constant_problem(node.input(1))) return p;
    if (w->dims().size() != 2) return "its weight is not 2-D";
    return nullptr;
  }
  if (op == "Gemm") {
    if (mode == Mode::WeightOnly) return "not supported: Gemm in weight-only mode (MatMul only)";
    if (node.attribute_int("transA").value_or(0) != 0) return "transA=1 is not supported";
    if (node.input(0) == nullptr || node.input(0)->constant()) return "its input is a constant";
    if (const char* p = float_constant_problem(node.input(1))) return p;
    if (node.input(1)->constant()->dims().size() != 2) return "its weight is not 2-D";
    if (node.input(2) && !node.input(2)->constant()) return "its bias is not a constant";
    return nullptr;
  }
  if (mode != Mode::Static) return "not supported in this mode";
  if (op == "MaxPool" && node.output(1) != nullptr) return "its indices output is used";
  return nullptr;
}

}  // namespace

static std::string not_selected_reason(const std::string& op, const QuantizeConfig& config, const std::set<std::string>& supported) {
  if (!config.op_types.empty()) return fmt::format("{} is not in --op-types", op);
  if (config.mode == Mode::Dynamic && op == "Conv")
    return "Conv is quantized only in static mode: pass --data with calibration inputs";
  if (!supported.count(op)) return fmt::format("{} mode does not quantize {}", name(config.mode), op);
  return fmt::format("{} is not quantized by default in {} mode (--op-types)", op, name(config.mode));
}

std::set<std::string> default_op_types(Mode mode) {
  switch (mode) {
    case Mode::Dynamic: return {"MatMul", "Gemm"};
    case Mode::WeightOnly: return {"MatMul", "Gather"};
    case Mode::Static:
      // Besides the weighted operators: those ONNX Runtime runs on int8 data (integer MaxPool and data
      // movement; QLinearConcat, QLinearAdd, QLinearMul, QLinearAveragePool, QLinearGlobalAveragePool), so
      // regions of int8 data do not break at them.
      return {"Conv", "MatMul", "Gemm", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
              "Concat", "AveragePool", "GlobalAveragePool", "Add", "Mul"};
  }
  return {};
}

std::set<std::string> supported_op_types(Mode mode) {
  if (mode != Mode::Static) return default_op_types(mode);
  // Besides Conv/MatMul/Gemm: operators that move values without arithmetic keep their input's
  // parameters; the others get their own calibrated output range.
  return {"Conv", "MatMul", "Gemm", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
          "Concat", "AveragePool", "GlobalAveragePool", "Add", "Mul"};
}

bool moves_values(const std::string& op_type) {
  static const std::set<std::string> ops = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"};
  return ops.count(op_type) > 0;
}

Mode parse_mode(const std::string& n) {
  if (n == "dynamic") return Mode::Dynamic;
  if (n == "static") return Mode::Static;
  if (n == "weight-only") return Mode::WeightOnly;
  usage_error("unknown quantization mode '{}' (dynamic, static, weight-only)", n);
}

Target parse_target(const std::string& n) {
  if (n == "ort-cpu") return Target::OrtCpu;
  if (n == "portable") return Target::Portable;
  usage_error("unknown quantization target '{}' (ort-cpu, portable)", n);
}

std::optional<int64_t> reduction_depth(const ir::Node& node) {
  const ir::Value* w = node.input(1);
  if (w == nullptr) return std::nullopt;
  if (const ir::Tensor* t = w->constant()) {
    const std::vector<int64_t>& dims = t->dims();
    if (node.is_op("Conv") && dims.size() >= 3) {
      int64_t k = 1;
      for (size_t i = 1; i < dims.size(); ++i) k *= dims[i];
      return k;
    }
    if (dims.size() != 2) return std::nullopt;
    if (node.is_op("Gemm")) return dims[node.attribute_int("transB").value_or(0) != 0 ? 1 : 0];
    if (node.is_op("MatMul")) return dims[0];
    return std::nullopt;
  }
  // MatMul of two activations: K is the last axis of the first operand, when its shape says so.
  if (!node.is_op("MatMul") || node.input(0) == nullptr) return std::nullopt;
  const onnx::TypeProto& type = node.input(0)->info().type();
  if (!type.has_tensor_type() || !type.tensor_type().has_shape() || type.tensor_type().shape().dim_size() == 0) return std::nullopt;
  const onnx::TensorShapeProto_Dimension& last = type.tensor_type().shape().dim(type.tensor_type().shape().dim_size() - 1);
  if (!last.has_dim_value()) return std::nullopt;
  return last.dim_value();
}

Format parse_format(const std::string& n) {
  if (n == "qdq") return Format::QDQ;
  if (n == "qoperator") return Format::QOperator;
  usage_error("unknown quantization format '{}' (qdq, qoperator)", n);
}

int32_t parse_qtype(const std::string& n, bool allow_4bit, bool allow_16bit) {
  if (n == "int8") return d::kInt8;
  if (n == "uint8") return d::kUint8;
  if (allow_16bit && n == "int16") return d::kInt16;
  if (allow_16bit && n == "uint16") return d::kUint16;
  if (allow_4bit && n == "int4") return d::kInt4;
  if (allow_4bit && n == "uint4") return d::kUint4;
  usage_error("unknown quantized type '{}' (int8, uint8{}{})", n, allow_16bit ? ", int16, uint16" : "", allow_4bit ? ", int4, uint4" : "");
}

const char* name(Mode mode) {
  switch (mode) {
    case Mode::Dynamic: return "dynamic";
    case Mode::Static: return "static";
    case Mode::WeightOnly: return "weight-only";
  }
  return "?";
}

std::vector<ir::Node*> select_nodes(const ir::Model& model, const QuantizeConfig& config,
                                    std::vector<std::pair<std::string, std::string>>* skipped) {
  const std::set<std::string> ops = config.op_types.empty() ? default_op_types(config.mode) : config.op_types;
  const std::set<std::string> supported = supported_op_types(config.mode);
  for (const std::string& op : ops) {
    if (!supported.count(op))
      usage_error("not supported: quantizing {} in {} mode (supported: {})", op, name(config.mode), fmt::join(supported, ", "));
  }
  auto skip = [&](const ir::Node* n, std::string why) {
    if (skipped) skipped->emplace_back(describe(*n), std::move(why));
  };
  std::vector<ir::Node*> selected;
  for (ir::Node* n : model.graph().nodes()) {
    if (!n->is_default_domain()) continue;
    if (!ops.count(n->op_type())) {
      // Every Conv/MatMul/Gemm left in float is listed with a reason the user can act on.
      if (is_weighted(n->op_type())) skip(n, not_selected_reason(n->op_type(), config, supported));
      continue;
    }
    if (n->is_op("Gather") && !is_embedding_gather(*n)) continue;  // shape and index arithmetic, not a weight
    if (config.exclude_nodes.count(n->name())) {
      skip(n, "excluded by name");
      continue;
    }
    if (config.exclude_op_types.count(n->op_type())) {
      skip(n, "its op type is excluded");
      continue;
    }
    if (const char* why = unsupported_reason(*n, config.mode)) {
      skip(n, why);
      continue;
    }
    selected.push_back(n);
  }
  // Drops the first (or last) Conv/MatMul/Gemm of the selection.
  auto drop_weighted = [&](bool first, const char* why) {
    std::optional<size_t> found;
    for (size_t i = 0; i < selected.size(); ++i) {
      if (!is_weighted(selected[i]->op_type())) continue;
      found = i;
      if (first) break;
    }
    if (!found) return;
    skip(selected[*found], why);
    selected.erase(selected.begin() + static_cast<std::ptrdiff_t>(*found));
  };
  if (config.keep_first) drop_weighted(true, "kept in float: first layer (--keep-first)");
  if (config.keep_last) drop_weighted(false, "kept in float: last layer (--keep-last)");
  return selected;
}

namespace {

// Says which tensor-range overrides were applied and warns about those that quantized nothing (a tensor no
// quantized node reads or writes, or one that inherits its input's parameters, like a MaxPool output).
void report_range_overrides(const CalibrationTable& table, QuantizeSummary& summary) {
  std::vector<std::string> applied, unused;
  for (const auto& entry : table.ranges) {
    const std::string& name = entry.first;  // not a structured binding: clang 14 cannot capture those
    const TensorRange& r = entry.second;
    if (!r.overridden) continue;
    const bool used = std::any_of(summary.tensors.begin(), summary.tensors.end(),
                                  [&](const TensorRecord& t) { return t.name == name && t.method == kOverrideMethod; });
    (used ? applied : unused).push_back(fmt::format("'{}' [{:g}, {:g}] (observed [{:g}, {:g}])", name, r.min, r.max, r.observed_min, r.observed_max));
  }
  if (!applied.empty()) summary.notes.push_back(fmt::format("tensor-range overrides applied: {}", fmt::join(applied, ", ")));
  if (!unused.empty())
    summary.warnings.push_back(fmt::format("tensor-range overrides not used (no quantized node reads or writes the tensor with a "
                                           "range of its own, or it inherits its input's parameters): {}", fmt::join(unused, ", ")));
}

// Says which tensor-type overrides were applied and warns about those that quantized nothing.
void report_type_overrides(const QuantizeConfig& config, QuantizeSummary& summary) {
  std::vector<std::string> applied, unused;
  for (const auto& entry : config.activation_types) {
    const std::string& name = entry.first;
    const std::string type = d::name(entry.second);
    const bool used = std::any_of(summary.tensors.begin(), summary.tensors.end(),
                                  [&](const TensorRecord& t) { return t.role == "activation" && t.name == name && t.dtype == type; });
    (used ? applied : unused).push_back(fmt::format("'{}' {}", name, type));
  }
  if (!applied.empty()) summary.notes.push_back(fmt::format("tensor-type overrides applied: {}", fmt::join(applied, ", ")));
  if (!unused.empty())
    summary.warnings.push_back(fmt::format("tensor-type overrides not used (no quantized node reads or writes the tensor with "
                                           "parameters of its own): {}", fmt::join(unused, ", ")));
  applied.clear();
  unused.clear();
  for (const auto& entry : config.activation_symmetry) {
    const std::string& name = entry.first;
    const bool symmetric = entry.second;
    const bool used = std::any_of(summary.tensors.begin(), summary.tensors.end(), [&](const TensorRecord& t) {
      return t.role == "activation" && t.name == name && t.symmetric == symmetric && t.method != "inherited from the input";
    });
    (used ? applied : unused).push_back(fmt::format("'{}' {}", name, symmetric ? "symmetric" : "asymmetric"));
  }
  if (!applied.empty()) summary.notes.push_back(fmt::format("symmetry overrides applied: {}", fmt::join(applied, ", ")));
  if (!unused.empty())
    summary.warnings.push_back(fmt::format("symmetry overrides not used (no quantized node reads or writes the tensor with "
                                           "parameters of its own): {}", fmt::join(unused, ", ")));
}

}  // namespace

std::map<std::string, int64_t> bias_correction_inputs(const ir::Model& model, const QuantizeConfig& config) {
  std::map<std::string, int64_t> inputs;
  if (!config.bias_correction) return inputs;
  for (const ir::Node* n : select_nodes(model, config, nullptr)) {
    if (n->is_op("Conv")) inputs[n->input(0)->name()] = 1;
    else if (n->is_op("MatMul") || (n->is_op("Gemm") && n->attribute_int("transA").value_or(0) == 0)) inputs[n->input(0)->name()] = -1;
  }
  return inputs;
}

QuantizeSummary quantize_model(ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table) {
  QuantizeSummary summary;
  summary.mode = name(config.mode);
  if (config.mode == Mode::WeightOnly) {
    if (config.bits != 4 && config.bits != 8) usage_error("weight-only quantization takes --bits 4 or 8, not {}", config.bits);
    if (config.block_size < 16 || (config.block_size & (config.block_size - 1)) != 0)
      usage_error("--block-size must be a power of two >= 16, not {}", config.block_size);
  }
  bool has_subgraphs = false;
  for (const ir::Node* n : model.graph().nodes()) has_subgraphs |= !n->subgraphs().empty();
  if (has_subgraphs) summary.notes.push_back("nodes inside If/Loop/Scan subgraphs are not quantized");
  std::vector<ir::Node*> nodes = select_nodes(model, config, &summary.skipped);
  switch (config.mode) {
    case Mode::Dynamic: quantize_dynamic(model, config, nodes, summary); break;
    case Mode::WeightOnly: {
      std::vector<ir::Node*> matmuls, gathers;
      for (ir::Node* n : nodes) (n->is_op("Gather") ? gathers : matmuls).push_back(n);
      quantize_weight_only(model, config, matmuls, summary);
      quantize_gathers(model, gathers, summary);
      break;
    }
    case Mode::Static:
      if (table == nullptr) usage_error("static quantization needs calibration data");
      if (config.target == Target::OrtCpu) {
        keep_unprofitable_regions_float(*table, nodes, summary);
      } else {
        // Portable quantizes everything; say which regions ONNX Runtime's CPU kernels would run slower.
        std::vector<ir::Node*> placed = nodes;
        QuantizeSummary ort;
        keep_unprofitable_regions_float(*table, placed, ort);
        std::vector<std::string> losing;
        for (const RegionRecord& r : ort.regions) {
          if (r.kept_float) losing.push_back(fmt::format("'{}'{}", r.nodes.front(), r.nodes.size() > 1 ? fmt::format(" (+{})", r.nodes.size() - 1) : ""));
        }
        if (!losing.empty())
          summary.warnings.push_back(fmt::format(
              "{} int8 region(s) convert more at their borders than they save, which measured slower than float in ONNX "
              "Runtime's CPU kernels: {} (--target ort-cpu keeps them float)",
              losing.size(), fmt::join(losing.begin(), losing.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(losing.size(), 5)), ", ")));
      }
      quantize_static_qdq(model, config, nodes, *table, summary);
      report_range_overrides(*table, summary);
      report_type_overrides(config, summary);
      if (config.output_format() == Format::QOperator) qdq_to_qoperator(model, summary);
      break;
  }
  return summary;
}

nlohmann::json to_json(const QuantizeSummary& s) {
  nlohmann::json j;
  j["mode"] = s.mode;
  j["nodes_quantized"] = s.nodes_quantized();
  j["layers"] = nlohmann::json::array();
  for (const LayerRecord& l : s.layers) {
    nlohmann::json lj = {{"node", l.node}, {"op_type", l.op_type}, {"output", l.output}};
    if (l.relative_l2)
      lj["error"] = {{"relative_l2", *l.relative_l2}, {"cosine", l.cosine ? nlohmann::json(*l.cosine) : nlohmann::json()},
                     {"max_abs", *l.max_abs_error}};
    j["layers"].push_back(std::move(lj));
  }
  if (!s.regions.empty()) {
    j["regions"] = nlohmann::json::array();
    for (const RegionRecord& r : s.regions) {
      j["regions"].push_back({{"nodes", r.nodes},
                              {"multiply_adds", r.multiply_adds ? nlohmann::json(*r.multiply_adds) : nlohmann::json()},
                              {"converted_values", r.converted_values},
                              {"border_tensors", r.border_tensors},
                              {"cost_multiply_adds", r.cost},
                              {"kept_float", r.kept_float}});
    }
  }
  j["skipped"] = nlohmann::json::array();
  for (const auto& [node, why] : s.skipped) j["skipped"].push_back({{"node", node}, {"reason", why}});
  j["tensors"] = nlohmann::json::array();
  for (const TensorRecord& t : s.tensors) {
    nlohmann::json tj = {{"name", t.name}, {"role", t.role}, {"dtype", t.dtype}, {"method", t.method},
                         {"range", {t.min, t.max}}, {"observed_range", {t.observed_min, t.observed_max}}};
    constexpr size_t kListed = 64;  // longer parameter vectors are summarized
    auto minmax = [](const auto& v) { return nlohmann::json{{"count", v.size()}, {"min", *std::min_element(v.begin(), v.end())}, {"max", *std::max_element(v.begin(), v.end())}}; };
    if (t.scale.size() == 1) tj["scale"] = t.scale[0];
    else if (t.scale.size() <= kListed) tj["scale"] = t.scale;
    else if (!t.scale.empty()) tj["scale"] = minmax(t.scale);
    if (t.zero_point.size() == 1) tj["zero_point"] = t.zero_point[0];
    else if (t.zero_point.size() <= kListed) tj["zero_point"] = t.zero_point;
    else if (!t.zero_point.empty()) tj["zero_point"] = minmax(t.zero_point);
    if (t.axis >= 0) tj["axis"] = t.axis;
    if (t.block_size > 0) tj["block_size"] = t.block_size;
    if (t.symmetric) tj["symmetric"] = true;
    j["tensors"].push_back(std::move(tj));
  }
  if (s.biases_corrected > 0) j["biases_corrected"] = s.biases_corrected;
  if (s.weight_error) j["weight_error"] = {{"full_range", s.weight_error->first}, {"searched", s.weight_error->second}};
  j["notes"] = s.notes;
  j["warnings"] = s.warnings;
  return j;
}

}  // namespace mopt::quant
