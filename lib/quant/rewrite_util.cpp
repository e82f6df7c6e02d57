// Graph-building helpers for the quantization rewrites; see rewrite_util.h.
#include "quant/rewrite_util.h"

#include <algorithm>
#include <set>

namespace mopt::quant {

std::string describe(const ir::Node& node) {
  if (!node.name().empty()) return node.name();
  const ir::Value* out = node.output(0);
  return out ? node.op_type() + " -> " + out->name() : node.op_type();
}

void set_int_attr(ir::Node& node, const std::string& name, int64_t value) {
  ir::Attribute a;
  a.proto.set_name(name);
  a.proto.set_type(onnx::AttributeProto::INT);
  a.proto.set_i(value);
  node.mutable_attributes().push_back(std::move(a));
}

void set_float_attr(ir::Node& node, const std::string& name, float value) {
  ir::Attribute a;
  a.proto.set_name(name);
  a.proto.set_type(onnx::AttributeProto::FLOAT);
  a.proto.set_f(value);
  node.mutable_attributes().push_back(std::move(a));
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

void ensure_opset_import(ir::Model& model, const std::string& domain, int64_t version) {
  if (model.opset(domain) != 0) return;
  auto* op = model.mutable_proto().add_opset_import();
  op->set_domain(domain);
  op->set_version(version);
}

}  // namespace mopt::quant
