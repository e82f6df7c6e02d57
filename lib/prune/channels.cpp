// Channel pruning; see channels.h.
//
//   Before:  x -> Conv(W[8,3,3,3], b[8]) -> Relu -> MaxPool -> Conv(V[16,8,3,3]) -> y
//   After:   x -> Conv(W[6,3,3,3], b[6]) -> Relu -> MaxPool -> Conv(V[16,6,3,3]) -> y   (ratio 0.25)
//
// From each producer the readers of its output are followed through operators that act on every
// channel alike (Relu, Sigmoid, Clip, pooling, ...), through BatchNormalization and Add/Mul with
// per-channel constants (sliced along), through depthwise Convs (their filters follow the channels) and
// Concats on the channel axis (the channels keep their offset among the others'), to the consumers
// whose weights take the channels as input: Conv with group 1 (input-channel columns removed), Gemm
// (its K rows), Flatten -> Gemm (blocks of H*W columns). Anything else on the way (a graph output, a
// Reshape, a residual Add of two activations, another grouped Conv) keeps the producer whole.
#include "prune/channels.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <numeric>
#include <set>

#include "exec/array.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"

namespace mopt::prune {
namespace {

using rewrite::constant_array;

// What happens to one tensor when the channels are removed: `axis` of the constant `value` read by
// `node` at `input` keeps only the channels in `keep` (each channel spanning `block` consecutive
// indices along that axis).
// After a Concat the producer's channels sit at `offset` among `total` channels; the others stay.
struct Slice {
  ir::Node* node;
  size_t input;
  size_t axis;
  int64_t block = 1;
  int64_t offset = 0, total = 0;  // total 0: the producer's channels only
};

struct Plan {
  std::vector<Slice> slices;
  std::vector<std::pair<ir::Value*, int64_t>> reshaped;  // values whose channel dimension changes, block
  std::vector<ir::Node*> regrouped;                      // depthwise Convs whose group follows the channels
};

// Where the producer's channels sit in the tensor being traced.
struct Position {
  int64_t offset = 0, total = 0;  // total 0: the tensor holds exactly the producer's channels
};

bool passes_channels_through(const ir::Node& n) {
  static const std::set<std::string> kOps = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
                                             "Elu", "Selu", "Softplus", "Identity", "Dropout", "MaxPool",
                                             "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Clip", "Neg", "Abs"};
  if (!n.is_default_domain() || !kOps.count(n.op_type())) return false;
  if (n.op_type() == "Clip") {
    for (size_t i = 1; i < n.inputs().size(); ++i) {
      if (n.input(i) && !n.input(i)->constant()) return false;
    }
  }
  for (size_t o = 1; o < n.outputs().size(); ++o) {  // MaxPool indices, Dropout mask
    if (n.output(o) && (n.output(o)->has_uses() || n.output(o)->is_graph_output())) return false;
  }
  return true;
}

// The readers of `value` (channels on axis 1, `channels` of them) and how each is rewritten; returns why
// the channels cannot be removed, or nullptr with `plan` filled.
const char* trace(const ir::Value& value, int64_t channels, Plan& plan, Position pos = {}, int depth = 0) {
  if (depth > 64) return "the channel path is too long";
  if (value.is_graph_output()) return "its channels reach a graph output";
  plan.reshaped.emplace_back(const_cast<ir::Value*>(&value), 1);
  const int64_t width = pos.total ? pos.total : channels;  // channels of this tensor
  auto slice = [&](ir::Node& n, size_t input, size_t axis, int64_t block = 1) {
    plan.slices.push_back({&n, input, axis, block, pos.offset, pos.total});
  };
  for (const ir::Use& use : value.uses()) {
    ir::Node& n = *use.node;
    if (n.owner() != value.owner()) return "its channels are read inside a subgraph";
    const std::string& op = n.op_type();
    if (!n.is_default_domain()) return "a custom-domain operator reads the channels";
    if (use.input_index == 0 && passes_channels_through(n)) {
      if (const char* why = trace(*n.output(0), channels, plan, pos, depth + 1)) return why;
      continue;
    }
    if (op == "BatchNormalization" && use.input_index == 0) {
      for (size_t i = 1; i <= 4; ++i) {
        std::optional<exec::Array> p = constant_array(n.input(i));
        if (!p || p->rank() != 1 || p->dim(0) != width) return "a BatchNormalization's parameters are not constant";
        slice(n, i, 0);
      }
      if (const char* why = trace(*n.output(0), channels, plan, pos, depth + 1)) return why;
      continue;
    }
    if ((op == "Add" || op == "Mul" || op == "Sub" || op == "Div") && n.inputs().size() == 2) {
      const size_t other = 1 - use.input_index;
      std::optional<exec::Array> c = constant_array(n.input(other));
      if (!c) return "an elementwise operator combines the channels with another activation (a residual?)";
      const std::optional<size_t> rank = rewrite::rank_of(value);
      if (!rank || static_cast<size_t>(c->rank()) > *rank) return "an elementwise constant of unknown alignment";
      const size_t offset = *rank - static_cast<size_t>(c->rank());
      for (size_t d = 0; d < static_cast<size_t>(c->rank()); ++d) {
        const int64_t dim = c->dim(static_cast<int64_t>(d));
        if (offset + d == 1 && dim == width) slice(n, other, d);
        else if (dim != 1) return "an elementwise constant varies along other axes";
      }
      if (const char* why = trace(*n.output(0), channels, plan, pos, depth + 1)) return why;
      continue;
    }
    if (op == "Conv" && use.input_index == 0) {
      std::optional<exec::Array> w = constant_array(n.input(1));
      if (!w || w->dtype() != ir::dtype::kFloat) return "a following Conv's weight is not a float32 constant";
      const int64_t group = rewrite::attr_int(n, "group", 1);
      if (group == width && w->dim(0) == width && w->dim(1) == 1 && pos.total == 0) {
        // Depthwise (one filter per channel): its filters and bias follow the channels, and so does its
        // output.
        if (n.input(1)->uses().size() != 1) return "a following depthwise Conv shares its weight";
        slice(n, 1, 0);
        if (n.input(2)) {
          std::optional<exec::Array> b = constant_array(n.input(2));
          if (!b || b->numel() != width) return "a following depthwise Conv's bias is not constant";
          slice(n, 2, 0);
        }
        plan.regrouped.push_back(&n);
        if (const char* why = trace(*n.output(0), channels, plan, pos, depth + 1)) return why;
        continue;
      }
      if (group != 1) return "a following Conv is grouped but not depthwise";
      if (w->dim(1) != width) return "a following Conv's input channels do not match";
      slice(n, 1, 1);
      continue;
    }
    if (op == "Concat" && rewrite::attr_int(n, "axis", 0) == 1) {
      // The channels land at an offset among the other inputs' (whose channel counts must be static).
      int64_t offset = 0, total = 0, seen = 0;
      for (size_t i = 0; i < n.inputs().size(); ++i) {
        const ir::Value* in = n.input(i);
        if (in == &value) {
          ++seen;
          offset = total;
          total += width;
          continue;
        }
        const onnx::TypeProto& t = in ? in->info().type() : onnx::TypeProto();
        if (in == nullptr || !t.has_tensor_type() || !t.tensor_type().has_shape() || t.tensor_type().shape().dim_size() < 2 ||
            !t.tensor_type().shape().dim(1).has_dim_value())
          return "a Concat whose other inputs' channel counts are unknown";
        total += t.tensor_type().shape().dim(1).dim_value();
      }
      if (seen != 1) return "a Concat reads the channels twice";
      if (const char* why = trace(*n.output(0), channels, plan, Position{pos.offset + offset, total}, depth + 1)) return why;
      continue;
    }
    if (op == "Gemm" && use.input_index == 0 && !rewrite::attr_int(n, "transA", 0)) {
      std::optional<exec::Array> b = constant_array(n.input(1));
      if (!b || b->dtype() != ir::dtype::kFloat || b->rank() != 2) return "a following Gemm's weight is not a 2-D float32 constant";
      const size_t k_axis = rewrite::weight_layout(n, 2)->reduction_axis;
      if (b->dim(static_cast<int64_t>(k_axis)) != width) return "a following Gemm's K does not match";
      if (rewrite::rank_of(value) != std::optional<size_t>(2)) return "a Gemm reads channels of a tensor not known to be 2-D";
      slice(n, 1, k_axis);
      continue;
    }
    if (op == "Flatten" && use.input_index == 0 && rewrite::attr_int(n, "axis", 1) == 1) {
      // Each channel becomes H*W consecutive columns: the dimensions after the channels must be static
      // (the batch need not be).
      const onnx::TypeProto& type = value.info().type();
      if (!type.has_tensor_type() || !type.tensor_type().has_shape() || type.tensor_type().shape().dim_size() < 2)
        return "a Flatten of a tensor whose shape is unknown";
      int64_t spatial = 1;
      for (int d = 2; d < type.tensor_type().shape().dim_size(); ++d) {
        const auto& dim = type.tensor_type().shape().dim(d);
        if (!dim.has_dim_value()) return "a Flatten of a tensor whose spatial size is not static";
        spatial *= dim.dim_value();
      }
      ir::Value* flat = n.output(0);
      if (flat->is_graph_output()) return "its channels reach a graph output";
      for (const ir::Use& fu : flat->uses()) {
        ir::Node& g = *fu.node;
        std::optional<exec::Array> b = constant_array(g.input(1));
        if (!g.is_op("Gemm") || fu.input_index != 0 || rewrite::attr_int(g, "transA", 0) || !b || b->rank() != 2 ||
            b->dtype() != ir::dtype::kFloat)
          return "a Flatten feeds something other than a Gemm with a constant weight";
        const size_t k_axis = rewrite::weight_layout(g, 2)->reduction_axis;
        if (b->dim(static_cast<int64_t>(k_axis)) != width * spatial) return "a Gemm after Flatten does not match";
        slice(g, 1, k_axis, spatial);
      }
      plan.reshaped.emplace_back(flat, spatial);
      continue;
    }
    return op == "Reshape" || op == "Concat" || op == "Transpose" ? "a Reshape, Transpose or Concat on another axis mixes the channels"
                                                                   : "an operator the channel pass does not know reads the channels";
  }
  return nullptr;
}

// `a` with only the kept channels along `axis` (each `block` indices wide).
exec::Array keep_along(const exec::Array& a, size_t axis, const std::vector<int64_t>& keep, int64_t block) {
  std::vector<int64_t> shape = a.shape();
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t len = shape[axis];
  shape[axis] = static_cast<int64_t>(keep.size()) * block;
  exec::Array out = exec::Array::uninitialized(a.dtype(), shape);
  const size_t esize = exec::element_size(a.dtype());
  const std::byte* src = a.bytes();
  std::byte* dst = out.bytes();
  const auto row = static_cast<size_t>(block * inner) * esize;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c : keep) {
      std::memcpy(dst, src + static_cast<size_t>((o * len + c * block) * inner) * esize, row);
      dst += row;
    }
  }
  return out;
}

void set_input_constant(ir::Graph& graph, ir::Node& node, size_t input, const exec::Array& value) {
  ir::Value* old = node.input(input);
  node.set_input(input, rewrite::add_constant(graph, old->name(), value));
  rewrite::remove_unused_weights(graph, {old});
}

// The indices kept in a tensor where the producer's `channels` sit at `offset` among `total` (0: alone).
std::vector<int64_t> shifted(const std::vector<int64_t>& keep, int64_t channels, int64_t offset, int64_t total) {
  if (total == 0) return keep;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < offset; ++i) out.push_back(i);
  for (int64_t k : keep) out.push_back(offset + k);
  for (int64_t i = offset + channels; i < total; ++i) out.push_back(i);
  return out;
}

// Changes a recorded channel dimension by `delta` channels (each `block` wide).
void update_channel_dim(ir::Graph& graph, ir::Value* value, int64_t delta, int64_t block) {
  if (!value->has_type() || !value->info().type().tensor_type().has_shape()) return;
  onnx::TypeProto type = value->info().type();
  auto* shape = type.mutable_tensor_type()->mutable_shape();
  if (shape->dim_size() < 2 || !shape->dim(1).has_dim_value()) return;
  shape->mutable_dim(1)->set_dim_value(shape->dim(1).dim_value() + delta * block);
  graph.set_value_type(value, type);
}

}  // namespace

ChannelSummary prune_channels(ir::Model& model, const ChannelConfig& config) {
  ir::Graph& graph = model.graph();
  ChannelSummary summary;
  for (ir::Node* p : graph.nodes()) {
    const bool conv = p->is_op("Conv"), gemm = p->is_op("Gemm");
    if (p->dead() || !(conv || gemm)) continue;
    const std::string who = rewrite::describe(*p);
    if (std::find(config.exclude_nodes.begin(), config.exclude_nodes.end(), p->name()) != config.exclude_nodes.end()) {
      summary.kept.emplace_back(who, "excluded");
      continue;
    }
    std::optional<exec::Array> w = constant_array(p->input(1));
    if (!w || w->dtype() != ir::dtype::kFloat || w->rank() < 2) {
      summary.kept.emplace_back(who, "its weight is not a float32 constant");
      continue;
    }
    if (conv && rewrite::attr_int(*p, "group", 1) != 1) {
      summary.kept.emplace_back(who, "grouped Conv");
      continue;
    }
    if (gemm && rewrite::attr_int(*p, "transA", 0)) {
      summary.kept.emplace_back(who, "transA Gemm");
      continue;
    }
    if (p->input(1)->uses().size() != 1) {
      summary.kept.emplace_back(who, "its weight is shared");
      continue;
    }
    const std::optional<rewrite::WeightLayout> layout = rewrite::weight_layout(*p, w->rank());
    if (!layout) {
      summary.kept.emplace_back(who, "its weight's rank is not one the operator takes");
      continue;
    }
    const size_t out_axis = layout->output_axis;  // Conv: 0; Gemm: B's N axis
    const int64_t channels = w->dim(static_cast<int64_t>(out_axis));
    const auto remove = static_cast<int64_t>(std::floor(config.ratio * static_cast<double>(channels)));
    if (remove == 0 || remove >= channels) {
      summary.kept.emplace_back(who, "the ratio removes no channel (or all of them)");
      continue;
    }
    std::optional<exec::Array> bias;
    if (p->input(2)) {
      bias = constant_array(p->input(2));
      if (!bias || bias->dtype() != ir::dtype::kFloat || bias->numel() != channels) {
        summary.kept.emplace_back(who, gemm ? "its C is not a per-column float32 constant" : "its bias is not constant");
        continue;
      }
    }
    Plan plan;
    if (const char* why = trace(*p->output(0), channels, plan)) {
      summary.kept.emplace_back(who, why);
      continue;
    }
    // Rank channels by norm; keep the largest, in their original order.
    std::vector<double> norm(static_cast<size_t>(channels), 0.0);
    {
      const std::vector<int64_t>& s = w->shape();
      int64_t outer = 1, inner = 1;
      for (size_t d = 0; d < out_axis; ++d) outer *= s[d];
      for (size_t d = out_axis + 1; d < s.size(); ++d) inner *= s[d];
      const float* v = w->data<float>();
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t c = 0; c < channels; ++c) {
          for (int64_t i = 0; i < inner; ++i) {
            const double x = v[(o * channels + c) * inner + i];
            norm[static_cast<size_t>(c)] += config.l2 ? x * x : std::abs(x);
          }
        }
      }
    }
    std::vector<int64_t> order(static_cast<size_t>(channels));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return norm[static_cast<size_t>(a)] > norm[static_cast<size_t>(b)]; });
    std::vector<int64_t> keep(order.begin(), order.begin() + (channels - remove));
    std::sort(keep.begin(), keep.end());

    set_input_constant(graph, *p, 1, keep_along(*w, out_axis, keep, 1));
    if (bias) set_input_constant(graph, *p, 2, keep_along(bias->reshaped({channels}), 0, keep, 1));
    for (const Slice& s : plan.slices) {
      std::optional<exec::Array> c = constant_array(s.node->input(s.input));
      set_input_constant(graph, *s.node, s.input, keep_along(*c, s.axis, shifted(keep, channels, s.offset, s.total), s.block));
    }
    for (ir::Node* n : plan.regrouped) rewrite::set_int_attr(*n, "group", static_cast<int64_t>(keep.size()));
    for (const auto& [v, block] : plan.reshaped) update_channel_dim(graph, v, -remove, block);
    summary.pruned.push_back({who, channels, static_cast<int64_t>(keep.size())});
  }
  return summary;
}

}  // namespace mopt::prune
