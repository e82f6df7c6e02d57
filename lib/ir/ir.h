// The in-memory graph that passes read and rewrite.
//
//   Model  -- opsets, metadata, functions (in its proto shell) and the main Graph
//   Graph  -- nodes in topological order, inputs, outputs, initializers, value_info; owns its Values
//   Node   -- op_type/domain/attributes; input and output Values; subgraphs of If/Loop/Scan as Graphs
//   Value  -- a named edge: its producer (node output, graph input or initializer) and its uses
//
// Every object keeps an ONNX proto "shell" holding the fields the IR does not model (doc strings,
// unknown fields of newer ONNX versions, ...), so load + save without passes is lossless.
//
// Mutation goes through Graph so use lists stay right. Erasing a node only marks it dead; the object
// lives until Graph::compact(), so a pass may erase nodes while iterating a nodes() snapshot.
#pragma once
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/tensor.h"

namespace mopt::ir {

class Graph;
class Model;
class Node;

struct Use {
  Node* node;
  size_t input_index;
  bool operator==(const Use&) const = default;
};

class Value {
 public:
  const std::string& name() const { return name_; }
  Graph* owner() const { return owner_; }
  Node* producer() const { return producer_; }
  size_t producer_output() const { return producer_output_; }
  const std::vector<Use>& uses() const { return uses_; }
  bool has_uses() const { return !uses_.empty(); }

  // An initializer's tensor, or nullptr. Note a graph input with an initializer (IR < 4 style) can be
  // overridden by the caller, so constant() does not treat it as constant.
  Tensor* initializer() const { return initializer_.get(); }
  bool is_graph_input() const { return graph_input_; }
  bool is_graph_output() const { return graph_output_count_ > 0; }
  // The constant value of this Value, if it is a non-overridable initializer or the output of a Constant
  // node with a tensor `value` attribute; nullptr otherwise. Weights in Constant nodes count as weights.
  const Tensor* constant() const;

  // Type and doc string as in the model's input/output/value_info entries (name kept in sync on save).
  const onnx::ValueInfoProto& info() const { return info_; }
  onnx::ValueInfoProto& mutable_info() { return info_; }
  bool has_type() const { return info_.has_type(); }
  bool in_value_info() const { return in_value_info_; }

 private:
  friend class Graph;
  friend class Node;
  friend struct ProtoAccess;
  std::string name_;
  Graph* owner_ = nullptr;
  Node* producer_ = nullptr;
  size_t producer_output_ = 0;
  std::vector<Use> uses_;
  std::unique_ptr<Tensor> initializer_;
  bool graph_input_ = false;
  int graph_output_count_ = 0;
  bool in_value_info_ = false;
  bool sparse_initializer_ = false;
  onnx::ValueInfoProto info_;
};

// A node attribute. Graph-valued attributes (If branches, Loop/Scan bodies) hold IR Graphs, and a
// tensor-valued attribute (Constant's `value`) holds an IR Tensor so its payload is shared, not copied;
// all other attribute kinds stay in the proto.
struct Attribute {
  onnx::AttributeProto proto;  // g, graphs and t are moved out into the members below
  std::unique_ptr<Graph> graph;                    // proto field g
  std::vector<std::unique_ptr<Graph>> graph_list;  // proto field graphs
  std::unique_ptr<Tensor> tensor;                  // proto field t
  const std::string& name() const { return proto.name(); }
};

class Node {
 public:
  const std::string& op_type() const { return proto_.op_type(); }
  const std::string& domain() const { return proto_.domain(); }
  const std::string& name() const { return proto_.name(); }
  bool is_op(const char* op_type) const { return proto_.op_type() == op_type && is_default_domain(); }
  bool is_default_domain() const { return proto_.domain().empty() || proto_.domain() == "ai.onnx"; }
  Graph* owner() const { return owner_; }
  bool dead() const { return dead_; }

  // Missing optional inputs/outputs are nullptr.
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  Value* output(size_t i) const { return i < outputs_.size() ? outputs_[i] : nullptr; }
  void set_input(size_t i, Value* value);
  void add_input(Value* value);

  const std::vector<Attribute>& attributes() const { return attributes_; }
  std::vector<Attribute>& mutable_attributes() { return attributes_; }
  const Attribute* attribute(const std::string& name) const;
  std::optional<int64_t> attribute_int(const std::string& name) const;
  std::optional<float> attribute_float(const std::string& name) const;
  // Subgraphs of this node's attributes, in attribute order.
  std::vector<Graph*> subgraphs() const;

  const onnx::NodeProto& proto() const { return proto_; }
  onnx::NodeProto& mutable_proto() { return proto_; }

 private:
  friend class Graph;
  friend struct ProtoAccess;
  onnx::NodeProto proto_;  // shell: input, output and attribute are cleared
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Attribute> attributes_;
  Graph* owner_ = nullptr;
  bool dead_ = false;
};

class Graph {
 public:
  Graph(Model* model, Node* parent) : model_(model), parent_(parent) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  Model* model() const { return model_; }
  Node* parent_node() const { return parent_; }  // the If/Loop/Scan owning this subgraph, or nullptr
  const std::string& name() const { return proto_.name(); }

  // A snapshot of the live nodes in order: safe to erase or insert nodes while iterating it.
  std::vector<Node*> nodes() const;
  size_t node_count() const;
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  // Values holding initializers, in the model's order.
  std::vector<Value*> initializers() const;
  // All values of this graph in creation order (dead ones excluded).
  std::vector<Value*> values() const;

  // Looks a name up in this graph, then in enclosing graphs (subgraphs may use outer values).
  Value* lookup(const std::string& name) const;
  Value* find_local(const std::string& name) const;

  // ---- mutation ----
  // A new node before `before` (or at the end); outputs get fresh names derived from `output_hint`.
  Node* create_node(const std::string& op_type, const std::vector<Value*>& inputs, size_t num_outputs,
                    Node* before = nullptr, const std::string& domain = "", const std::string& output_hint = "");
  Value* add_input(const std::string& name, const onnx::TypeProto& type);
  Value* add_initializer(Tensor tensor);  // the tensor's name must be unused; see Model::fresh_name
  // Stops listing an initializer as a graph input (IR < 4 models list every initializer as an input).
  void remove_input_of_initializer(Value* value);
  // Removes an initializer value. It must have no uses and must not be a graph output.
  void remove_initializer(Value* value);
  // Marks a node dead and detaches its inputs. Its outputs must have no uses and not be graph outputs.
  void erase(Node* node);
  // Moves every use of `from` to `to`. When `from` is a graph output, the output keeps its name: `to`
  // takes it over if `to` is a node output of this graph not itself exposed; otherwise nothing changes
  // and false is returned (a rewrite must then leave the node alone).
  bool replace_all_uses(Value* from, Value* to);
  // Gives `value` (of this graph) a new name; the name must be unused in the model (Model::name_used).
  void rename_value(Value* value, const std::string& name);
  // Whether replace_all_uses(from, to) would succeed; changes nothing (for a rule's match).
  bool can_replace_all_uses(const Value* from, const Value* to) const;
  void set_output(size_t index, Value* value);
  // Sets a value's type; an intermediate value gets a value_info entry so the type is saved.
  void set_value_type(Value* value, const onnx::TypeProto& type);
  // Drops value_info entries (typed intermediate values); keeps inputs and outputs.
  size_t clear_value_info_of_dead_values();
  // Stable topological order (original order wherever possible). Throws mopt::Error naming a node on a cycle.
  void toposort();
  // Frees dead nodes and values nothing refers to.
  void compact();

  const onnx::GraphProto& proto() const { return proto_; }
  onnx::GraphProto& mutable_proto() { return proto_; }

 private:
  friend class Node;
  friend class Model;
  friend struct ProtoAccess;
  Value* new_value(const std::string& name);
  void rename(Value* value, const std::string& name);
  void add_use(Value* value, Node* node, size_t index);
  void remove_use(Value* value, Node* node, size_t index);
  void detach_all_inputs();  // for a subgraph whose owning node is erased

  Model* model_;
  Node* parent_;
  onnx::GraphProto proto_;  // shell: node, initializer, input, output, value_info are cleared
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::unordered_map<std::string, Value*> by_name_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Value*> initializer_order_;
  std::vector<Value*> value_info_order_;
  std::vector<onnx::ValueInfoProto> orphan_value_info_;  // value_info naming no value in the graph
};

class Model {
 public:
  Model();
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  Graph& graph() { return *graph_; }
  const Graph& graph() const { return *graph_; }
  // Opset version imported for a domain ("" and "ai.onnx" are the same), or 0 if not imported.
  int64_t opset(const std::string& domain = "") const;
  int64_t ir_version() const { return proto_.ir_version(); }

  // A name no value or node in the model uses yet, derived from `base`; deterministic.
  std::string fresh_name(const std::string& base);
  void reserve_name(const std::string& name) { used_names_.insert(name); }
  // Whether any value or node of the model has used `name` (names a rewrite retired count too).
  bool name_used(const std::string& name) const { return used_names_.count(name) > 0; }

  // Takes over everything `other` holds (after a conversion that builds a new model, e.g. an opset
  // upgrade), so that references to this Model stay valid. `other` is left empty.
  void replace_with(Model&& other);

  // Calls fn on every graph, innermost subgraphs first, the main graph last.
  void for_each_graph(const std::function<void(Graph&)>& fn);
  void for_each_graph(const std::function<void(const Graph&)>& fn) const;

  const onnx::ModelProto& proto() const { return proto_; }
  onnx::ModelProto& mutable_proto() { return proto_; }

 private:
  friend struct ProtoAccess;
  onnx::ModelProto proto_;  // shell: graph is cleared
  std::unique_ptr<Graph> graph_;
  std::unordered_set<std::string> used_names_;
  std::unordered_map<std::string, uint64_t> fresh_counters_;
};

}  // namespace mopt::ir
