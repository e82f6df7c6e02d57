// Graph-building helpers for the quantization rewrites; see rewrite.h.
#include "rewrite/rewrite.h"

#include <algorithm>
#include <set>

namespace mopt::rewrite {

std::string describe(const ir::Node& node) {
  if (!node.name().empty()) return node.name();
  const ir::Value* out = node.output(0);
  return out ? node.op_type() + " -> " + out->name() : node.op_type();
}

int64_t name_unnamed_nodes(ir::Model& model) {
  int64_t named = 0;
  for (ir::Node* n : model.graph().nodes()) {
    if (!n->name().empty()) continue;
    n->mutable_proto().set_name(model.fresh_name(n->op_type()));
    ++named;
  }
  return named;
}

namespace {

// Replaces `node`'s attribute `name` (if any) by one of `type` whose value `fill` sets.
template <typename Fill>
void set_attr(ir::Node& node, const std::string& name, onnx::AttributeProto::AttributeType type, Fill&& fill) {
  remove_attr(node, name);
  ir::Attribute a;
  a.proto.set_name(name);
  a.proto.set_type(type);
  fill(a.proto);
  node.mutable_attributes().push_back(std::move(a));
}

}  // namespace

void set_int_attr(ir::Node& node, const std::string& name, int64_t value) {
  set_attr(node, name, onnx::AttributeProto::INT, [&](onnx::AttributeProto& p) { p.set_i(value); });
}

void set_string_attr(ir::Node& node, const std::string& name, const std::string& value) {
  set_attr(node, name, onnx::AttributeProto::STRING, [&](onnx::AttributeProto& p) { p.set_s(value); });
}

void set_float_attr(ir::Node& node, const std::string& name, float value) {
  set_attr(node, name, onnx::AttributeProto::FLOAT, [&](onnx::AttributeProto& p) { p.set_f(value); });
}

void copy_attributes(const ir::Node& from, ir::Node& to) {
  for (const ir::Attribute& attr : from.attributes()) {
    if (attr.graph || !attr.graph_list.empty()) continue;
    ir::Attribute copy;
    copy.proto = attr.proto;
    if (attr.tensor) copy.tensor = std::make_unique<ir::Tensor>(*attr.tensor);
    to.mutable_attributes().push_back(std::move(copy));
  }
}

ir::Value* add_constant(ir::Graph& graph, const std::string& base, ir::Tensor tensor) {
  tensor.set_name(graph.model()->fresh_name(base));
  return graph.add_initializer(std::move(tensor));
}

std::unordered_map<const ir::Node*, size_t> node_positions(const ir::Graph& graph) {
  std::unordered_map<const ir::Node*, size_t> positions;
  size_t i = 0;
  for (const ir::Node* n : graph.nodes()) positions[n] = i++;
  return positions;
}

ir::Node* first_consumer(const ir::Value& value, const std::unordered_map<const ir::Node*, size_t>& positions) {
  ir::Node* first = nullptr;
  size_t best = 0;
  for (const ir::Use& use : value.uses()) {
    auto it = positions.find(use.node);
    const size_t pos = it == positions.end() ? SIZE_MAX : it->second;
    if (first == nullptr || pos < best) {
      first = use.node;
      best = pos;
    }
  }
  return first;
}

void remove_unused_weights(ir::Graph& graph, const std::vector<ir::Value*>& candidates) {
  std::set<ir::Value*> done;
  for (ir::Value* v : candidates) {
    if (!done.insert(v).second || v->has_uses() || v->is_graph_output()) continue;
    if (v->initializer() && !v->is_graph_input()) {
      graph.remove_initializer(v);
    } else if (ir::Node* p = v->producer(); p && p->is_op("Constant") && !p->dead() && p->owner() == &graph) {
      graph.erase(p);
    }
  }
}

bool has_single_use(const ir::Value& value) { return value.uses().size() == 1 && !value.is_graph_output(); }

ir::Node* sole_consumer(const ir::Value& value) { return has_single_use(value) ? value.uses()[0].node : nullptr; }

std::optional<exec::Array> constant_array(const ir::Value* value) {
  const ir::Tensor* t = value ? value->constant() : nullptr;
  if (t == nullptr || exec::element_size(t->dtype()) == 0) return std::nullopt;
  return exec::Array::from_tensor(*t);
}

std::optional<std::vector<int64_t>> constant_ints(const ir::Value* value) {
  std::optional<exec::Array> a = constant_array(value);
  if (!a || (a->dtype() != ir::dtype::kInt64 && a->dtype() != ir::dtype::kInt32)) return std::nullopt;
  return a->to_int64s();
}

std::optional<size_t> rank_of(const ir::Value& value) {
  if (const ir::Tensor* c = value.constant()) return c->dims().size();
  const onnx::TypeProto& t = value.info().type();
  if (!t.has_tensor_type() || !t.tensor_type().has_shape()) return std::nullopt;
  return static_cast<size_t>(t.tensor_type().shape().dim_size());
}

bool is_random(const ir::Node& node) {
  const std::string& op = node.op_type();
  return node.is_default_domain() && (op.rfind("Random", 0) == 0 || op == "Multinomial" || op == "Bernoulli");
}

bool is_constant_float(const ir::Value* value, float expected) {
  std::optional<exec::Array> a = constant_array(value);
  if (!a || a->dtype() != ir::dtype::kFloat || a->numel() == 0) return false;
  const float* p = a->data<float>();
  return std::all_of(p, p + a->numel(), [&](float v) { return v == expected; });
}

int64_t attr_int(const ir::Node& node, const std::string& name, int64_t fallback) {
  return node.attribute_int(name).value_or(fallback);
}

std::vector<int64_t> attr_ints(const ir::Node& node, const std::string& name) {
  const ir::Attribute* a = node.attribute(name);
  if (a == nullptr) return {};
  return {a->proto.ints().begin(), a->proto.ints().end()};
}

std::string attr_string(const ir::Node& node, const std::string& name, const std::string& fallback) {
  const ir::Attribute* a = node.attribute(name);
  return a == nullptr ? fallback : a->proto.s();
}

void remove_attr(ir::Node& node, const std::string& name) {
  auto& attrs = node.mutable_attributes();
  attrs.erase(std::remove_if(attrs.begin(), attrs.end(), [&](const ir::Attribute& a) { return a.name() == name; }), attrs.end());
}

void set_ints_attr(ir::Node& node, const std::string& name, const std::vector<int64_t>& values) {
  set_attr(node, name, onnx::AttributeProto::INTS, [&](onnx::AttributeProto& p) {
    for (int64_t v : values) p.add_ints(v);
  });
}

ir::Value* add_constant(ir::Graph& graph, const std::string& base, const exec::Array& array) {
  return add_constant(graph, base, array.to_tensor(base));
}

ir::Value* add_constant(ir::Graph& graph, const std::string& base, exec::Array&& array) {
  return add_constant(graph, base, std::move(array).into_tensor(base));
}

int32_t elem_type(const ir::Value& value) {
  const onnx::TypeProto& t = value.info().type();
  if (value.initializer()) return value.initializer()->dtype();
  return t.has_tensor_type() ? t.tensor_type().elem_type() : 0;
}

std::optional<std::vector<int64_t>> static_shape(const ir::Value& value) {
  if (const ir::Tensor* c = value.constant()) return c->dims();
  const onnx::TypeProto& t = value.info().type();
  if (!t.has_tensor_type() || !t.tensor_type().has_shape()) return std::nullopt;
  std::vector<int64_t> dims;
  for (const auto& d : t.tensor_type().shape().dim()) {
    if (!d.has_dim_value() || d.dim_value() < 0) return std::nullopt;
    dims.push_back(d.dim_value());
  }
  return dims;
}

bool bypass(ir::Graph& graph, ir::Node& node, ir::Value* replacement, size_t index) {
  ir::Value* out = node.output(index);
  if (out == nullptr || !graph.replace_all_uses(out, replacement)) return false;
  bool dead = true;
  for (const ir::Value* o : node.outputs()) dead = dead && (o == nullptr || (!o->has_uses() && !o->is_graph_output()));
  if (dead) graph.erase(&node);
  return true;
}

bool take_over(ir::Graph& graph, ir::Value* from, ir::Value* to) {
  if (from->is_graph_output()) return graph.replace_all_uses(from, to);  // `to` takes the output's name there
  if (!graph.replace_all_uses(from, to)) return false;
  if (to->is_graph_input() || to->initializer() || to->is_graph_output()) return true;
  const std::string name = from->name();
  const bool typed = from->has_type();
  const onnx::TypeProto type = typed ? from->info().type() : onnx::TypeProto();
  graph.rename_value(from, graph.model()->fresh_name(name + "_replaced"));
  graph.rename_value(to, name);
  if (typed) graph.set_value_type(to, type);
  return true;
}

void ensure_opset_import(ir::Model& model, const std::string& domain, int64_t version) {
  if (model.opset(domain) != 0) return;
  auto* op = model.mutable_proto().add_opset_import();
  op->set_domain(domain);
  op->set_version(version);
}

}  // namespace mopt::rewrite
