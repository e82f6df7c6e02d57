// Graph mutation with use-def bookkeeping; see ir.h for the model of the IR.
#include "ir/ir.h"

#include <algorithm>
#include <cassert>
#include <queue>

#include "util/error.h"

namespace mopt::ir {

// ---------------------------------------------------------------- Value

const Tensor* Value::constant() const {
  if (initializer_ && !graph_input_) return initializer_.get();
  if (producer_ != nullptr && producer_->is_op("Constant")) {
    if (const Attribute* value = producer_->attribute("value"); value != nullptr && value->tensor) {
      return value->tensor.get();
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------- Node

void Node::set_input(size_t i, Value* value) {
  assert(i < inputs_.size());
  if (inputs_[i] != nullptr) owner_->remove_use(inputs_[i], this, i);
  inputs_[i] = value;
  if (value != nullptr) owner_->add_use(value, this, i);
}

void Node::add_input(Value* value) {
  inputs_.push_back(value);
  if (value != nullptr) owner_->add_use(value, this, inputs_.size() - 1);
}

const Attribute* Node::attribute(const std::string& name) const {
  for (const Attribute& a : attributes_) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

std::optional<int64_t> Node::attribute_int(const std::string& name) const {
  const Attribute* a = attribute(name);
  if (a == nullptr || a->proto.type() != onnx::AttributeProto::INT) return std::nullopt;
  return a->proto.i();
}

std::optional<float> Node::attribute_float(const std::string& name) const {
  const Attribute* a = attribute(name);
  if (a == nullptr || a->proto.type() != onnx::AttributeProto::FLOAT) return std::nullopt;
  return a->proto.f();
}

std::vector<Graph*> Node::subgraphs() const {
  std::vector<Graph*> result;
  for (const Attribute& a : attributes_) {
    if (a.graph) result.push_back(a.graph.get());
    for (const auto& g : a.graph_list) result.push_back(g.get());
  }
  return result;
}

// ---------------------------------------------------------------- Graph

std::vector<Node*> Graph::nodes() const {
  std::vector<Node*> result;
  result.reserve(nodes_.size());
  for (const auto& n : nodes_) {
    if (!n->dead_) result.push_back(n.get());
  }
  return result;
}

size_t Graph::node_count() const {
  return static_cast<size_t>(std::count_if(nodes_.begin(), nodes_.end(), [](const auto& n) { return !n->dead_; }));
}

std::vector<Value*> Graph::initializers() const {
  std::vector<Value*> result;
  for (Value* v : initializer_order_) {
    if (v->initializer_) result.push_back(v);
  }
  return result;
}

std::vector<Value*> Graph::values() const {
  std::vector<Value*> result;
  result.reserve(values_.size());
  for (const auto& v : values_) {
    auto it = by_name_.find(v->name_);
    if (it != by_name_.end() && it->second == v.get()) result.push_back(v.get());
  }
  return result;
}

Value* Graph::find_local(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Value* Graph::lookup(const std::string& name) const {
  for (const Graph* g = this; g != nullptr; g = g->parent_ ? g->parent_->owner_ : nullptr) {
    if (Value* v = g->find_local(name)) return v;
  }
  return nullptr;
}

Value* Graph::new_value(const std::string& name) {
  auto value = std::make_unique<Value>();
  value->name_ = name;
  value->owner_ = this;
  value->info_.set_name(name);
  Value* raw = value.get();
  values_.push_back(std::move(value));
  by_name_[name] = raw;
  model_->reserve_name(name);
  return raw;
}

void Graph::rename(Value* value, const std::string& name) {
  auto it = by_name_.find(value->name_);
  if (it != by_name_.end() && it->second == value) by_name_.erase(it);
  value->name_ = name;
  value->info_.set_name(name);
  by_name_[name] = value;
  model_->reserve_name(name);
}

void Graph::rename_value(Value* value, const std::string& name) {
  assert(value->owner_ == this && !model_->name_used(name));
  rename(value, name);
}

void Graph::add_use(Value* value, Node* node, size_t index) { value->uses_.push_back({node, index}); }

void Graph::remove_use(Value* value, Node* node, size_t index) {
  auto& uses = value->uses_;
  auto it = std::find(uses.begin(), uses.end(), Use{node, index});
  assert(it != uses.end());
  uses.erase(it);
}

Node* Graph::create_node(const std::string& op_type, const std::vector<Value*>& inputs, size_t num_outputs,
                         Node* before, const std::string& domain, const std::string& output_hint) {
  auto node = std::make_unique<Node>();
  Node* raw = node.get();
  raw->owner_ = this;
  raw->proto_.set_op_type(op_type);
  if (!domain.empty()) raw->proto_.set_domain(domain);
  raw->proto_.set_name(model_->fresh_name(op_type));
  for (Value* in : inputs) raw->add_input(in);
  const std::string base = output_hint.empty() ? raw->proto_.name() : output_hint;
  for (size_t i = 0; i < num_outputs; ++i) {
    Value* out = new_value(model_->fresh_name(base + "_out" + std::to_string(i)));
    out->producer_ = raw;
    out->producer_output_ = i;
    raw->outputs_.push_back(out);
  }
  if (before == nullptr) {
    nodes_.push_back(std::move(node));
  } else {
    auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n.get() == before; });
    assert(it != nodes_.end());
    nodes_.insert(it, std::move(node));
  }
  return raw;
}

Value* Graph::add_input(const std::string& name, const onnx::TypeProto& type) {
  Value* v = new_value(name);
  v->graph_input_ = true;
  *v->info_.mutable_type() = type;
  inputs_.push_back(v);
  return v;
}

void Graph::remove_input_of_initializer(Value* value) {
  assert(value->initializer_ && value->graph_input_);
  inputs_.erase(std::remove(inputs_.begin(), inputs_.end(), value), inputs_.end());
  value->graph_input_ = false;
}

Value* Graph::add_initializer(Tensor tensor) {
  assert(find_local(tensor.name()) == nullptr);
  Value* v = new_value(tensor.name());
  v->initializer_ = std::make_unique<Tensor>(std::move(tensor));
  initializer_order_.push_back(v);
  return v;
}

void Graph::remove_initializer(Value* value) {
  assert(value->initializer_ && value->uses_.empty() && !value->is_graph_output());
  value->initializer_.reset();
  initializer_order_.erase(std::remove(initializer_order_.begin(), initializer_order_.end(), value),
                           initializer_order_.end());
  if (!value->graph_input_) by_name_.erase(value->name_);
}

void Graph::erase(Node* node) {
  assert(node->owner_ == this && !node->dead_);
  for (size_t i = 0; i < node->inputs_.size(); ++i) {
    if (node->inputs_[i] != nullptr) remove_use(node->inputs_[i], node, i);
    node->inputs_[i] = nullptr;
  }
  for (Value* out : node->outputs_) {
    if (out == nullptr) continue;
    assert(out->uses_.empty() && !out->is_graph_output());
    auto it = by_name_.find(out->name_);
    if (it != by_name_.end() && it->second == out) by_name_.erase(it);
    out->producer_ = nullptr;
  }
  // Values used inside the node's subgraphs (outer-scope values included) lose those uses too.
  for (Graph* sub : node->subgraphs()) sub->detach_all_inputs();
  node->dead_ = true;
}

void Graph::detach_all_inputs() {
  for (Node* node : nodes()) {
    for (size_t i = 0; i < node->inputs_.size(); ++i) {
      if (node->inputs_[i] != nullptr) node->inputs_[i]->owner_->remove_use(node->inputs_[i], node, i);
      node->inputs_[i] = nullptr;
    }
    for (Graph* sub : node->subgraphs()) sub->detach_all_inputs();
  }
}

bool Graph::can_replace_all_uses(const Value* from, const Value* to) const {
  if (from == to || !from->is_graph_output()) return true;
  return to->owner_ == this && to->producer_ != nullptr && !to->is_graph_output() && !to->graph_input_ && !to->initializer_;
}

bool Graph::replace_all_uses(Value* from, Value* to) {
  if (from == to) return true;
  if (!can_replace_all_uses(from, to)) return false;
  std::vector<Use> uses = from->uses_;
  for (const Use& u : uses) u.node->set_input(u.input_index, to);
  if (from->is_graph_output()) {
    // `to` becomes the output under the output's own name; `from` keeps a placeholder name until erased.
    const std::string name = from->name_;
    onnx::ValueInfoProto info = from->info_;
    rename(from, model_->fresh_name(name + "_replaced"));
    rename(to, name);
    if (info.has_type()) *to->info_.mutable_type() = info.type();
    if (info.has_doc_string()) to->info_.set_doc_string(info.doc_string());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      if (outputs_[i] == from) set_output(i, to);
    }
  }
  return true;
}

void Graph::set_output(size_t index, Value* value) {
  assert(index < outputs_.size());
  outputs_[index]->graph_output_count_--;
  outputs_[index] = value;
  value->graph_output_count_++;
}

void Graph::set_value_type(Value* value, const onnx::TypeProto& type) {
  assert(value->owner_ == this);
  *value->info_.mutable_type() = type;
  if (!value->graph_input_ && !value->is_graph_output() && !value->in_value_info_) {
    value->in_value_info_ = true;
    value_info_order_.push_back(value);
  }
}

size_t Graph::clear_value_info_of_dead_values() {
  size_t removed = orphan_value_info_.size();
  orphan_value_info_.clear();
  auto alive = [&](Value* v) {
    auto it = by_name_.find(v->name_);
    return it != by_name_.end() && it->second == v;
  };
  auto keep = std::remove_if(value_info_order_.begin(), value_info_order_.end(), [&](Value* v) {
    if (alive(v)) return false;
    v->in_value_info_ = false;
    return true;
  });
  removed += static_cast<size_t>(value_info_order_.end() - keep);
  value_info_order_.erase(keep, value_info_order_.end());
  return removed;
}

namespace {
// Values from this graph that `node` (or any node nested in its subgraphs) reads.
void collect_dependencies(const Node* node, const Graph* graph, std::vector<Node*>& producers) {
  for (Value* in : node->inputs()) {
    if (in != nullptr && in->owner() == graph && in->producer() != nullptr) producers.push_back(in->producer());
  }
  for (Graph* sub : node->subgraphs()) {
    for (Node* inner : sub->nodes()) collect_dependencies(inner, graph, producers);
  }
}
}  // namespace

void Graph::toposort() {
  compact();
  const size_t n = nodes_.size();
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < n; ++i) index[nodes_[i].get()] = i;
  std::vector<std::vector<size_t>> users(n);
  std::vector<size_t> pending(n, 0);
  for (size_t i = 0; i < n; ++i) {
    std::vector<Node*> deps;
    collect_dependencies(nodes_[i].get(), this, deps);
    std::sort(deps.begin(), deps.end());
    deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    for (Node* d : deps) {
      auto it = index.find(d);
      if (it == index.end() || it->second == i) {
        if (it != index.end()) fail("graph '{}' has a cycle: node '{}' ({}) uses its own output", name(), d->name(), d->op_type());
        continue;
      }
      users[it->second].push_back(i);
      pending[i]++;
    }
  }
  // Kahn's algorithm with a min-heap on the original position keeps the order stable.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  std::vector<std::unique_ptr<Node>> sorted;
  sorted.reserve(n);
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    sorted.push_back(std::move(nodes_[i]));
    for (size_t u : users[i]) {
      if (--pending[u] == 0) ready.push(u);
    }
  }
  if (sorted.size() != n) {
    for (size_t i = 0; i < n; ++i) {
      if (nodes_[i]) fail("graph '{}' has a cycle through node '{}' ({})", name(), nodes_[i]->name(), nodes_[i]->op_type());
    }
  }
  nodes_ = std::move(sorted);
}

void Graph::compact() {
  std::erase_if(nodes_, [](const auto& n) { return n->dead_; });
  std::unordered_set<const Value*> referenced;
  for (const auto& n : nodes_) {
    for (Value* v : n->outputs_) referenced.insert(v);
  }
  std::erase_if(values_, [&](const auto& v) {
    if (referenced.count(v.get()) || v->graph_input_ || v->initializer_ || v->is_graph_output() || v->sparse_initializer_)
      return false;
    if (!v->uses_.empty()) return false;
    if (std::find(value_info_order_.begin(), value_info_order_.end(), v.get()) != value_info_order_.end()) return false;
    auto it = by_name_.find(v->name_);
    if (it != by_name_.end() && it->second == v.get()) by_name_.erase(it);
    return true;
  });
}

// ---------------------------------------------------------------- Model

Model::Model() : graph_(std::make_unique<Graph>(this, nullptr)) {}
Model::~Model() = default;

void Model::replace_with(Model&& other) {
  proto_ = std::move(other.proto_);
  graph_ = std::move(other.graph_);
  used_names_ = std::move(other.used_names_);
  fresh_counters_ = std::move(other.fresh_counters_);
  for_each_graph([this](Graph& g) { g.model_ = this; });
  other.graph_ = std::make_unique<Graph>(&other, nullptr);
}

int64_t Model::opset(const std::string& domain) const {
  const bool want_default = domain.empty() || domain == "ai.onnx";
  for (const auto& op : proto_.opset_import()) {
    const bool is_default = op.domain().empty() || op.domain() == "ai.onnx";
    if (want_default ? is_default : op.domain() == domain) return op.version();
  }
  return 0;
}

std::string Model::fresh_name(const std::string& base) {
  if (used_names_.insert(base).second) return base;
  uint64_t& counter = fresh_counters_[base];
  for (;;) {
    std::string candidate = base + "_" + std::to_string(++counter);
    if (used_names_.insert(candidate).second) return candidate;
  }
}

namespace {
template <typename G, typename Fn>
void visit_graphs(G& graph, const Fn& fn) {
  for (Node* node : graph.nodes()) {
    for (Graph* sub : node->subgraphs()) visit_graphs(*sub, fn);
  }
  fn(graph);
}
}  // namespace

void Model::for_each_graph(const std::function<void(Graph&)>& fn) { visit_graphs(*graph_, fn); }
void Model::for_each_graph(const std::function<void(const Graph&)>& fn) const {
  visit_graphs(static_cast<const Graph&>(*graph_), fn);
}

}  // namespace mopt::ir
