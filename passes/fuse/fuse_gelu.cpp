// fuse-gelu: replaces the decomposed GELU forms exporters write by the Gelu operator, which ONNX has
// from opset 20. Below opset 20 the graph is left alone (the decomposed form is the only portable one).
//
//   Erf form:   y = Mul(Mul(x, Add(Erf(Div(x, 1.41421)), 1)), 0.5)       -> Gelu(x)
//               (also x * 0.5 first, or Mul(x, 0.70711) instead of the Div)
//   Tanh form:  y = 0.5 * x * (1 + Tanh(0.79788 * (x + 0.044715 * x^3)))  -> Gelu(x, approximate="tanh")
//
// Constants must match to float32 precision (1e-4 relative). Every intermediate feeds only the next
// node of the pattern, apart from x itself.
#include <cmath>

#include "pass/rule.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::has_single_use;

bool near(double a, double b) { return std::abs(a - b) <= 1e-4 * std::abs(b); }

// If one operand of the binary `node` is a float32 scalar constant: it, and the other operand.
struct Operands {
  double constant;
  ir::Value* other;
};
std::optional<Operands> with_constant(const ir::Node* node) {
  if (node == nullptr || node->inputs().size() != 2) return std::nullopt;
  for (size_t side = 0; side < 2; ++side) {
    std::optional<exec::Array> c = rewrite::constant_array(node->input(side));
    if (c && c->dtype() == ir::dtype::kFloat && c->numel() == 1 && node->input(1 - side))
      return Operands{c->scalar_double(), node->input(1 - side)};
  }
  return std::nullopt;
}

ir::Node* producer_in(const ir::Value* v, const ir::Graph& graph, const char* op) {
  ir::Node* p = v ? v->producer() : nullptr;
  return p && p->owner() == &graph && p->is_op(op) && has_single_use(*v) ? p : nullptr;
}

// For `one_plus` = Add(inner, 1): the GELU input x and the approximation, when inner is one of the
// two forms of x. Collects the pattern's nodes into `nodes`.
std::optional<std::pair<ir::Value*, const char*>> gelu_core(const ir::Graph& graph, ir::Node* one_plus,
                                                            std::vector<ir::Node*>& nodes) {
  std::optional<Operands> add = with_constant(one_plus);
  if (!add || add->constant != 1.0) return std::nullopt;
  nodes.push_back(one_plus);
  if (ir::Node* erf = producer_in(add->other, graph, "Erf")) {
    nodes.push_back(erf);
    ir::Node* scale = producer_in(erf->input(0), graph, "Div");
    std::optional<Operands> s = with_constant(scale);
    if (s && scale->input(1)->constant() && near(s->constant, std::sqrt(2.0))) {
      nodes.push_back(scale);
      return std::make_pair(scale->input(0), "none");
    }
    scale = producer_in(erf->input(0), graph, "Mul");
    s = with_constant(scale);
    if (s && near(s->constant, 1.0 / std::sqrt(2.0))) {
      nodes.push_back(scale);
      return std::make_pair(s->other, "none");
    }
    return std::nullopt;
  }
  if (ir::Node* tanh = producer_in(add->other, graph, "Tanh")) {
    nodes.push_back(tanh);
    ir::Node* outer = producer_in(tanh->input(0), graph, "Mul");  // sqrt(2/pi) * (x + 0.044715 x^3)
    std::optional<Operands> o = with_constant(outer);
    if (!o || !near(o->constant, std::sqrt(2.0 / M_PI))) return std::nullopt;
    ir::Node* sum = producer_in(o->other, graph, "Add");
    if (!sum) return std::nullopt;
    for (size_t side = 0; side < 2; ++side) {
      ir::Value* x = sum->input(side);
      ir::Node* cubic = producer_in(sum->input(1 - side), graph, "Mul");  // 0.044715 * x^3
      std::optional<Operands> c = with_constant(cubic);
      if (!c || !near(c->constant, 0.044715)) continue;
      ir::Node* pow = producer_in(c->other, graph, "Pow");
      if (!pow || pow->input(0) != x || !rewrite::is_constant_float(pow->input(1), 3.0f)) continue;
      nodes.insert(nodes.end(), {outer, sum, cubic, pow});
      return std::make_pair(x, "tanh");
    }
  }
  return std::nullopt;
}

struct GeluMatch {
  ir::Value* x;
  const char* approximate;       // "none" or "tanh"
  std::vector<ir::Node*> nodes;  // the rest of the pattern, from the anchor back
};

class FuseGeluRule : public pass::RewriteRule<GeluMatch> {
 public:
  // The pattern ends in the Mul by 0.5 (x * core * 0.5 in either grouping); match from there.
  std::vector<std::string> anchors() const override { return {"Mul"}; }
  std::string counter(const GeluMatch&) const override { return "gelus-fused"; }
  std::string graph_refusal(const ir::Graph& graph) const override {
    return graph.model()->opset() < 20 ? "Gelu needs opset 20 (the decomposed form is the only portable one below it)" : "";
  }

  pass::Matched<GeluMatch> match(const ir::Node& last) const override {
    const ir::Graph& graph = *last.owner();
    std::vector<ir::Node*> nodes;  // besides `last`
    std::optional<std::pair<ir::Value*, const char*>> found;
    if (std::optional<Operands> half = with_constant(&last); half && half->constant == 0.5) {
      // (x * core) * 0.5
      if (ir::Node* product = producer_in(half->other, graph, "Mul")) {
        nodes.push_back(product);
        for (size_t side = 0; side < 2 && !found; ++side) {
          std::vector<ir::Node*> core;
          found = gelu_core(graph, producer_in(product->input(1 - side), graph, "Add"), core);
          if (found && found->first != product->input(side)) found.reset();
          if (found) nodes.insert(nodes.end(), core.begin(), core.end());
        }
      }
    } else {
      // (x * 0.5) * core
      for (size_t side = 0; side < 2 && !found; ++side) {
        ir::Node* halve = producer_in(last.input(side), graph, "Mul");
        std::optional<Operands> h = with_constant(halve);
        if (!h || h->constant != 0.5) continue;
        std::vector<ir::Node*> core;
        found = gelu_core(graph, producer_in(last.input(1 - side), graph, "Add"), core);
        if (found && found->first != h->other) found.reset();
        if (found) {
          nodes.push_back(halve);
          nodes.insert(nodes.end(), core.begin(), core.end());
        }
      }
    }
    if (!found) return pass::no_match();
    return GeluMatch{found->first, found->second, std::move(nodes)};
  }

  void apply(ir::Graph& graph, ir::Node& last, const GeluMatch& m) const override {
    ir::Node* gelu = graph.create_node("Gelu", {m.x}, 1, &last, "", last.output(0)->name());
    if (std::string(m.approximate) == "tanh") {
      ir::Attribute a;
      a.proto.set_name("approximate");
      a.proto.set_type(onnx::AttributeProto::STRING);
      a.proto.set_s("tanh");
      gelu->mutable_attributes().push_back(std::move(a));
    }
    graph.replace_all_uses(last.output(0), gelu->output(0));
    graph.erase(&last);
    for (ir::Node* n : m.nodes) graph.erase(n);  // listed from the output back: each is dead when erased
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseGeluOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseGelu(const pass::Options&) { return pass::make_rule_pass<FuseGeluRule>(); }

}  // namespace mopt::passes
