// fold-constants: computes, once and ahead of time, every node whose inputs are all constants, and turns
// Constant nodes into initializers (as ONNX Runtime does when it loads a model).
//
//   Before:  w (initializer) -> Transpose(perm=[1,0]) -> wt -> MatMul(x, wt) -> y
//            c = Constant<value=[2]>()  -> Reshape(t, c)
//   After:   wt' (initializer, already transposed) -> MatMul(x, wt') -> y
//            c' (initializer [2])       -> Reshape(t, c')
//
// Values are computed with the reference executor's kernels, so folding means exactly what running the
// model would. Size guard (onnx-simplifier's users see models balloon when Tile, Expand or
// ConstantOfShape are folded): a fold that would grow the model by more than max-folded-bytes stays a
// node. Growth is the folded outputs minus the constant inputs that only this node reads (those go
// away); a weight also read elsewhere stays. The pass warns when its folds grew the constants by more
// than 64 KiB in total.
//
// Where a folded value lives: a Constant node's tensor in the main graph; a folded node's outputs in the
// innermost graph that holds one of its inputs, not necessarily the node's own. A node in an If branch whose inputs are all outer weights folds into the outer graph, and
// the same fold in the other branch finds the equal tensor there and reads it:
//
//   Before:  W (main) -> then: Unsqueeze(W) -> LSTM      else: Unsqueeze(W) -> LSTM
//   After:   W' = unsqueezed W (main, once) -> then: LSTM(W')   else: LSTM(W')
//
// (folding in each branch stored silero_vad's LSTM weights twice: the model grew 1.39x, as it does under
// ONNX Runtime's own constant folding.) Left alone, and said why under --explain: random operators,
// nodes with subgraphs, DequantizeLinear (folding it would undo weight quantization), non-default
// domains, graph outputs (an initializer cannot take over an output's name), and anything the executor
// cannot compute.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "exec/executor.h"
#include "pass/pass.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

using rewrite::is_random;

class FoldConstantsPass : public pass::GraphPass {
 public:
  explicit FoldConstantsPass(const pass::Options& options) : max_folded_bytes_(options.get_int("max-folded-bytes")) {}

 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* node : graph.nodes()) {
      if (node->dead()) continue;
      if (node->is_op("Constant")) changed = constant_to_initializer(graph, *node, ctx) || changed;
      else changed = fold(graph, *node, ctx) || changed;
    }
    // The main graph comes last: the growth of the whole model is known now.
    if (graph.parent_node() == nullptr && growth_ > kGrowthWarning)
      ctx.warn(fmt::format("folding grew the constants by {} bytes (constants read by several nodes were folded into "
                           "each); a smaller max-folded-bytes keeps those nodes instead",
                           growth_));
    return changed;
  }

 private:
  // Why `node` is not even a candidate (nullptr when it is one). Cheap checks, before any computation.
  static const char* reason_to_skip(const ir::Node& node) {
    if (!node.is_default_domain()) return "not in the default ONNX domain";
    if (is_random(node)) return "random operators are not constant";
    if (!node.subgraphs().empty()) return "has subgraphs";
    if (node.is_op("DequantizeLinear")) return "folding DequantizeLinear would undo weight quantization";
    for (const ir::Value* out : node.outputs()) {
      if (out && out->is_graph_output()) return "its output is a graph output";
    }
    return nullptr;
  }

  // The innermost graph holding one of the node's inputs: every input is visible from the node's graph, so
  // this is that graph or one enclosing it.
  static ir::Graph& home_of(ir::Graph& graph, const ir::Node& node) {
    auto depth = [](const ir::Graph* g) {
      int d = 0;
      for (; g->parent_node() != nullptr; g = g->parent_node()->owner()) ++d;
      return d;
    };
    ir::Graph* home = nullptr;
    int deepest = -1;
    for (const ir::Value* in : node.inputs()) {
      if (in == nullptr || in->owner() == nullptr) continue;
      if (const int d = depth(in->owner()); d > deepest) {
        deepest = d;
        home = in->owner();
      }
    }
    return home ? *home : graph;
  }

  // An initializer of `graph` equal to `tensor` (type, shape and bytes), or nullptr. Only asked for folds
  // placed in an enclosing graph (a few per If/Loop body), so the byte comparisons stay few.
  static ir::Value* equal_constant(ir::Graph& graph, const ir::Tensor& tensor) {
    const ir::Bytes bytes = tensor.data();
    for (ir::Value* v : graph.initializers()) {
      const ir::Tensor* t = v->initializer();
      if (t->dtype() != tensor.dtype() || t->dims() != tensor.dims() || t->nbytes() != tensor.nbytes() || v->is_graph_input()) continue;
      const ir::Bytes other = t->data();
      if (other.size() == bytes.size() && std::equal(other.span().begin(), other.span().end(), bytes.span().begin())) return v;
    }
    return nullptr;
  }

  bool all_inputs_constant(const ir::Node& node) const {
    if (node.inputs().empty()) return false;
    for (const ir::Value* in : node.inputs()) {
      if (in && in->constant() == nullptr) return false;
    }
    return true;
  }

  bool fold(ir::Graph& graph, ir::Node& node, pass::PassContext& ctx) {
    if (!all_inputs_constant(node)) return false;
    if (const char* why = reason_to_skip(node)) {
      ctx.explain_skip(node, why);
      return false;
    }
    std::vector<exec::Array> holders;
    std::vector<const exec::Array*> inputs;
    holders.reserve(node.inputs().size());
    uint64_t freed_bytes = 0;  // constant inputs nothing else reads: they go away with the node
    std::set<const ir::Value*> counted;
    for (const ir::Value* in : node.inputs()) {
      if (in == nullptr) {
        inputs.push_back(nullptr);
        continue;
      }
      std::optional<exec::Array> a = rewrite::constant_array(in);
      if (!a) {
        ctx.explain_skip(node, fmt::format("input '{}' has a type the executor does not hold", in->name()));
        return false;
      }
      const bool only_reader = std::all_of(in->uses().begin(), in->uses().end(), [&](const ir::Use& u) { return u.node == &node; });
      if (only_reader && !in->is_graph_output() && counted.insert(in).second) freed_bytes += a->nbytes();
      holders.push_back(std::move(*a));
      inputs.push_back(&holders.back());
    }
    std::vector<exec::Array> outputs;
    try {
      outputs = exec::run_node(*graph.model(), node, inputs);
    } catch (const Error& e) {
      ctx.explain_skip(node, fmt::format("cannot be computed: {}", e.what()));
      return false;
    }
    uint64_t output_bytes = 0;
    for (size_t o = 0; o < node.outputs().size(); ++o) {
      if (node.output(o)) output_bytes += outputs[o].nbytes();
    }
    if (output_bytes > freed_bytes && output_bytes - freed_bytes > static_cast<uint64_t>(max_folded_bytes_)) {
      ctx.explain_skip(node, fmt::format("folding would store {} bytes and free only {} (max-folded-bytes={})",
                                         output_bytes, freed_bytes, max_folded_bytes_));
      return false;
    }
    ir::Graph& home = home_of(graph, node);
    for (size_t o = 0; o < node.outputs().size(); ++o) {
      ir::Value* out = node.output(o);
      if (out == nullptr) continue;
      ir::Tensor tensor = std::move(outputs[o]).into_tensor(out->name());
      ir::Value* folded = &home != &graph ? equal_constant(home, tensor) : nullptr;
      if (folded) {
        output_bytes -= tensor.nbytes();  // stored once already
        ctx.count("folds-shared");
      } else {
        folded = rewrite::add_constant(home, out->name(), std::move(tensor));
      }
      graph.replace_all_uses(out, folded);  // not a graph output: checked above
    }
    graph.erase(&node);
    growth_ += static_cast<int64_t>(output_bytes) - static_cast<int64_t>(freed_bytes);
    ctx.count("nodes-folded");
    ctx.count("folded-bytes", static_cast<int64_t>(output_bytes));
    return true;
  }

  // A Constant node's tensor moves into an initializer without copying; the other value_* forms are
  // computed by the Constant kernel.
  bool constant_to_initializer(ir::Graph& graph, ir::Node& node, pass::PassContext& ctx) {
    ir::Value* out = node.output(0);
    if (out == nullptr) return false;
    if (out->is_graph_output()) {
      ctx.explain_skip(node, "its output is a graph output");
      return false;
    }
    ir::Tensor tensor;
    bool have = false;
    for (ir::Attribute& attr : node.mutable_attributes()) {
      if (attr.name() == "value" && attr.tensor) {
        tensor = std::move(*attr.tensor);
        have = true;
      }
    }
    if (!have) {
      try {
        std::vector<exec::Array> values = exec::run_node(*graph.model(), node, {});
        tensor = values[0].to_tensor(out->name());
      } catch (const Error& e) {
        ctx.explain_skip(node, fmt::format("cannot be computed: {}", e.what()));
        return false;
      }
    }
    // Into the main graph, wherever the node was: a constant depends on nothing, and there the copies two
    // If branches or a Loop body hold are merged (eliminate-common-subexpressions) and the folds that read
    // them find each other (home_of).
    ir::Graph* main = &graph;
    while (main->parent_node() != nullptr) main = main->parent_node()->owner();
    ir::Value* init = rewrite::add_constant(*main, out->name(), std::move(tensor));
    graph.replace_all_uses(out, init);
    graph.erase(&node);
    ctx.count("constant-nodes-to-initializers");
    return true;
  }

  static constexpr int64_t kGrowthWarning = 64 * 1024;
  int64_t max_folded_bytes_;
  int64_t growth_ = 0;  // bytes of constants added, net of those freed, over this run
};

}  // namespace

const std::vector<pass::OptionSpec>& FoldConstantsOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"max-folded-bytes", T::Int, "1048576",
       "leave a node unfolded when folding would grow the model by more than this many bytes (outputs minus the "
       "constant inputs only it reads)", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createFoldConstants(const pass::Options& options) {
  return std::make_unique<FoldConstantsPass>(options);
}

}  // namespace mopt::passes
