// The rewrite driver for fusions and cleanups: a rule holds only its pattern and its rewrite; the driver
// owns the rest (the loop over nodes, dead nodes, subgraphs, --explain and counters).
//
//   struct Found { ir::Node* conv; ... };
//   class MyRule : public pass::RewriteRule<Found> {
//     std::vector<std::string> anchors() const override { return {"Add"}; }
//     std::string counter(const Found&) const override { return "adds-folded"; }
//     pass::Matched<Found> match(const ir::Node& add) const override {
//       if (...) return pass::refuse("the Conv output has other readers");   // reported under --explain
//       if (...) return pass::no_match();                                     // not a candidate: silent
//       return Found{...};
//     }
//     void apply(ir::Graph& graph, ir::Node& add, const Found& found) const override { ... }
//   };
//   std::unique_ptr<pass::Pass> createMyPass(const pass::Options&) { return pass::make_rule_pass<MyRule>(); }
//
// `match` reads the graph and changes nothing: every check comes first, so a refusal leaves the graph
// as it was and says why (MLIR's "notifyMatchFailure" discipline). `apply` then rewrites without
// further checks. Nodes are visited in graph order, each once per run; nodes an earlier `apply` erased
// are skipped, and nodes it created are visited in the next run (the fuse group repeats to a fixpoint).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "pass/pass.h"

namespace mopt::pass {

// Why a rule did not apply. An empty reason means the node is not a candidate at all (nothing to explain).
struct Refusal {
  std::string why;
};
inline Refusal refuse(std::string why) { return {std::move(why)}; }
inline Refusal no_match() { return {}; }

template <typename Found>
using Matched = std::variant<Found, Refusal>;

template <typename Found>
class RewriteRule {
 public:
  using Match = Found;
  virtual ~RewriteRule() = default;
  // The operator types a match starts from (default domain).
  virtual std::vector<std::string> anchors() const = 0;
  // The counter an application adds to (the report's per-pass counters).
  virtual std::string counter(const Found& found) const = 0;
  // The graph-wide precondition (an opset the rewrite needs), or "" when the rule may run.
  virtual std::string graph_refusal(const ir::Graph&) const { return ""; }
  virtual Matched<Found> match(const ir::Node& anchor) const = 0;
  virtual void apply(ir::Graph& graph, ir::Node& anchor, const Found& found) const = 0;
};

template <typename Rule>
class RulePass : public GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, PassContext& ctx) override {
    const std::vector<std::string> anchors = rule_.anchors();
    auto anchored = [&](const ir::Node& node) {
      if (node.dead() || !node.is_default_domain()) return false;
      for (const std::string& op : anchors) {
        if (node.op_type() == op) return true;
      }
      return false;
    };
    const std::vector<ir::Node*> nodes = graph.nodes();  // a snapshot: apply may add and erase nodes
    if (const std::string why = rule_.graph_refusal(graph); !why.empty()) {
      for (const ir::Node* node : nodes) {
        if (anchored(*node)) {
          ctx.explain_graph(why);
          break;
        }
      }
      return false;
    }
    bool changed = false;
    for (ir::Node* node : nodes) {
      if (!anchored(*node)) continue;
      auto m = rule_.match(*node);
      if (const Refusal* r = std::get_if<Refusal>(&m)) {
        if (!r->why.empty()) ctx.explain_skip(*node, r->why);
        continue;
      }
      const auto& found = std::get<typename Rule::Match>(m);
      ctx.count(rule_.counter(found));
      rule_.apply(graph, *node, found);
      changed = true;
    }
    return changed;
  }

 private:
  Rule rule_;
};

template <typename Rule>
std::unique_ptr<Pass> make_rule_pass() {
  return std::make_unique<RulePass<Rule>>();
}

}  // namespace mopt::pass
