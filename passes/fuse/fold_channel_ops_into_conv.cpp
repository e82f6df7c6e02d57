// fold-channel-ops-into-conv: folds a per-channel Mul or Add after a Conv or ConvTranspose into its
// weights and bias. A scale and the shift that usually follows it fold in one sweep.
//
//   Before:  x -> Conv(W, b) -> t -> Mul(t, s) -> u -> Add(u, c) -> y     s, c: [C,1,1], [1,C,1,1], [1] or scalar
//   After:   x -> Conv(W * s, b * s + c) -> y
//
//   Conv(x, W)[o] * s[o] = Conv(x, W[o] * s[o]) because convolution is linear in each output channel's
//   weights; Conv(x, W, b)[o] + c[o] = Conv(x, W, b + c)[o]. Conditions: t feeds only the Mul or Add and
//   is not a graph output; W, b and the constant are float32; the constant varies at most along the
//   channel axis, so it cannot broadcast the output to a larger shape.
#include "pass/rule.h"
#include "rewrite/conv.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

class FoldChannelOpRule : public pass::RewriteRule<rewrite::ConvChannelOp> {
 public:
  std::vector<std::string> anchors() const override { return {"Mul", "Add"}; }
  std::string counter(const rewrite::ConvChannelOp&) const override { return "channel-ops-folded"; }

  pass::Matched<rewrite::ConvChannelOp> match(const ir::Node& op) const override {
    const char* why = nullptr;
    std::optional<rewrite::ConvChannelOp> m = rewrite::match_conv_channel_op(op, &why);
    if (!m) return pass::refuse(why ? why : "");
    if (!op.owner()->can_replace_all_uses(op.output(0), m->conv->output(0)))
      return pass::refuse("its output is a graph output that cannot be renamed");
    return std::move(*m);
  }

  void apply(ir::Graph& graph, ir::Node& op, const rewrite::ConvChannelOp& m) const override {
    std::vector<float> bias = m.weights.bias;
    if (op.is_op("Add")) {
      for (size_t i = 0; i < bias.size(); ++i) bias[i] += m.values[i];
      rewrite::set_weight_and_bias(graph, *m.conv, nullptr, bias);
    } else {
      for (size_t i = 0; i < bias.size(); ++i) bias[i] *= m.values[i];
      const exec::Array weight = rewrite::scale_output_channels(m.weights, m.values);
      rewrite::set_weight_and_bias(graph, *m.conv, &weight, bias);
    }
    rewrite::take_over(graph, op.output(0), m.conv->output(0));
    graph.erase(&op);
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FoldChannelOpsIntoConvOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFoldChannelOpsIntoConv(const pass::Options&) {
  return pass::make_rule_pass<FoldChannelOpRule>();
}

}  // namespace mopt::passes
