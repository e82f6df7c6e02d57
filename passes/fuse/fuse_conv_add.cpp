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
      for (size_t side = 0; side < 2; ++side) {
        ir::Value* t = add->input(side);
        ir::Node* conv = t ? t->producer() : nullptr;
        if (conv == nullptr || conv->owner() != &graph || !(conv->is_op("Conv") || conv->is_op("ConvTranspose"))) continue;
        if (const char* why = fuse(graph, *conv, *add, side)) {
          ctx.explain_skip(*add, why);
        } else {
          ctx.count("adds-folded-into-bias");
          changed = true;
        }
        break;
      }
    }
    return changed;
  }

 private:
  // Fuses and returns nullptr, or returns why not (nothing changed).
  static const char* fuse(ir::Graph& graph, ir::Node& conv, ir::Node& add, size_t side) {
    if (!rewrite::has_single_use(*conv.output(0))) return "the Conv output has other readers";
    const char* why = nullptr;
    std::optional<rewrite::ConvWeights> w = rewrite::conv_weights(conv, &why);
    if (!w) return why;
    std::optional<std::vector<float>> c = rewrite::per_channel_constant(add.input(1 - side), w->out_channels, w->output_rank);
    if (!c) return "the other operand is not a float32 constant varying only along the channels";
    if (!graph.replace_all_uses(add.output(0), conv.output(0))) return "its output is a graph output that cannot be renamed";
    std::vector<float> bias = w->bias;
    for (size_t i = 0; i < bias.size(); ++i) bias[i] += (*c)[i];
    rewrite::set_conv_weights(graph, conv, nullptr, bias);
    graph.erase(&add);
    return nullptr;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseConvAddOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseConvAdd(const pass::Options&) { return std::make_unique<FuseConvAddPass>(); }

}  // namespace mopt::passes
