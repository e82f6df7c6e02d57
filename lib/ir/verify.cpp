// IR invariants and the ONNX checker; see verify.h.
#include "ir/verify.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>

#include <algorithm>
#include <unordered_set>

#include "ir/proto.h"
#include "ir/validate.h"
#include "util/error.h"

namespace mopt::ir {
namespace {

[[noreturn]] void broken(const Graph& g, const std::string& what) {
  fail("IR invariant broken in graph '{}': {}", g.name(), what);
}

// `visible` holds the outer values this graph may read; it is taken by value so each subgraph gets its
// own scope.
void verify_graph(const Graph& g, std::unordered_set<const Value*> visible) {
  std::unordered_set<std::string> names;
  auto define = [&](const Value* v) {
    if (v->owner() != &g) broken(g, fmt::format("value '{}' defined here is owned by another graph", v->name()));
    if (!names.insert(v->name()).second) broken(g, fmt::format("value name '{}' defined twice", v->name()));
    if (g.find_local(v->name()) != v) broken(g, fmt::format("value '{}' is missing from the name table", v->name()));
    visible.insert(v);
  };
  for (const Value* v : g.inputs()) define(v);
  for (const Value* v : g.initializers()) {
    if (!v->is_graph_input()) define(v);
  }
  for (const Node* n : g.nodes()) {
    if (n->owner() != &g) broken(g, fmt::format("node '{}' is owned by another graph", n->name()));
    for (size_t i = 0; i < n->inputs().size(); ++i) {
      const Value* in = n->inputs()[i];
      if (in == nullptr) continue;
      if (!visible.count(in)) {
        // Sparse initializers are values too; they live in the graph's proto shell.
        if (g.lookup(in->name()) != in || in->producer() != nullptr)
          broken(g, fmt::format("node '{}' ({}) reads '{}' before it is defined", n->name(), n->op_type(), in->name()));
      }
      const auto& uses = in->uses();
      if (std::find(uses.begin(), uses.end(), Use{const_cast<Node*>(n), i}) == uses.end())
        broken(g, fmt::format("'{}' does not list node '{}' input {} as a use", in->name(), n->name(), i));
    }
    for (Graph* sub : n->subgraphs()) verify_graph(*sub, visible);
    for (size_t i = 0; i < n->outputs().size(); ++i) {
      const Value* out = n->outputs()[i];
      if (out == nullptr) continue;
      if (out->producer() != n || out->producer_output() != i)
        broken(g, fmt::format("'{}' does not name node '{}' as its producer", out->name(), n->name()));
      define(out);
      for (const Use& u : out->uses()) {
        if (u.node->dead() || u.node->input(u.input_index) != out)
          broken(g, fmt::format("'{}' lists a stale use by node '{}'", out->name(), u.node->name()));
      }
    }
  }
  for (const Value* out : g.outputs()) {
    if (!visible.count(out) && g.lookup(out->name()) != out)
      broken(g, fmt::format("graph output '{}' is not defined", out->name()));
  }
}

}  // namespace

void verify_invariants(const Model& model) { verify_graph(model.graph(), {}); }

onnx::ModelProto export_for_analysis(const Model& model, uint64_t inline_limit, uint64_t float_inline_limit) {
  return export_model(model, [=](const Tensor& t, onnx::TensorProto& out) {
    const int32_t type = t.dtype();
    const bool floating = type == dtype::kFloat || type == dtype::kFloat16 || type == dtype::kBfloat16 || type == dtype::kDouble;
    if (t.raw().size() <= std::min(inline_limit, floating ? float_inline_limit : inline_limit)) {
      out.set_raw_data(reinterpret_cast<const char*>(t.raw().data()), t.raw().size());
    } else {
      // A one-byte placeholder: the checker wants a non-empty data field, and shape inference reads the
      // values of small tensors (shape inputs) only.
      out.set_raw_data(std::string(1, '\0'));
    }
  });
}

std::optional<std::string> newer_than_onnx_knows(const Model& model) {
  const auto& known = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  for (const auto& op : model.proto().opset_import()) {
    const std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    auto it = known.find(domain);
    if (it != known.end() && op.version() > it->second.second)
      return fmt::format("it imports opset {} of domain '{}', newer than the {} ONNX 1.12 knows", op.version(),
                         domain.empty() ? "ai.onnx" : domain, it->second.second);
  }
  if (model.ir_version() > onnx::IR_VERSION)
    return fmt::format("IR version {} is newer than the {} ONNX 1.12 knows", model.ir_version(),
                       static_cast<int>(onnx::IR_VERSION));
  return std::nullopt;
}

CheckResult run_onnx_checker(const Model& model) {
  validate_model(model);  // the checker must not see a node the validation layer refuses
  if (auto why = newer_than_onnx_knows(model))
    return {CheckResult::Status::NotJudged, "the ONNX checker (ONNX 1.12) could not judge this model: " + *why};
  onnx::ModelProto proto = export_for_analysis(model, 0);
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    return {CheckResult::Status::Failed, one_line(e.what())};
  }
  return {};
}

}  // namespace mopt::ir
