// fuse-layernorm: replaces the decomposed layer normalization that older exporters write by the
// LayerNormalization operator (opset 17 and later; below that the graph is left alone).
//
//   Before:  m = ReduceMean(x, axes=[-1]); d = Sub(x, m); v = ReduceMean(Pow(d, 2), axes=[-1])
//            n = Div(d, Sqrt(Add(v, eps))); y = Add(Mul(n, gamma), beta)
//   After:   y = LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)
//
// The reduced axes must be the trailing ones (axis = -k) and the same in both ReduceMeans, keepdims=1;
// eps a float32 scalar constant; gamma and beta float32 constants over the normalized axes only (a
// missing Mul/Add becomes ones/zeros, which needs the normalized shape to be static). Every
// intermediate feeds only the next node of the pattern (d feeds exactly Pow/Mul and Div).
#include <algorithm>

#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::rank_of;

using rewrite::has_single_use;

// ReduceMean's axes, as negative numbers counted from the end (needs the rank for positive ones).
std::optional<std::vector<int64_t>> reduce_axes(const ir::Node& reduce, std::optional<size_t> rank) {
  if (rewrite::attr_int(reduce, "keepdims", 1) != 1) return std::nullopt;
  std::vector<int64_t> axes;
  if (reduce.owner()->model()->opset() < 18) {
    axes = rewrite::attr_ints(reduce, "axes");
  } else {
    std::optional<exec::Array> a = rewrite::constant_array(reduce.input(1));
    if (!a) return std::nullopt;
    axes = a->to_int64s();
  }
  if (axes.empty()) return std::nullopt;
  for (int64_t& a : axes) {
    if (a >= 0) {
      if (!rank) return std::nullopt;
      a -= static_cast<int64_t>(*rank);
    }
  }
  std::sort(axes.begin(), axes.end());
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] != -static_cast<int64_t>(axes.size() - i)) return std::nullopt;  // trailing, contiguous
  }
  return axes;
}

// The node producing input `i` of `node` if it is `op` in this graph, else nullptr.
ir::Node* producer_of(const ir::Node& node, size_t i, const char* op) {
  ir::Value* v = node.input(i);
  ir::Node* p = v ? v->producer() : nullptr;
  return p && p->owner() == node.owner() && p->is_op(op) ? p : nullptr;
}

// If `node` is a binary op with one float32-constant operand: the other operand's index.
std::optional<size_t> data_side(const ir::Node& node) {
  for (size_t side = 0; side < 2; ++side) {
    std::optional<exec::Array> c = rewrite::constant_array(node.input(1 - side));
    if (c && c->dtype() == ir::dtype::kFloat && node.input(side) && !node.input(side)->constant()) return side;
  }
  return std::nullopt;
}

class FuseLayerNormPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    if (graph.model()->opset() < 17) return false;
    bool changed = false;
    for (ir::Node* div : graph.nodes()) {
      if (div->dead() || !div->is_op("Div")) continue;
      if (const char* why = match_and_fuse(graph, *div)) {
        if (why[0] != '\0') ctx.explain_skip(*div, why);
        continue;
      }
      ctx.count("layernorms-fused");
      changed = true;
    }
    return changed;
  }

 private:
  // Returns nullptr when fused, "" when `div` is not part of the pattern at all, else why not.
  static const char* match_and_fuse(ir::Graph& graph, ir::Node& div) {
    ir::Node* sqrt = producer_of(div, 1, "Sqrt");
    ir::Node* sub = producer_of(div, 0, "Sub");
    if (!sqrt || !sub) return "";
    ir::Node* add_eps = producer_of(*sqrt, 0, "Add");
    ir::Node* mean = producer_of(*sub, 1, "ReduceMean");
    if (!add_eps || !mean || mean->input(0) != sub->input(0)) return "";
    ir::Value* x = sub->input(0);
    std::optional<size_t> eps_side = data_side(*add_eps);
    if (!eps_side) return "epsilon is not a float32 constant";
    ir::Node* var = producer_of(*add_eps, *eps_side, "ReduceMean");
    if (!var) return "";
    ir::Node* square = producer_of(*var, 0, "Pow");
    if (square) {
      if (square->input(0) != sub->output(0) || !rewrite::is_constant_float(square->input(1), 2.0f)) return "";
    } else {
      square = producer_of(*var, 0, "Mul");
      if (!square || square->input(0) != sub->output(0) || square->input(1) != sub->output(0)) return "";
    }
    std::optional<exec::Array> eps = rewrite::constant_array(add_eps->input(1 - *eps_side));
    if (eps->numel() != 1) return "epsilon is not a scalar";
    // Axes: the same trailing axes in both means.
    std::optional<size_t> rank = rank_of(*x);
    std::optional<std::vector<int64_t>> axes1 = reduce_axes(*mean, rank), axes2 = reduce_axes(*var, rank);
    if (!axes1 || axes1 != axes2) return "the means do not reduce the same trailing axes with keepdims=1";
    // Uses: d feeds the square (once or twice for Mul(d, d)) and the Div; the rest feed one node each.
    const size_t square_reads = square->is_op("Mul") ? 2 : 1;
    if (sub->output(0)->uses().size() != square_reads + 1 || sub->output(0)->is_graph_output()) return "d has other readers";
    for (ir::Node* n : {mean, square, var, add_eps, sqrt}) {
      if (!has_single_use(*n->output(0))) return "an intermediate has other readers";
    }
    if (rewrite::elem_type(*x) != ir::dtype::kFloat && rewrite::elem_type(*x) != 0) return "not float32";
    // Optional affine tail: Mul(n, gamma) then Add(., beta).
    ir::Value* out = div.output(0);
    ir::Node* mul = has_single_use(*out) ? out->uses()[0].node : nullptr;
    ir::Value* gamma = nullptr;
    ir::Value* beta = nullptr;
    const auto k = static_cast<int64_t>(axes1->size());
    auto over_normalized_axes = [&](const ir::Value* v) { return v->constant() && static_cast<int64_t>(v->constant()->dims().size()) <= k; };
    if (mul && mul->is_op("Mul") && data_side(*mul) && mul->input(*data_side(*mul)) == out &&
        over_normalized_axes(mul->input(1 - *data_side(*mul)))) {
      gamma = mul->input(1 - *data_side(*mul));
      out = mul->output(0);
      ir::Node* add = has_single_use(*out) ? out->uses()[0].node : nullptr;
      if (add && add->is_op("Add") && data_side(*add) && add->input(*data_side(*add)) == out &&
          over_normalized_axes(add->input(1 - *data_side(*add)))) {
        beta = add->input(1 - *data_side(*add));
        out = add->output(0);
      }
    } else {
      mul = nullptr;
    }
    if (gamma == nullptr) {
      std::optional<std::vector<int64_t>> shape = rewrite::static_shape(*x);
      if (!shape || static_cast<int64_t>(shape->size()) < k) return "no scale, and the normalized shape is not static";
      std::vector<int64_t> dims(shape->end() - k, shape->end());
      exec::Array ones(ir::dtype::kFloat, dims);
      std::fill(ones.data<float>(), ones.data<float>() + ones.numel(), 1.0f);
      gamma = rewrite::add_constant(graph, "layernorm_scale", ones);
    }
    std::vector<ir::Value*> inputs = {x, gamma};
    if (beta) inputs.push_back(beta);
    ir::Node* ln = graph.create_node("LayerNormalization", inputs, 1, &div, "", out->name());
    rewrite::set_int_attr(*ln, "axis", -k);
    rewrite::set_float_attr(*ln, "epsilon", static_cast<float>(eps->scalar_double()));
    graph.replace_all_uses(out, ln->output(0));  // a fresh node output can take an output's name
    // Erase the pattern from its end, so each node is dead before its producer goes.
    std::vector<ir::Node*> pattern = {&div, sqrt, add_eps, var, square, sub, mean};
    if (mul) {
      if (ir::Node* add = mul->output(0)->uses().empty() ? nullptr : mul->output(0)->uses()[0].node; add && beta) graph.erase(add);
      graph.erase(mul);
    }
    for (ir::Node* n : pattern) graph.erase(n);
    return nullptr;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseLayerNormOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseLayerNorm(const pass::Options&) { return std::make_unique<FuseLayerNormPass>(); }

}  // namespace mopt::passes
