// fuse-conv-add: folds the Add of a per-channel constant after a Conv or ConvTranspose into its bias.
//
//   Before:  x -> Conv(W, b) -> t -> Add(t, c) -> y        c: [C,1,1], [1,C,1,1], [1] or a scalar
//   After:   x -> Conv(W, b + c) -> y
//
// Conditions: t feeds only the Add and is not a graph output; W, b and c are float32 constants; c
// varies at most along the channel axis, so it cannot broadcast the output to a larger shape.
#include "pass/pass.h"
#include "rewrite/conv.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

class FuseConvAddPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* add : graph.nodes()) {
      if (add->dead() || !add->is_op("Add")) continue;
      const char* why = nullptr;
      std::optional<rewrite::ConvChannelOp> m = rewrite::match_conv_channel_op(*add, &why);
      if (m && !graph.replace_all_uses(add->output(0), m->conv->output(0))) why = "its output is a graph output that cannot be renamed";
      if (why) ctx.explain_skip(*add, why);
      if (!m || why) continue;
      std::vector<float> bias = m->weights.bias;
      for (size_t i = 0; i < bias.size(); ++i) bias[i] += m->values[i];
      rewrite::set_weight_and_bias(graph, *m->conv, nullptr, bias);
      graph.erase(add);
      ctx.count("adds-folded-into-bias");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseConvAddOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseConvAdd(const pass::Options&) { return std::make_unique<FuseConvAddPass>(); }

}  // namespace mopt::passes
