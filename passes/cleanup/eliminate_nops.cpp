// eliminate-nops: removes nodes whose output equals their input, wiring the input to their users.
//
//   Before:  a -> Conv -> t -> Identity -> u -> Relu      After:  a -> Conv -> t -> Relu
//            a -> Cast(to=float) -> v   (a is float)               (v's users read a)
//
// The no-ops: Identity; Dropout in inference (mask unused; opset < 12, or training_mode absent or a
// constant false); Cast to the input's own type; Transpose with the identity permutation; Reshape and
// Expand to the input's own static shape; Pad with all-zero pads; Concat of a single input; Slice that
// keeps every element; Add/Sub of 0 and Mul/Div by 1 when the constant cannot broadcast the input to a
// larger shape. Each needs what it checks to be known (a static shape, a constant): otherwise the node
// stays and --explain says why.
// A graph output keeps its name: when the removed node's output is a graph output, the input takes
// over the name if it is an ordinary node output of the same graph; otherwise the node stays.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <climits>

#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::rank_of;
using rewrite::static_shape;

// Why a Dropout must stay, or nullptr if it is an inference-time identity.
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


// For a no-op `node`: nullptr. Otherwise why it is not one (or cannot be shown to be one).
const char* reason_not_nop(const ir::Node& node) {
  const ir::Value* in = node.input(0);
  const std::string& op = node.op_type();
  if (op == "Identity") return nullptr;
  if (op == "Dropout") return reason_to_keep_dropout(node);
  if (op == "Cast") {
    const int32_t from = rewrite::elem_type(*in);
    if (from == 0) return "the input's type is unknown";
    return from == rewrite::attr_int(node, "to", -1) ? nullptr : "casts to another type";
  }
  if (op == "Transpose") {
    std::vector<int64_t> perm = rewrite::attr_ints(node, "perm");
    if (perm.empty()) return rank_of(*in) == std::optional<size_t>(1) ? nullptr : "reverses the axes";
    for (size_t i = 0; i < perm.size(); ++i) {
      if (perm[i] != static_cast<int64_t>(i)) return "permutes the axes";
    }
    return nullptr;
  }
  if (op == "Concat") return node.inputs().size() == 1 ? nullptr : "has several inputs";
  if (op == "Reshape" || op == "Expand") {
    std::optional<std::vector<int64_t>> shape = static_shape(*in);
    std::optional<std::vector<int64_t>> target = rewrite::constant_ints(node.input(1));
    if (!shape || !target) return "the input shape or the target shape is not static";
    if (op == "Reshape") {
      if (target->size() != shape->size()) return "changes the rank";
      const bool allow_zero = rewrite::attr_int(node, "allowzero", 0) != 0;
      int minus_one = 0;
      for (size_t i = 0; i < target->size(); ++i) {
        const int64_t t = (*target)[i];
        if (t == -1) ++minus_one;
        else if (t == 0 && !allow_zero) continue;  // copies the input's dimension
        else if (t != (*shape)[i]) return "changes the shape";
      }
      // A single -1 is inferred from the rest: with every other dimension equal it is the same too.
      return minus_one <= 1 ? nullptr : "has several -1 dimensions";
    }
    // Expand broadcasts: the output is the input's shape only if the target neither adds axes nor
    // widens a dimension.
    if (target->size() > shape->size()) return "adds axes";
    const size_t offset = shape->size() - target->size();
    for (size_t i = 0; i < target->size(); ++i) {
      if ((*target)[i] != 1 && (*target)[i] != (*shape)[offset + i]) return "widens a dimension";
    }
    return nullptr;
  }
  if (op == "Pad") {
    std::vector<int64_t> pads;
    if (node.owner()->model()->opset() < 11) {
      pads = rewrite::attr_ints(node, "pads");
    } else {
      std::optional<std::vector<int64_t>> p = rewrite::constant_ints(node.input(1));
      if (!p) return "its pads are not constant";
      pads = *p;
    }
    return std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; }) ? nullptr : "pads";
  }
  if (op == "Slice") {
    if (node.owner()->model()->opset() < 10) return "opset < 10 Slice is not handled";
    std::optional<std::vector<int64_t>> shape = static_shape(*in);
    std::optional<std::vector<int64_t>> starts = rewrite::constant_ints(node.input(1)), ends = rewrite::constant_ints(node.input(2));
    if (!shape || !starts || !ends) return "the input shape, starts or ends are not static";
    std::vector<int64_t> axes(starts->size());
    for (size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<int64_t>(i);
    if (node.input(3)) {
      std::optional<std::vector<int64_t>> a = rewrite::constant_ints(node.input(3));
      if (!a) return "its axes are not constant";
      axes = *a;
    }
    if (node.input(4)) {
      std::optional<std::vector<int64_t>> steps = rewrite::constant_ints(node.input(4));
      if (!steps || std::any_of(steps->begin(), steps->end(), [](int64_t s) { return s != 1; })) return "has steps other than 1";
    }
    const auto rank = static_cast<int64_t>(shape->size());
    for (size_t i = 0; i < axes.size() && i < starts->size() && i < ends->size(); ++i) {
      const int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (axis < 0 || axis >= rank) return "has an axis out of range";
      const int64_t dim = (*shape)[static_cast<size_t>(axis)];
      const int64_t start = (*starts)[i], end = (*ends)[i];
      if (!(start == 0 || (start < 0 && start + dim <= 0))) return "starts after the beginning";
      if (!(end >= dim)) return "ends before the end";
    }
    return nullptr;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    const float neutral = (op == "Add" || op == "Sub") ? 0.0f : 1.0f;
    // The constant must be the right operand, except for the commutative ones.
    size_t constant_index = 1;
    if (!rewrite::is_constant_float(node.input(1), neutral)) {
      if ((op == "Add" || op == "Mul") && rewrite::is_constant_float(node.input(0), neutral)) constant_index = 0;
      else return "no operand is a neutral constant";
    }
    const ir::Value* other = node.input(1 - constant_index);
    const std::vector<int64_t> cdims = node.input(constant_index)->constant()->dims();
    std::optional<size_t> rank = rank_of(*other);
    if (!rank) return "the other operand's rank is unknown";
    if (cdims.size() > *rank) return "the constant adds axes";
    for (int64_t d : cdims) {
      if (d != 1) {
        std::optional<std::vector<int64_t>> shape = static_shape(*other);
        if (!shape) return "the constant may broadcast the other operand";
        const size_t offset = shape->size() - cdims.size();
        for (size_t i = 0; i < cdims.size(); ++i) {
          if (cdims[i] != 1 && cdims[i] != (*shape)[offset + i]) return "the constant broadcasts the other operand";
        }
        break;
      }
    }
    if (rewrite::elem_type(*other) != ir::dtype::kFloat) return "the other operand is not known to be float";
    return nullptr;
  }
  return "not a no-op kind";
}

bool is_candidate(const ir::Node& node) {
  static const char* const kOps[] = {"Identity", "Dropout", "Cast", "Transpose", "Reshape", "Expand", "Pad",
                                     "Concat",   "Slice",   "Add",  "Sub",       "Mul",     "Div"};
  if (!node.is_default_domain()) return false;
  for (const char* op : kOps) {
    if (node.op_type() == op) return true;
  }
  return false;
}

std::string counter_name(const std::string& op) {
  std::string lower;
  for (char c : op) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower + "-removed";
}

class EliminateNopsPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* node : graph.nodes()) {
      if (node->dead() || !is_candidate(*node)) continue;
      ir::Value* in = node->input(0);
      if (in == nullptr || node->output(0) == nullptr) continue;
      if (const char* why = reason_not_nop(*node)) {
        if (node->op_type() == "Identity" || node->op_type() == "Dropout") ctx.explain_skip(*node, why);
        continue;
      }
      if (node->op_type() == "Add" || node->op_type() == "Mul") {
        // The operand that survives is the one that is not the neutral constant.
        const float neutral = node->op_type() == "Add" ? 0.0f : 1.0f;
        if (!rewrite::is_constant_float(node->input(1), neutral)) in = node->input(1);
      }
      if (!rewrite::bypass(graph, *node, in)) {
        ctx.explain_skip(*node, "its output is a graph output and its input cannot take over that name");
        continue;
      }
      ctx.count(counter_name(node->op_type()));
      changed = true;
    }
    return changed;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& EliminateNopsOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createEliminateNops(const pass::Options&) { return std::make_unique<EliminateNopsPass>(); }

}  // namespace mopt::passes
