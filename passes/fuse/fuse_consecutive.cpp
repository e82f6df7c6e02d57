// fuse-consecutive: merges two back-to-back data-movement nodes of the same kind into one.
//
//   Transpose(Transpose(x, p1), p2)      -> Transpose(x, p)  with p[i] = p1[p2[i]]  (removed if p is identity)
//   Reshape(Reshape(x, s1), s2)          -> Reshape(x, s2)   when s2 is constant without 0 (or allowzero)
//   Unsqueeze(Unsqueeze(x, a1), a2)      -> Unsqueeze(x, a)  a: positions of all inserted axes in the result
//   Squeeze(Squeeze(x, a1), a2)          -> Squeeze(x, a)    a: input axes removed by either
//   Slice(Slice(x, ...1), ...2)          -> Slice(x, ...)    when the two slice disjoint axes
//
// The first node's output must feed only the second and not be a graph output. Axes must be constants
// that are non-negative or made so by a known rank; Squeeze without axes (squeeze every 1) is left
// alone, as is Reshape's 0 (copy a dimension) since the copied dimension would come from another tensor.
#include <algorithm>
#include <set>

#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::rank_of;
using rewrite::constant_ints;

using Ints = std::vector<int64_t>;

// Squeeze/Unsqueeze axes: an attribute before opset 13, an input from 13.
std::optional<Ints> squeeze_axes(const ir::Node& node) {
  if (node.owner()->model()->opset() < 13) {
    if (!node.attribute("axes")) return std::nullopt;
    return rewrite::attr_ints(node, "axes");
  }
  return node.input(1) ? constant_ints(node.input(1)) : std::nullopt;
}

void set_squeeze_axes(ir::Graph& graph, ir::Node& node, const Ints& axes) {
  if (graph.model()->opset() < 13) {
    rewrite::set_ints_attr(node, "axes", axes);
    return;
  }
  ir::Value* v = rewrite::add_constant(graph, "axes", exec::Array::vector<int64_t>(ir::dtype::kInt64, axes));
  ir::Value* old = node.input(1);
  node.set_input(1, v);
  rewrite::remove_unused_weights(graph, {old});
}

// Axes made non-negative against `rank`, or nullopt if one is negative and the rank unknown or one is
// out of range.
// `rank` is -1 when unknown.
std::optional<Ints> normalized(Ints axes, int64_t rank) {
  for (int64_t& a : axes) {
    if (a < 0) {
      if (rank < 0) return std::nullopt;
      a += rank;
    }
    if (a < 0 || (rank >= 0 && a >= rank)) return std::nullopt;
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) return std::nullopt;
  return axes;
}

class FuseConsecutivePass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* second : graph.nodes()) {
      if (second->dead() || !second->is_default_domain() || second->input(0) == nullptr) continue;
      ir::Node* first = second->input(0)->producer();
      if (first == nullptr || first->owner() != &graph || first->op_type() != second->op_type() || !first->is_default_domain())
        continue;
      const std::string& op = second->op_type();
      if (op != "Transpose" && op != "Reshape" && op != "Unsqueeze" && op != "Squeeze" && op != "Slice") continue;
      if (!rewrite::has_single_use(*second->input(0))) {
        ctx.explain_skip(*first, "its output has other readers");
        continue;
      }
      const char* why = op == "Transpose" ? transposes(graph, *first, *second)
                        : op == "Reshape" ? reshapes(*first, *second)
                        : op == "Slice"   ? slices(graph, *first, *second)
                                          : squeezes(graph, *first, *second);
      if (why) {
        ctx.explain_skip(*second, why);
        continue;
      }
      second->set_input(0, first->input(0));
      graph.erase(first);
      ctx.count("merged-" + op);
      changed = true;
      // A composed identity Transpose is a no-op: eliminate-nops removes it in the fuse group.
    }
    return changed;
  }

 private:
  static const char* transposes(ir::Graph&, ir::Node& first, ir::Node& second) {
    Ints p1 = rewrite::attr_ints(first, "perm"), p2 = rewrite::attr_ints(second, "perm");
    if (p1.empty() || p2.empty()) return "a Transpose without perm (rank-dependent reversal)";
    if (p1.size() != p2.size()) return "the permutations have different lengths";
    Ints p(p2.size());
    for (size_t i = 0; i < p2.size(); ++i) {
      if (p2[i] < 0 || p2[i] >= static_cast<int64_t>(p1.size())) return "perm out of range";
      p[i] = p1[static_cast<size_t>(p2[i])];
    }
    rewrite::set_ints_attr(second, "perm", p);
    return nullptr;
  }

  static const char* reshapes(ir::Node&, ir::Node& second) {
    std::optional<Ints> shape = constant_ints(second.input(1));
    if (!shape) return "the second shape is not constant";
    const bool allow_zero = rewrite::attr_int(second, "allowzero", 0) != 0;
    if (!allow_zero && std::find(shape->begin(), shape->end(), 0) != shape->end())
      return "the second shape copies a dimension (0) from its input";
    return nullptr;
  }

  static const char* squeezes(ir::Graph& graph, ir::Node& first, ir::Node& second) {
    std::optional<Ints> a1 = squeeze_axes(first), a2 = squeeze_axes(second);
    if (!a1 || !a2) return "axes are not constant (or Squeeze has none)";
    const std::optional<size_t> known_rank = rank_of(*first.input(0));
    const int64_t in_rank = known_rank ? static_cast<int64_t>(*known_rank) : -1;
    const auto n_a1 = static_cast<int64_t>(a1->size()), n_a2 = static_cast<int64_t>(a2->size());
    const bool unsqueeze = first.op_type() == "Unsqueeze";
    Ints merged;
    if (unsqueeze) {
      // Ranks: r -> r + |a1| -> r + |a1| + |a2|. a1 is relative to the middle rank, a2 to the final one.
      const int64_t mid = in_rank < 0 ? -1 : in_rank + n_a1, out = in_rank < 0 ? -1 : mid + n_a2;
      std::optional<Ints> n1 = normalized(*a1, mid), n2 = normalized(*a2, out);
      if (!n1 || !n2) return "negative axes with an unknown rank";
      // Walk the final axes: those in a2 are new; the others map, in order, onto the middle axes, of
      // which those in a1 are new too.
      const size_t total = n1->size() + n2->size();
      const int64_t bound = (n1->empty() ? 0 : n1->back() + 1) + (n2->empty() ? 0 : n2->back() + 1) + static_cast<int64_t>(total);
      std::set<int64_t> inserted2(n2->begin(), n2->end()), inserted1(n1->begin(), n1->end());
      int64_t middle = 0;
      for (int64_t f = 0; f < bound && merged.size() < total; ++f) {
        if (inserted2.count(f)) merged.push_back(f);
        else if (inserted1.count(middle++)) merged.push_back(f);
      }
      if (merged.size() != n1->size() + n2->size()) return "could not place the merged axes";
    } else {
      const int64_t mid = in_rank < 0 ? -1 : in_rank - n_a1;
      std::optional<Ints> n1 = normalized(*a1, in_rank), n2 = normalized(*a2, mid);
      if (!n1 || !n2) return "negative axes with an unknown rank";
      // Middle axis m is input axis m + (number of a1 axes at or below it, counted as we go).
      std::set<int64_t> removed(n1->begin(), n1->end());
      int64_t input_axis = 0, middle = 0;
      std::set<int64_t> wanted(n2->begin(), n2->end());
      while (!wanted.empty()) {
        if (removed.count(input_axis)) {
          ++input_axis;
          continue;
        }
        if (wanted.erase(middle)) removed.insert(input_axis);
        ++middle;
        ++input_axis;
      }
      merged.assign(removed.begin(), removed.end());
    }
    set_squeeze_axes(graph, second, merged);
    return nullptr;
  }

  static const char* slices(ir::Graph& graph, ir::Node& first, ir::Node& second) {
    if (graph.model()->opset() < 10) return "opset < 10 Slice is not handled";
    std::optional<size_t> rank = rank_of(*first.input(0));
    struct Parts {
      Ints starts, ends, axes, steps;
    };
    auto read = [&](const ir::Node& n) -> std::optional<Parts> {
      Parts p;
      std::optional<Ints> s = constant_ints(n.input(1)), e = constant_ints(n.input(2));
      if (!s || !e || s->size() != e->size()) return std::nullopt;
      p.starts = *s;
      p.ends = *e;
      if (n.input(3)) {
        std::optional<Ints> a = constant_ints(n.input(3));
        if (!a || a->size() != s->size()) return std::nullopt;
        for (int64_t& x : *a) {
          if (x < 0) {
            if (!rank) return std::nullopt;
            x += static_cast<int64_t>(*rank);
          }
        }
        p.axes = *a;
      } else {
        for (size_t i = 0; i < s->size(); ++i) p.axes.push_back(static_cast<int64_t>(i));
      }
      if (n.input(4)) {
        std::optional<Ints> st = constant_ints(n.input(4));
        if (!st || st->size() != s->size()) return std::nullopt;
        p.steps = *st;
      } else {
        p.steps.assign(s->size(), 1);
      }
      return p;
    };
    std::optional<Parts> p1 = read(first), p2 = read(second);
    if (!p1 || !p2) return "starts, ends, axes or steps are not constant (or axes negative with unknown rank)";
    for (int64_t a : p2->axes) {
      if (std::find(p1->axes.begin(), p1->axes.end(), a) != p1->axes.end()) return "the two Slices cut the same axis";
    }
    auto join = [](Ints a, const Ints& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    auto constant = [&](const char* base, const Ints& v) {
      return rewrite::add_constant(graph, base, exec::Array::vector<int64_t>(ir::dtype::kInt64, v));
    };
    std::vector<ir::Value*> old = {second.input(1), second.input(2), second.input(3), second.input(4)};
    second.set_input(1, constant("starts", join(p1->starts, p2->starts)));
    second.set_input(2, constant("ends", join(p1->ends, p2->ends)));
    ir::Value* axes = constant("axes", join(p1->axes, p2->axes));
    ir::Value* steps = constant("steps", join(p1->steps, p2->steps));
    while (second.inputs().size() < 5) second.add_input(nullptr);
    second.set_input(3, axes);
    second.set_input(4, steps);
    std::vector<ir::Value*> candidates;
    for (ir::Value* v : old) {
      if (v) candidates.push_back(v);
    }
    rewrite::remove_unused_weights(graph, candidates);
    return nullptr;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& FuseConsecutiveOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createFuseConsecutive(const pass::Options&) { return std::make_unique<FuseConsecutivePass>(); }

}  // namespace mopt::passes
