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
      for (size_t side = 0; side < 2; ++side) {
        ir::Value* t = mul->input(side);
        ir::Node* conv = t ? t->producer() : nullptr;
        if (conv == nullptr || conv->owner() != &graph || !(conv->is_op("Conv") || conv->is_op("ConvTranspose"))) continue;
        if (const char* why = fold(graph, *conv, *mul, side)) {
          ctx.explain_skip(*mul, why);
        } else {
          ctx.count("scales-folded-into-conv");
          changed = true;
        }
        break;
      }
    }
    return changed;
  }

 private:
  static const char* fold(ir::Graph& graph, ir::Node& conv, ir::Node& mul, size_t side) {
    if (!rewrite::has_single_use(*conv.output(0))) return "the Conv output has other readers";
    const char* why = nullptr;
    std::optional<rewrite::ConvWeights> w = rewrite::conv_weights(conv, &why);
    if (!w) return why;
    std::optional<std::vector<float>> s = rewrite::per_channel_constant(mul.input(1 - side), w->out_channels, w->output_rank);
    if (!s) return "the other operand is not a float32 constant varying only along the channels";
    if (!graph.replace_all_uses(mul.output(0), conv.output(0))) return "its output is a graph output that cannot be renamed";
    std::vector<float> bias = w->bias;
    for (size_t i = 0; i < bias.size(); ++i) bias[i] *= (*s)[i];
    const exec::Array weight = rewrite::scale_output_channels(*w, *s);
    rewrite::set_conv_weights(graph, conv, &weight, bias);
    graph.erase(&mul);
    return nullptr;
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
