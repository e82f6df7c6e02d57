// Conv-family fusion helpers; see conv.h.
#include "rewrite/conv.h"

#include "rewrite/rewrite.h"

namespace mopt::rewrite {

std::optional<ConvWeights> conv_weights(const ir::Node& node, const char** why) {
  const bool transpose = node.is_op("ConvTranspose");
  if (!node.is_op("Conv") && !transpose) {
    *why = "not a Conv or ConvTranspose";
    return std::nullopt;
  }
  std::optional<exec::Array> w = constant_array(node.input(1));
  if (!w || w->dtype() != ir::dtype::kFloat || w->rank() < 3) {
    *why = "the weight is not a float32 constant";
    return std::nullopt;
  }
  ConvWeights c;
  c.node = &node;
  c.group = attr_int(node, "group", 1);
  if (c.group < 1 || w->dim(0) % c.group != 0) {
    *why = "its group attribute does not divide the channels";
    return std::nullopt;
  }
  c.out_channels = transpose ? w->dim(1) * c.group : w->dim(0);
  c.output_rank = static_cast<size_t>(w->rank());
  c.bias.assign(static_cast<size_t>(c.out_channels), 0.0f);
  if (node.input(2)) {
    std::optional<exec::Array> b = constant_array(node.input(2));
    if (!b || b->dtype() != ir::dtype::kFloat || b->numel() != c.out_channels) {
      *why = "the bias is not a float32 constant with one value per output channel";
      return std::nullopt;
    }
    std::copy(b->data<float>(), b->data<float>() + b->numel(), c.bias.begin());
  }
  c.weight = std::move(*w);
  return c;
}

std::optional<std::vector<float>> per_channel_constant(const ir::Value* value, int64_t channels, size_t rank) {
  std::optional<exec::Array> a = constant_array(value);
  if (!a || a->dtype() != ir::dtype::kFloat || static_cast<size_t>(a->rank()) > rank || rank < 2) return std::nullopt;
  const size_t offset = rank - static_cast<size_t>(a->rank());
  for (size_t i = 0; i < static_cast<size_t>(a->rank()); ++i) {
    const size_t axis = offset + i;
    const int64_t d = a->dim(static_cast<int64_t>(i));
    if (d != 1 && !(axis == 1 && d == channels)) return std::nullopt;
  }
  std::vector<float> out(static_cast<size_t>(channels));
  const float* p = a->data<float>();
  for (int64_t c = 0; c < channels; ++c) out[static_cast<size_t>(c)] = a->numel() == 1 ? p[0] : p[c];
  return out;
}

exec::Array scale_output_channels(const ConvWeights& conv, const std::vector<float>& scale) {
  const exec::Array& w = conv.weight;
  exec::Array out = exec::Array::uninitialized(ir::dtype::kFloat, w.shape());
  const float* src = w.data<float>();
  float* dst = out.data<float>();
  const int64_t d0 = w.dim(0), d1 = w.dim(1);
  const int64_t inner = w.numel() / (d0 * d1);
  const bool transpose = conv.node->is_op("ConvTranspose");
  for (int64_t i = 0; i < d0; ++i) {
    for (int64_t j = 0; j < d1; ++j) {
      // Conv: dimension 0 is the output channel. ConvTranspose: input channel i belongs to group
      // i / (d0 / group), whose output channels are g * d1 + j.
      const int64_t o = transpose ? (i / (d0 / conv.group)) * d1 + j : i;
      const float s = scale[static_cast<size_t>(o)];
      const int64_t base = (i * d1 + j) * inner;
      for (int64_t k = 0; k < inner; ++k) dst[base + k] = src[base + k] * s;
    }
  }
  return out;
}

std::optional<ConvChannelOp> match_conv_channel_op(const ir::Node& binary, const char** why) {
  *why = nullptr;
  for (size_t side = 0; side < 2; ++side) {
    ir::Value* t = binary.input(side);
    ir::Node* conv = t ? t->producer() : nullptr;
    if (conv == nullptr || conv->owner() != binary.owner() || !(conv->is_op("Conv") || conv->is_op("ConvTranspose"))) continue;
    if (!has_single_use(*t)) {
      *why = "the Conv output has other readers";
      return std::nullopt;
    }
    std::optional<ConvWeights> w = conv_weights(*conv, why);
    if (!w) return std::nullopt;
    std::optional<std::vector<float>> c = per_channel_constant(binary.input(1 - side), w->out_channels, w->output_rank);
    if (!c) {
      *why = "the other operand is not a float32 constant varying only along the channels";
      return std::nullopt;
    }
    return ConvChannelOp{conv, std::move(*w), std::move(*c)};
  }
  return std::nullopt;
}

void set_weight_and_bias(ir::Graph& graph, ir::Node& node, const exec::Array* weight, const std::vector<float>& bias) {
  std::vector<ir::Value*> old = {weight ? node.input(1) : nullptr, node.input(2)};
  const std::string base = node.input(1)->name();
  if (weight) node.set_input(1, add_constant(graph, base, *weight));
  ir::Value* b = add_constant(graph, base + "_bias", exec::Array::vector<float>(ir::dtype::kFloat, bias));
  if (node.inputs().size() > 2) node.set_input(2, b);
  else node.add_input(b);
  std::vector<ir::Value*> candidates;
  for (ir::Value* v : old) {
    if (v) candidates.push_back(v);
  }
  remove_unused_weights(graph, candidates);
}

}  // namespace mopt::rewrite
