// fold-mul-add-into-conv: folds a per-channel scale after a Conv into its weights and bias; the shift
// (an Add) that usually follows is then fuse-conv-add's to fold, so the fuse group removes both.
//
//   Before:  x -> Conv(W, b) -> t -> Mul(t, s) -> u -> Add(u, c) -> y     s, c: per channel
//   After:   x -> Conv(W * s, b * s) -> u -> Add(u, c) -> y
//   (then, by fuse-conv-add)  x -> Conv(W * s, b * s + c) -> y
//
//   Conv(x, W)[o] * s[o] = Conv(x, W[o] * s[o]) because convolution is linear in each output
//   channel's weights. Conditions: t feeds only the Mul and is not a graph output; W, b and s are
//   float32 constants; s varies at most along the channel axis.
#include "pass/pass.h"
#include "rewrite/conv.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

class FoldMulAddIntoConvPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* mul : graph.nodes()) {
      if (mul->dead() || !mul->is_op("Mul")) continue;
      const char* why = nullptr;
      std::optional<rewrite::ConvChannelOp> m = rewrite::match_conv_channel_op(*mul, &why);
      if (m && !graph.replace_all_uses(mul->output(0), m->conv->output(0))) why = "its output is a graph output that cannot be renamed";
      if (why) ctx.explain_skip(*mul, why);
      if (!m || why) continue;
      std::vector<float> bias = m->weights.bias;
      for (size_t i = 0; i < bias.size(); ++i) bias[i] *= m->values[i];
      const exec::Array weight = rewrite::scale_output_channels(m->weights, m->values);
      rewrite::set_weight_and_bias(graph, *m->conv, &weight, bias);
      graph.erase(mul);
      ctx.count("scales-folded-into-conv");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FoldMulAddIntoConvOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFoldMulAddIntoConv(const pass::Options&) {
  return std::make_unique<FoldMulAddIntoConvPass>();
}

}  // namespace mopt::passes
