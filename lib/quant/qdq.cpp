// Static quantization in QDQ form: QuantizeLinear/DequantizeLinear pairs carry calibrated parameters
// into the float graph, so any runtime can run it and ONNX Runtime fuses the patterns into integer
// kernels.
//
//   Before:  x -> Conv(W, B) -> y -> Relu -> r -> MaxPool -> m
//   After:   x -> Q -> DQ -> Conv(DQ(Wq), DQ(Bq int32)) -> y -> Q -> DQ -> MaxPool -> Q -> DQ -> m
//
// - Activations get one Q/DQ pair per tensor (uint8 asymmetric by default; tensor-type gives one tensor
//   int8, uint8, int16 or uint16, opset 21 for 16 bits), shared by every quantized consumer; a quantized
//   node's output pair feeds all of its consumers.
// - --bias-correction adds E[(W - W_q) x] per output channel (input channel means from calibration) to the
//   bias before it is quantized, cancelling the mean shift that rounding the weights causes.
// - Weights are quantized once at rest (int8 symmetric by default, per output channel with
//   --per-channel) and dequantized by a DQ node; Conv and Gemm biases become int32 with scale
//   x_scale * w_scale, as QLinearConv needs.
// - A Relu right after Conv/MatMul/Gemm is folded into the output pair when the pair's zero point is
//   the type's lowest value (asymmetric activations): saturation then computes the Relu exactly.
// - Operators that only move values (MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze) are
//   quantized only when their input already is, and their output reuses the input's parameters, so
//   integer execution is exact.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

#include "quant/params.h"
#include "quant/quantize.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"
#include "util/error.h"

namespace mopt::quant {
using namespace ::mopt::rewrite;  // graph-building helpers shared with the fusion passes
namespace {

namespace d = ir::dtype;

// The quantized data input of a value-moving operator (its other inputs are shapes/axes).
bool is_data_input(const ir::Node& node, size_t index) { return index == 0 || !moves_values(node.op_type()); }

// Bias correction: how much rounding the weights of `node` shifts its output on average, per output
// channel, E[(W - W_q) x] = sum over the reduction of (W - W_q) * mean(x) (the mean of each input channel
// on the calibration data; Conv padding is ignored). Empty when the layout or the means do not fit.
std::vector<double> rounding_shift(const ir::Node& node, std::span<const float> w, const std::vector<int64_t>& dims,
                                   const QuantizedWeight& qw, int32_t qtype, const std::vector<double>& mean) {
  auto dequantized = [&](size_t i, size_t channel) {
    const QuantParams& p = qw.params[qw.axis ? channel : 0];
    return static_cast<double>(qw.value(i, qtype) - p.zero_point) * static_cast<double>(p.scale);
  };
  std::vector<double> shift;
  if (node.is_op("Conv") && dims.size() >= 3) {
    const int64_t m = dims[0], cg = dims[1], group = node.attribute_int("group").value_or(1);
    int64_t inner = 1;
    for (size_t i = 2; i < dims.size(); ++i) inner *= dims[i];
    if (group <= 0 || m % group != 0 || static_cast<int64_t>(mean.size()) != cg * group) return {};
    shift.assign(static_cast<size_t>(m), 0.0);
    for (int64_t o = 0; o < m; ++o) {
      const int64_t g = o / (m / group);
      for (int64_t j = 0; j < cg; ++j) {
        const double x = mean[static_cast<size_t>(g * cg + j)];
        for (int64_t t = 0; t < inner; ++t) {
          const size_t i = static_cast<size_t>((o * cg + j) * inner + t);
          shift[static_cast<size_t>(o)] += (w[i] - dequantized(i, static_cast<size_t>(o))) * x;
        }
      }
    }
    return shift;
  }
  if (dims.size() != 2 || (node.is_op("Gemm") && node.attribute_int("transA").value_or(0) != 0)) return {};
  const bool transposed = node.is_op("Gemm") && node.attribute_int("transB").value_or(0) != 0;  // [N, K]
  const int64_t k = transposed ? dims[1] : dims[0], n = transposed ? dims[0] : dims[1];
  if (static_cast<int64_t>(mean.size()) != k) return {};
  shift.assign(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const size_t i = static_cast<size_t>(transposed ? c * k + r : r * n + c);
      shift[static_cast<size_t>(c)] += (w[i] - dequantized(i, static_cast<size_t>(c))) * mean[static_cast<size_t>(r)];
    }
  }
  return shift;
}

class QdqWriter {
 public:
  QdqWriter(ir::Model& model, const QuantizeConfig& config, const CalibrationTable& table, QuantizeSummary& summary)
      : graph_(model.graph()), config_(config), table_(table), summary_(summary), positions_(node_positions(graph_)) {}

  struct Pair {
    ir::Value* dq;
    QuantParams params;
    ir::Value* source;  // the float value it quantizes
    int32_t qtype;      // its quantized type
  };

  // The quantized type of activation `x` whose range is `range_of`'s (a folded Relu's output, or x): the
  // tensor-type override of either, else the configured type.
  int32_t activation_type(const ir::Value* x, const ir::Value* range_of) const {
    return lookup(config_.activation_types, x, range_of).value_or(config_.activation_type);
  }
  // Likewise for a symmetric range (the overrides file's "symmetric", else symmetric-activations).
  bool activation_symmetric(const ir::Value* x, const ir::Value* range_of) const {
    return lookup(config_.activation_symmetry, x, range_of).value_or(config_.symmetric_activations);
  }

  // The pair of `x`, whether `x` is the float tensor or the pair's dequantized output.
  const Pair* pair_of(ir::Value* x) const {
    auto it = pairs_.find(x);
    if (it != pairs_.end()) return &it->second;
    auto dq = by_dq_.find(x);
    return dq == by_dq_.end() ? nullptr : dq->second;
  }

  // The pair of activation `x`, created before its first consumer (using the calibrated range of
  // `range_of` and x's type, or the parameters and type of the `inherited` pair). nullptr when no range is known.
  const Pair* activation_pair(ir::Value* x, ir::Value* range_of, const Pair* inherited) {
    if (const Pair* p = pair_of(x)) return p;
    QuantParams params;
    TensorRecord rec;
    rec.name = x->name();
    rec.role = "activation";
    const int32_t qtype = inherited ? inherited->qtype : activation_type(x, range_of);
    rec.dtype = d::name(qtype);
    if (inherited) {
      params = inherited->params;
      rec.method = "inherited from the input";
    } else {
      const TensorRange* r = table_.find(range_of->name());
      if (r == nullptr) return nullptr;
      rec.symmetric = activation_symmetric(x, range_of);
      params = compute_params(r->min, r->max, qtype, rec.symmetric);
      rec.method = r->overridden ? std::string(kOverrideMethod) : table_.method;
      rec.min = r->min;
      rec.max = r->max;
      rec.observed_min = r->observed_min;
      rec.observed_max = r->observed_max;
    }
    rec.scale = {params.scale};
    rec.zero_point = {params.zero_point};
    ir::Node* before = first_consumer(*x, positions_);
    ir::Value* scale = add_constant(graph_, x->name() + "_scale", make_float_tensor("", {}, {params.scale}));
    ir::Value* zp = add_constant(graph_, x->name() + "_zero_point", make_tensor("", qtype, {}, {params.zero_point}));
    ir::Node* q = graph_.create_node("QuantizeLinear", {x, scale, zp}, 1, before, "", x->name() + "_quantized");
    ir::Node* dq = graph_.create_node("DequantizeLinear", {q->output(0), scale, zp}, 1, before, "", x->name() + "_dequantized");
    summary_.tensors.push_back(std::move(rec));
    const Pair* pair = &pairs_.emplace(x, Pair{dq->output(0), params, x, qtype}).first->second;
    by_dq_[pair->dq] = pair;
    return pair;
  }

  // Quantizes the output of `node`: every consumer reads the dequantized value.
  bool quantize_output(ir::Node& node, ir::Value* range_of, const Pair* inherited) {
    ir::Value* y = node.output(0);
    if (y->is_graph_output() || !y->has_uses()) return false;
    std::vector<ir::Use> uses = y->uses();
    const Pair* p = activation_pair(y, range_of, inherited);
    if (p == nullptr) return false;
    for (const ir::Use& u : uses) u.node->set_input(u.input_index, p->dq);
    return true;
  }

  // A DequantizeLinear of constant `w` (input 1 of `node`) quantized per tensor or along `axis`. With
  // `input_mean` (per input channel), `*shift` gets E[(W - dequantized W) x] per output channel.
  ir::Value* weight(const ir::Node& node, ir::Value* w, std::optional<int64_t> axis, std::vector<QuantParams>* params_out,
                    const std::vector<double>* input_mean = nullptr, std::vector<double>* shift = nullptr) {
    const ir::Tensor& t = *w->constant();
    const std::vector<int64_t> dims = t.dims();
    exec::Array holder;
    const std::span<const float> values = float_span(t, holder);
    QuantizedWeight qw = quantize_weight(values, dims, config_.weight_type, config_.symmetric_weights, axis);
    if (input_mean && shift) *shift = rounding_shift(node, values, dims, qw, config_.weight_type, *input_mean);
    std::vector<float> scales;
    std::vector<int32_t> zps;
    for (const QuantParams& p : qw.params) {
      scales.push_back(p.scale);
      zps.push_back(p.zero_point);
    }
    const std::vector<int64_t> pdims = axis ? std::vector<int64_t>{dims[static_cast<size_t>(*axis)]} : std::vector<int64_t>{};
    ir::Value* q = add_constant(graph_, w->name() + "_quantized", std::move(qw.data));
    ir::Value* s = add_constant(graph_, w->name() + "_scale", make_float_tensor("", pdims, scales));
    ir::Value* z = add_constant(graph_, w->name() + "_zero_point", make_tensor("", config_.weight_type, pdims, zps));
    ir::Node* dq = graph_.create_node("DequantizeLinear", {q, s, z}, 1, first_consumer(*w, positions_), "", w->name() + "_dequantized");
    if (axis) set_int_attr(*dq, "axis", *axis);
    summary_.tensors.push_back({w->name(), "weight", d::name(config_.weight_type), "minmax", scales, zps, axis ? *axis : -1, 0,
                                qw.rmin, qw.rmax, qw.rmin, qw.rmax});
    old_weights_.push_back(w);
    *params_out = qw.params;
    return dq->output(0);
  }

  // An int32 DequantizeLinear of bias `b` with scale x_scale * w_scale[c]; nullptr if a value would not
  // fit in int32 (the bias then stays float).
  // `shift` (bias correction) is added to the float bias first.
  ir::Value* bias(ir::Value* b, float x_scale, const std::vector<QuantParams>& w_params, const std::vector<double>& shift = {}) {
    exec::Array holder;
    const std::span<const float> stored = float_span(*b->constant(), holder);
    std::vector<float> values(stored.begin(), stored.end());
    if (shift.size() == values.size()) {
      for (size_t c = 0; c < values.size(); ++c) values[c] = static_cast<float>(values[c] + shift[c]);
    }
    const int64_t n = static_cast<int64_t>(values.size());
    if (w_params.size() != 1 && static_cast<int64_t>(w_params.size()) != n) return nullptr;
    std::vector<float> scales;
    std::vector<int32_t> q;
    for (int64_t c = 0; c < n; ++c) {
      const float s = x_scale * w_params[w_params.size() == 1 ? 0 : static_cast<size_t>(c)].scale;
      const double v = std::nearbyint(static_cast<double>(values[static_cast<size_t>(c)]) / static_cast<double>(s));
      if (!(std::fabs(v) < 2147483647.0)) return nullptr;
      q.push_back(static_cast<int32_t>(v));
      if (w_params.size() != 1 || c == 0) scales.push_back(s);
    }
    const std::vector<int64_t> pdims = scales.size() == 1 ? std::vector<int64_t>{} : std::vector<int64_t>{n};
    ir::Value* bq = add_constant(graph_, b->name() + "_quantized", make_tensor("", d::kInt32, {n}, q));
    ir::Value* s = add_constant(graph_, b->name() + "_scale", make_float_tensor("", pdims, scales));
    ir::Value* z = add_constant(graph_, b->name() + "_zero_point", make_tensor("", d::kInt32, pdims, std::vector<int32_t>(scales.size(), 0)));
    ir::Node* dq = graph_.create_node("DequantizeLinear", {bq, s, z}, 1, first_consumer(*b, positions_), "", b->name() + "_dequantized");
    if (scales.size() > 1) set_int_attr(*dq, "axis", 0);
    summary_.tensors.push_back({b->name(), "bias", "int32", "x_scale * w_scale", scales, std::vector<int32_t>(scales.size(), 0),
                                scales.size() > 1 ? 0 : -1, 0, 0, 0, 0, 0});
    old_weights_.push_back(b);
    return dq->output(0);
  }

  const std::vector<ir::Value*>& old_weights() const { return old_weights_; }
  ir::Graph& graph() { return graph_; }

 private:
  template <typename T>
  static std::optional<T> lookup(const std::map<std::string, T>& overrides, const ir::Value* x, const ir::Value* range_of) {
    for (const ir::Value* v : {range_of, x}) {
      if (v == nullptr) continue;
      if (auto it = overrides.find(v->name()); it != overrides.end()) return it->second;
    }
    return std::nullopt;
  }

  ir::Graph& graph_;
  const QuantizeConfig& config_;
  const CalibrationTable& table_;
  QuantizeSummary& summary_;
  std::unordered_map<const ir::Node*, size_t> positions_;
  std::map<ir::Value*, Pair> pairs_;
  std::map<ir::Value*, const Pair*> by_dq_;
  std::vector<ir::Value*> old_weights_;
};

// The Relu consuming `node`'s output alone, when it can be folded into the output pair (whose range must
// then be asymmetric, checked by the caller).
ir::Node* foldable_relu(const ir::Node& node, const QuantizeConfig& config) {
  const ir::Value* y = node.output(0);
  if (y->is_graph_output() || y->uses().size() != 1) return nullptr;
  ir::Node* r = y->uses()[0].node;
  if (!r->is_op("Relu") || config.exclude_nodes.count(r->name()) || r->output(0)->is_graph_output()) return nullptr;
  return r;
}

// Weight axis of the output channels (rewrite/weight_layout.h): Conv 0, MatMul and Gemm the N axis.
int64_t channel_axis(const ir::Node& node) {
  const ir::Tensor* w = node.input(1)->constant();
  const std::optional<rewrite::WeightLayout> layout = rewrite::weight_layout(node, w->dims().size());
  if (!layout) fail("internal error: per-channel quantization of '{}', whose weight layout is unknown", describe(node));
  return static_cast<int64_t>(layout->output_axis);
}

// How many output channels of `node`'s weight one per-tensor int8 scale leaves with fewer than
// kCoarseLevels codes: a channel whose largest |w| is a small fraction of the tensor's rounds to a few
// values, often zero. Re-parameterized convolutions (RepVGG-style, silero_vad's encoder) are built so;
// their per-tensor int8 collapses (silero: cosine 0.31, 0.87 per channel). {coarse, channels}.
std::pair<int64_t, int64_t> coarse_channels(const ir::Node& node) {
  constexpr double kCoarseLevels = 8;
  const ir::Tensor* t = node.input(1)->constant();
  const std::vector<int64_t> dims = t->dims();
  const std::optional<rewrite::WeightLayout> layout = rewrite::weight_layout(node, dims.size());
  if (!layout) return {0, 0};
  exec::Array holder;
  const std::span<const float> values = float_span(*t, holder);
  const size_t axis = layout->output_axis;
  const int64_t channels = dims[axis];
  int64_t inner = 1;
  for (size_t i = axis + 1; i < dims.size(); ++i) inner *= dims[i];
  if (channels <= 0 || inner <= 0) return {0, 0};
  std::vector<float> absmax(static_cast<size_t>(channels), 0.0f);
  for (size_t i = 0; i < values.size(); ++i) {
    float& m = absmax[static_cast<size_t>((static_cast<int64_t>(i) / inner) % channels)];
    m = std::max(m, std::fabs(values[i]));  // NaN compares false and is skipped
  }
  const float overall = *std::max_element(absmax.begin(), absmax.end());
  const double step = overall / 127.0;  // one symmetric int8 scale for the tensor
  int64_t coarse = 0;
  for (const float m : absmax) coarse += m > 0 && m < kCoarseLevels * step;
  return {coarse, channels};
}

}  // namespace

int64_t static_qdq_opset(const QuantizeConfig& config) {
  for (const auto& [name, qtype] : config.activation_types) {
    if (qtype == d::kInt16 || qtype == d::kUint16) return 21;  // 16-bit QuantizeLinear/DequantizeLinear
  }
  return config.per_channel ? 13 : 10;
}

void quantize_static_qdq(ir::Model& model, const QuantizeConfig& config, const std::vector<ir::Node*>& nodes,
                         const CalibrationTable& table, QuantizeSummary& summary) {
  if (nodes.empty()) return;
  const int64_t need = static_qdq_opset(config);
  if (model.opset() < need)
    usage_error("static quantization{} writes QuantizeLinear/DequantizeLinear{} (opset {}); the model imports opset {}: "
                "convert it first (mopt quantize upgrades it automatically)",
                config.per_channel ? " per channel" : "", need == 21 ? " of 16-bit activations" : config.per_channel ? " with an axis" : "",
                need, model.opset());
  if (config.activation_type == d::kInt8 && !config.symmetric_activations)
    summary.notes.push_back("int8 asymmetric activations: ONNX Runtime's fastest x86 path is uint8 activations with int8 weights");
  QdqWriter w(model, config, table, summary);
  int64_t corrected = 0;  // biases corrected for the weights' rounding
  std::vector<std::string> coarse_weights;  // per-tensor weights whose channels round to a few codes
  for (ir::Node* node : nodes) {
    const std::string& op = node->op_type();
    const std::string label = describe(*node);
    if (moves_values(op)) {
      const QdqWriter::Pair* in = w.pair_of(node->input(0));
      if (in == nullptr) {
        summary.skipped.emplace_back(label, "its input is not quantized");
        continue;
      }
      node->set_input(0, in->dq);
      w.quantize_output(*node, nullptr, in);
      summary.layers.push_back(LayerRecord::of(*node, node->output(0)->name(), node->output(0)->name()));
      continue;
    }
    // Activation inputs: every non-constant float input (Conv/Gemm: only the first).
    const bool weighted = op == "Conv" || op == "Gemm" || (op == "MatMul" && node->input(1)->constant());
    std::vector<size_t> activations;
    for (size_t i = 0; i < node->inputs().size(); ++i) {
      ir::Value* v = node->input(i);
      if (v && !v->constant() && is_data_input(*node, i) && (!weighted || i == 0)) activations.push_back(i);
    }
    bool missing = false;
    for (size_t i : activations) missing |= w.pair_of(node->input(i)) == nullptr && table.find(node->input(i)->name()) == nullptr;
    if (missing) {
      summary.skipped.emplace_back(label, "an input has no calibration range");
      continue;
    }
    if (op == "Concat" || op == "Add" || op == "Mul") {
      bool constant_operand = false;
      for (ir::Value* v : node->inputs()) constant_operand |= v && v->constant();
      if (constant_operand) {
        summary.skipped.emplace_back(label, "a constant operand (only activation operands are quantized)");
        continue;
      }
    }
    // The float value the first input stands for (an earlier node's output pair may already have replaced it).
    const QdqWriter::Pair* earlier = w.pair_of(node->input(0));
    const std::string x_name = earlier ? earlier->source->name() : node->input(0)->name();
    const QdqWriter::Pair* x_pair = nullptr;
    for (size_t i : activations) {
      const QdqWriter::Pair* p = w.activation_pair(node->input(i), node->input(i), nullptr);
      node->set_input(i, p->dq);
      if (i == 0) x_pair = p;
    }
    if (weighted) {
      const std::optional<int64_t> axis = config.per_channel ? std::optional<int64_t>(channel_axis(*node)) : std::nullopt;
      if (!axis) {
        const auto [coarse, channels] = coarse_channels(*node);
        // A few small channels are normal; a tenth of them rounding to a few codes is not.
        if (channels > 0 && coarse * 10 >= channels)
          coarse_weights.push_back(fmt::format("'{}' ({} of {} channels)", describe(*node), coarse, channels));
      }
      std::vector<QuantParams> w_params;
      const TensorRange* x_range = table.find(x_name);
      const std::vector<double>* mean = config.bias_correction && x_range && !x_range->channel_mean.empty() ? &x_range->channel_mean : nullptr;
      std::vector<double> shift;
      node->set_input(1, w.weight(*node, node->input(1), axis, &w_params, mean, &shift));
      const bool plain_gemm = !node->is_op("Gemm") || (node->attribute_float("alpha").value_or(1) == 1.0f &&
                                                        node->attribute_float("beta").value_or(1) == 1.0f);
      // Bias correction of a Conv or Gemm without a bias gives it one.
      if (!shift.empty() && node->input(2) == nullptr && plain_gemm && !node->is_op("MatMul")) {
        ir::Value* zero = add_constant(w.graph(), node->output(0)->name() + "_bias",
                                       make_float_tensor("", {static_cast<int64_t>(shift.size())}, std::vector<float>(shift.size(), 0.0f)));
        if (node->inputs().size() < 3) node->add_input(zero);
        else node->set_input(2, zero);
      }
      ir::Value* b = node->input(2);
      if (b && plain_gemm && b->constant()->dims().size() == 1) {
        if (ir::Value* bq = w.bias(b, x_pair->params.scale, w_params, shift)) {
          node->set_input(2, bq);
          if (!shift.empty()) ++corrected;
        } else {
          summary.notes.push_back(fmt::format("bias of '{}' stays float: it does not fit int32 at x_scale * w_scale", label));
        }
      }
    }
    // The output: fold a following Relu into its range when exact.
    std::string output_name = node->output(0)->name();
    ir::Value* range_of = node->output(0);
    if (ir::Node* relu = foldable_relu(*node, config); relu && table.find(relu->output(0)->name())) {
      range_of = relu->output(0);
      const TensorRange* r = table.find(range_of->name());
      const int32_t y_type = w.activation_type(node->output(0), relu->output(0));
      if (!w.activation_symmetric(node->output(0), relu->output(0)) &&
          compute_params(r->min, r->max, y_type, false).zero_point == int_range(y_type, false).lo &&
          w.graph().replace_all_uses(relu->output(0), node->output(0))) {
        w.graph().erase(relu);
        summary.notes.push_back(fmt::format("Relu '{}' folded into the output range of '{}'", describe(*relu), label));
      } else {
        range_of = node->output(0);
      }
    }
    w.quantize_output(*node, range_of, nullptr);
    summary.layers.push_back(LayerRecord::of(*node, output_name, node->output(0)->name()));
  }
  if (config.bias_correction) {
    summary.notes.push_back(fmt::format("bias correction: {} bias(es) shifted by the mean output error of their rounded weights", corrected));
    constexpr int64_t kFewRows = 32;
    if (corrected > 0 && table.rows < kFewRows)
      summary.warnings.push_back(fmt::format(
          "bias correction estimated its channel means from only {} calibration row(s), which may not hold for other inputs "
          "(squeezenet calibrated on one image: held-out cosine 0.996 without it, 0.989 with it); check on held-out data "
          "(--accuracy DATA)", table.rows));
  }
  summary.biases_corrected = corrected;
  if (!coarse_weights.empty()) {
    constexpr size_t kNamed = 5;
    const size_t count = coarse_weights.size();
    coarse_weights.resize(std::min(count, kNamed));
    summary.warnings.push_back(fmt::format(
        "per-tensor int8 weights leave many output channels with fewer than 8 of 255 levels (their largest weights are "
        "a small fraction of the tensor's), so they round to a few values: {}{}; --per-channel gives each channel its own "
        "scale (silero_vad: cosine 0.31 per tensor, 0.87 per channel)",
        fmt::join(coarse_weights, ", "), count > kNamed ? fmt::format(" and {} more", count - kNamed) : ""));
  }
  remove_unused_weights(w.graph(), w.old_weights());
  // Float operators reading dequantized activations: each such border costs ONNX Runtime a
  // DequantizeLinear (and, where int8 resumes, a QuantizeLinear) instead of an integer kernel.
  std::set<const ir::Node*> quantized(nodes.begin(), nodes.end());
  std::vector<std::string> readers;
  std::set<const ir::Node*> seen;
  for (const ir::Node* n : w.graph().nodes()) {
    if (!n->is_op("DequantizeLinear") || n->input(0)->constant()) continue;
    for (const ir::Use& u : n->output(0)->uses()) {
      if (quantized.count(u.node) || u.node->is_op("QuantizeLinear") || !seen.insert(u.node).second) continue;
      readers.push_back(fmt::format("'{}' ({})", describe(*u.node), u.node->op_type()));
    }
  }
  if (!readers.empty()) {
    constexpr size_t kNamed = 5;
    const size_t more = readers.size() > kNamed ? readers.size() - kNamed : 0;
    readers.resize(std::min(readers.size(), kNamed));
    summary.warnings.push_back(fmt::format(
        "{} float operator(s) read dequantized activations, each a DequantizeLinear/QuantizeLinear round trip in ONNX "
        "Runtime instead of an integer kernel: {}{} (where many such borders surround small int8 operators the model "
        "runs slower than float; --target ort-cpu keeps those regions float)",
        seen.size(), fmt::join(readers, ", "), more ? fmt::format(" and {} more", more) : ""));
  }
}

}  // namespace mopt::quant
