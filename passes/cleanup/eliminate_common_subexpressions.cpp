// eliminate-common-subexpressions: computes each distinct expression once.
//
//   Before:  a = Relu(x); b = Relu(x); y = Add(a, b)        After:  a = Relu(x); y = Add(a, a)
//            w1, w2: initializers with identical bytes               w1 (w2's readers read w1)
//
// Two nodes are the same expression when op, domain, attributes and inputs (the same Values, in order)
// are equal and the operator is deterministic. Initializers are the same when dtype, dims and bytes are.
// Kept: nodes with subgraphs (comparing bodies is not worth it), random operators, graph outputs that
// cannot be renamed, and initializers that are graph inputs (a caller may override them).
// Nodes are visited in order, so a merge lets later nodes reading the merged values merge in turn.
#include <algorithm>
#include <map>
#include <string_view>
#include <vector>

#include <xxhash.h>

#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::is_random;

std::string_view view(const ir::Bytes& bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

// "dtype:dims:", the start of the keys below.
std::string shape_key(const ir::Tensor& t) {
  std::string key = std::to_string(t.dtype()) + ":";
  for (int64_t d : t.dims()) key += std::to_string(d) + ",";
  return key + ":";
}

// A tensor's identity for merging: dtype, dims and a hash of the bytes (equal bytes are confirmed
// separately, so a hash collision never merges different tensors). The hash is the tensor's cached
// content hash: each payload is read once however many fixpoint rounds compare it.
std::string tensor_key(const ir::Tensor& t) { return shape_key(t) + std::to_string(t.content_hash()); }

bool same_bytes(const ir::Tensor& a, const ir::Tensor& b) { return view(a.data()) == view(b.data()); }

// A cheap first look at an initializer: dtype, dims and a hash of its first 4 KiB. Only initializers that
// share it are hashed whole (and then compared), so a model of distinct weights is not read through
// just to learn that nothing merges.
std::string initializer_group(const ir::Tensor& t) {
  const ir::Bytes bytes = t.data();
  return shape_key(t) + std::to_string(XXH3_64bits(bytes.data(), std::min<size_t>(bytes.size(), 4096)));
}

// Attribute tensors (Constant's value) were keyed by hash: confirm their bytes are equal.
bool same_attribute_tensors(const ir::Node& a, const ir::Node& b) {
  for (size_t i = 0; i < a.attributes().size(); ++i) {
    const ir::Tensor* x = a.attributes()[i].tensor.get();
    const ir::Tensor* y = b.attributes()[i].tensor.get();
    if ((x == nullptr) != (y == nullptr) || (x && !same_bytes(*x, *y))) return false;
  }
  return true;
}

// A byte string identifying a node's expression: op, domain, inputs (by identity) and attributes.
std::string expression_key(const ir::Node& node) {
  std::string key = node.domain() + "\n" + node.op_type() + "\n";
  for (const ir::Value* in : node.inputs()) {
    key += std::to_string(reinterpret_cast<uintptr_t>(in));
    key += ',';
  }
  key += '\n';
  for (const ir::Attribute& attr : node.attributes()) {
    key += attr.proto.SerializeAsString();
    if (attr.tensor) key += tensor_key(*attr.tensor);
    key += '\n';
  }
  return key;
}

class EliminateCommonSubexpressionsPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = merge_initializers(graph, ctx);
    std::map<std::string, ir::Node*> seen;
    for (ir::Node* node : graph.nodes()) {
      if (node->dead() || node->outputs().empty() || !node->subgraphs().empty() || is_random(*node)) continue;
      auto [it, inserted] = seen.emplace(expression_key(*node), node);
      if (inserted) continue;
      ir::Node* kept = it->second;
      if (kept->outputs().size() != node->outputs().size() || !same_attribute_tensors(*kept, *node)) continue;
      if (!replace_outputs(graph, *node, *kept)) {
        ctx.explain_skip(*node, "an output is a graph output that the earlier node's output cannot take over");
        continue;
      }
      graph.erase(node);
      ctx.count("nodes-merged");
      changed = true;
    }
    return changed;
  }

 private:
  // Moves the readers of `node`'s outputs to `kept`'s; all or nothing.
  static bool replace_outputs(ir::Graph& graph, ir::Node& node, ir::Node& kept) {
    for (size_t o = 0; o < node.outputs().size(); ++o) {
      ir::Value* out = node.output(o);
      if (out == nullptr) continue;
      ir::Value* keep = kept.output(o);
      if (keep == nullptr) return false;
      if (out->is_graph_output() && (keep->is_graph_output() || keep->owner() != &graph)) return false;
    }
    int graph_outputs = 0;
    for (const ir::Value* out : node.outputs()) graph_outputs += out && out->is_graph_output();
    if (graph_outputs > 1) return false;  // one value cannot take over two output names
    for (size_t o = 0; o < node.outputs().size(); ++o) {
      if (ir::Value* out = node.output(o)) graph.replace_all_uses(out, kept.output(o));
    }
    return true;
  }

  static bool merge_initializers(ir::Graph& graph, pass::PassContext& ctx) {
    std::map<std::string, std::vector<ir::Value*>> kept;  // by initializer_group: the distinct ones so far
    bool changed = false;
    for (ir::Value* v : graph.initializers()) {
      if (v->is_graph_input() || v->is_graph_output()) continue;
      const ir::Tensor& t = *v->initializer();
      std::vector<ir::Value*>& group = kept[initializer_group(t)];
      ir::Value* same = nullptr;
      for (ir::Value* k : group) {
        const ir::Tensor& other = *k->initializer();
        if (other.content_hash() == t.content_hash() && same_bytes(other, t)) {
          same = k;
          break;
        }
      }
      if (same == nullptr) {
        group.push_back(v);
        continue;
      }
      const auto bytes = static_cast<int64_t>(t.nbytes());
      graph.replace_all_uses(v, same);
      graph.remove_initializer(v);
      ctx.count("initializers-merged");
      ctx.count("initializer-bytes-saved", bytes);
      changed = true;
    }
    return changed;
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& EliminateCommonSubexpressionsOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createEliminateCommonSubexpressions(const pass::Options&) {
  return std::make_unique<EliminateCommonSubexpressionsPass>();
}

}  // namespace mopt::passes
