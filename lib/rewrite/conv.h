// What the Conv-family fusions share (fold-batchnorm, fold-channel-ops-into-conv,
// fold-input-normalization): reading a Conv or ConvTranspose's float weights and bias, recognizing a
// constant that varies only along the channel axis, and scaling output channels.
#pragma once
#include <optional>
#include <vector>

#include "exec/array.h"
#include "ir/ir.h"

namespace mopt::rewrite {

// A Conv or ConvTranspose (default domain) whose weight is a float32 constant of rank >= 3.
struct ConvWeights {
  const ir::Node* node = nullptr;
  exec::Array weight;        // borrowed from the initializer
  std::vector<float> bias;   // the bias input's values, or zeros when it has none
  int64_t group = 1;
  int64_t out_channels = 0;
  size_t output_rank = 0;    // the output's rank: the weight's
};

// The weights of `node`, or nullopt with *why set when it is not a Conv/ConvTranspose with constant
// float32 weight and (if present) bias.
std::optional<ConvWeights> conv_weights(const ir::Node& node, const char** why);

// The values of a float32 constant that broadcasts against a tensor of `rank` dimensions only along
// axis 1 (shape [C,1,1], [1,C,1,1], [1], a scalar, ...), expanded to `channels` values; nullopt otherwise.
std::optional<std::vector<float>> per_channel_constant(const ir::Value* value, int64_t channels, size_t rank);

// The weight with every output channel o multiplied by scale[o] (ConvTranspose's output channels
// are spread over its groups, dimension 1 of the weight).
exec::Array scale_output_channels(const ConvWeights& conv, const std::vector<float>& scale);

// `binary` (an Add or Mul) combining a Conv/ConvTranspose output with a per-channel constant.
struct ConvChannelOp {
  ir::Node* conv = nullptr;
  ConvWeights weights;
  std::vector<float> values;  // the constant, one value per output channel
};
// The match, or nullopt: with *why null when `binary` does not read a Conv of its graph at all (nothing
// to explain), else why the Conv cannot absorb it (its output has other readers, weights not constant
// float32, the constant not per channel).
std::optional<ConvChannelOp> match_conv_channel_op(const ir::Node& binary, const char** why);

// Gives a node whose input 1 is its weight and input 2 its bias (Conv, ConvTranspose, Gemm) a new bias
// initializer and, unless `weight` is null, a new weight initializer (derived names); the replaced ones
// are removed if nothing else reads them.
void set_weight_and_bias(ir::Graph& graph, ir::Node& node, const exec::Array* weight, const std::vector<float>& bias);

}  // namespace mopt::rewrite
