// eliminate-dead-code: removes what no graph output depends on.
//
//   Before:  x -> Relu -> y (graph output)      After:  x -> Relu -> y
//            x -> Sigmoid -> unused                     (Sigmoid gone)
//            initializer w (no users)                   (w gone)
//            value_info for values that no longer exist (dropped)
//
// Nodes are visited in reverse topological order, so a chain of dead nodes goes in one sweep; the
// driver visits subgraphs before their parent, so a value used only by a dead branch is freed too.
// Kept: nodes with no outputs at all (nothing to judge them by), graph inputs (the model's interface,
// even when unused), and initializers that are also graph inputs.
#include "pass/pass.h"

namespace mopt::passes {
namespace {

class EliminateDeadCodePass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    int64_t nodes_removed = 0;
    auto nodes = graph.nodes();
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
      ir::Node* node = *it;
      if (node->outputs().empty()) continue;
      bool live = false;
      for (const ir::Value* out : node->outputs()) live = live || (out != nullptr && (out->has_uses() || out->is_graph_output()));
      if (live) continue;
      graph.erase(node);
      ++nodes_removed;
    }
    int64_t initializers_removed = 0;
    int64_t bytes_removed = 0;
    for (ir::Value* v : graph.initializers()) {
      if (v->has_uses() || v->is_graph_output() || v->is_graph_input()) continue;
      bytes_removed += static_cast<int64_t>(v->initializer()->nbytes());
      graph.remove_initializer(v);
      ++initializers_removed;
    }
    const auto value_info_removed = static_cast<int64_t>(graph.clear_value_info_of_dead_values());
    if (nodes_removed) ctx.count("nodes-removed", nodes_removed);
    if (initializers_removed) ctx.count("initializers-removed", initializers_removed);
    if (bytes_removed) ctx.count("initializer-bytes-removed", bytes_removed);
    if (value_info_removed) ctx.count("value-info-removed", value_info_removed);
    return nodes_removed + initializers_removed + value_info_removed > 0;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& EliminateDeadCodeOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createEliminateDeadCode(const pass::Options&) {
  return std::make_unique<EliminateDeadCodePass>();
}

}  // namespace mopt::passes
