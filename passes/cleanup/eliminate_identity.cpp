// eliminate-identity: removes Identity nodes and Dropout nodes that are no-ops at inference.
//
//   Before:  a -> Conv -> t -> Identity -> u -> Relu      After:  a -> Conv -> t -> Relu
//            a -> Dropout(ratio=0.5) -> v (mask unused)           (v's users read a)
//
// Dropout is the identity in inference: always when opset < 12 (its is_test/training modes were for
// training runs), and from opset 12 when its training_mode input is absent or a constant false. Its
// mask output must be unused, since the identity rewrite has nothing to give it.
// A graph output keeps its name: when the removed node's output is a graph output, the input takes
// over the name if it is an ordinary node output of the same graph; otherwise the node stays (a graph
// input or initializer cannot be renamed, and two outputs cannot share one value under two names).
#include <cstring>

#include "pass/pass.h"

namespace mopt::passes {
namespace {

// Why `node` must stay, or nullptr if it is an inference-time identity.
const char* reason_to_keep_dropout(const ir::Node& node) {
  if (ir::Value* mask = node.output(1); mask != nullptr && (mask->has_uses() || mask->is_graph_output()))
    return "its mask output is used";
  if (node.owner()->model()->opset() < 12) return nullptr;
  ir::Value* training = node.input(2);
  if (training == nullptr) return nullptr;
  const ir::Tensor* t = training->constant();
  if (t == nullptr) return "training_mode is not a constant";
  if (t->dtype() != ir::dtype::kBool || t->numel() != 1) return "training_mode is not a boolean scalar";
  const ir::Bytes data = t->data();
  if (data.size() != 1 || std::to_integer<int>(data.data()[0]) != 0) return "training_mode is true";
  return nullptr;
}

class EliminateIdentityPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* node : graph.nodes()) {
      const bool identity = node->is_op("Identity");
      if (!identity && !node->is_op("Dropout")) continue;
      ir::Value* in = node->input(0);
      ir::Value* out = node->output(0);
      if (in == nullptr || out == nullptr) continue;
      if (!identity) {
        if (const char* reason = reason_to_keep_dropout(*node)) {
          ctx.explain_skip(*node, reason);
          continue;
        }
      }
      if (!graph.replace_all_uses(out, in)) {
        ctx.explain_skip(*node, "its output is a graph output and its input cannot take over that name");
        continue;
      }
      graph.erase(node);
      ctx.count(identity ? "identity-removed" : "dropout-removed");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& EliminateIdentityOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createEliminateIdentity(const pass::Options&) {
  return std::make_unique<EliminateIdentityPass>();
}

}  // namespace mopt::passes
