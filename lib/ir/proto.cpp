// IR <-> onnx::ModelProto. Import moves each proto into its IR object's shell and takes out only what
// the IR models (nodes, values, initializers, subgraphs, Constant tensors), so export can put back
// exactly what was there.
#include "ir/proto.h"

#include <limits>

#include "util/error.h"

namespace mopt::ir {

struct ProtoAccess {
  // ------------------------------------------------------------- import
  static Tensor import_tensor(onnx::TensorProto&& proto, const PayloadResolver& resolve, const std::string& where) {
    Tensor tensor;
    std::optional<Bytes> payload;
    if (resolve) payload = resolve(proto);
    if (!payload && proto.data_location() == onnx::TensorProto::EXTERNAL)
      fail("tensor '{}' ({}) has external data but no model folder to read it from", proto.name(), where);
    if (!payload && proto.has_raw_data()) payload = Bytes::take(std::move(*proto.mutable_raw_data()));
    tensor.mutable_proto() = std::move(proto);
    if (payload) tensor.set_raw(std::move(*payload));
    validate_tensor(tensor, where);
    return tensor;
  }

  static Value* define(Graph& g, const std::string& name, const std::string& what) {
    if (Value* existing = g.find_local(name)) {
      std::string first = existing->producer_ ? fmt::format("node '{}' ({})", existing->producer_->name(), existing->producer_->op_type())
                          : existing->graph_input_ ? std::string("a graph input")
                                                   : std::string("an initializer");
      fail("duplicate value name '{}' in graph '{}': defined by {} and again by {}", name, g.name(), first, what);
    }
    return g.new_value(name);
  }

  static void import_graph(Graph& g, onnx::GraphProto&& proto, const PayloadResolver& resolve) {
    g.proto_ = std::move(proto);
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    google::protobuf::RepeatedPtrField<onnx::TensorProto> initializers;
    google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> inputs, outputs, value_info;
    nodes.Swap(g.proto_.mutable_node());
    initializers.Swap(g.proto_.mutable_initializer());
    inputs.Swap(g.proto_.mutable_input());
    outputs.Swap(g.proto_.mutable_output());
    value_info.Swap(g.proto_.mutable_value_info());

    for (auto& vi : inputs) {
      if (Value* existing = g.find_local(vi.name()); existing && existing->graph_input_)
        fail("duplicate value name '{}' in graph '{}': listed twice as a graph input", vi.name(), g.name());
      Value* v = define(g, vi.name(), "a graph input");
      v->graph_input_ = true;
      v->info_ = std::move(vi);
      g.inputs_.push_back(v);
    }
    for (auto& t : initializers) {
      const std::string name = t.name();
      Value* v = g.find_local(name);
      if (v == nullptr || !v->graph_input_ || v->initializer_) v = define(g, name, "an initializer");
      v->initializer_ = std::make_unique<Tensor>(import_tensor(std::move(t), resolve, "initializer"));
      g.initializer_order_.push_back(v);
    }
    for (const auto& sparse : g.proto_.sparse_initializer()) {
      Value* v = define(g, sparse.values().name(), "a sparse initializer");
      v->sparse_initializer_ = true;
    }

    // Pass 1 defines every node output, so subgraphs may refer to any outer value by name.
    for (auto& np : nodes) {
      auto node = std::make_unique<Node>();
      Node* n = node.get();
      n->owner_ = &g;
      for (int i = 0; i < np.output_size(); ++i) {
        const std::string& out = np.output(i);
        if (out.empty()) {
          n->outputs_.push_back(nullptr);
          continue;
        }
        Value* v = define(g, out, fmt::format("node '{}' ({})", np.name(), np.op_type()));
        v->producer_ = n;
        v->producer_output_ = static_cast<size_t>(i);
        n->outputs_.push_back(v);
      }
      g.nodes_.push_back(std::move(node));
    }
    // Pass 2 connects inputs and converts attributes (subgraphs recursively).
    for (int k = 0; k < nodes.size(); ++k) {
      onnx::NodeProto& np = nodes[k];
      Node* n = g.nodes_[static_cast<size_t>(k)].get();
      for (const std::string& in : np.input()) {
        if (in.empty()) {
          n->inputs_.push_back(nullptr);
          continue;
        }
        Value* v = g.lookup(in);
        if (v == nullptr)
          fail("node '{}' ({}) in graph '{}' uses '{}', which no node, graph input or initializer produces", np.name(),
               np.op_type(), g.name(), in);
        n->add_input(v);
      }
      for (auto& ap : *np.mutable_attribute()) {
        Attribute a;
        a.proto = std::move(ap);
        if (a.proto.has_g()) {
          a.graph = std::make_unique<Graph>(g.model_, n);
          import_graph(*a.graph, std::move(*a.proto.mutable_g()), resolve);
          a.proto.clear_g();
        }
        for (auto& sub : *a.proto.mutable_graphs()) {
          a.graph_list.push_back(std::make_unique<Graph>(g.model_, n));
          import_graph(*a.graph_list.back(), std::move(sub), resolve);
        }
        a.proto.clear_graphs();
        if (a.proto.has_t()) {
          a.tensor = std::make_unique<Tensor>(
              import_tensor(std::move(*a.proto.mutable_t()), resolve, fmt::format("attribute of node '{}'", np.name())));
          a.proto.clear_t();
        }
        n->attributes_.push_back(std::move(a));
      }
      np.clear_input();
      np.clear_output();
      np.clear_attribute();
      n->proto_ = std::move(np);
    }

    for (auto& vi : outputs) {
      Value* v = g.lookup(vi.name());
      if (v == nullptr) fail("graph '{}' output '{}' is not produced by any node, input or initializer", g.name(), vi.name());
      if (v->owner_ == &g) v->info_ = std::move(vi);
      v->graph_output_count_++;
      g.outputs_.push_back(v);
    }
    for (auto& vi : value_info) {
      Value* v = g.find_local(vi.name());
      if (v != nullptr && !v->in_value_info_ && !v->graph_input_ && !v->is_graph_output()) {
        v->info_ = std::move(vi);
        v->in_value_info_ = true;
        g.value_info_order_.push_back(v);
      } else {
        g.orphan_value_info_.push_back(std::move(vi));
      }
    }
    g.toposort();
  }

  static std::unique_ptr<Model> import_model(onnx::ModelProto&& proto, const PayloadResolver& resolve) {
    auto model = std::make_unique<Model>();
    model->proto_ = std::move(proto);
    onnx::GraphProto graph;
    graph.Swap(model->proto_.mutable_graph());
    model->proto_.clear_graph();
    import_graph(*model->graph_, std::move(graph), resolve);
    return model;
  }

  // ------------------------------------------------------------- export
  static void export_tensor(const Tensor& t, onnx::TensorProto& out, const PayloadWriter& write) {
    out = t.proto();
    if (!t.has_raw()) return;
    if (write) {
      write(t, out);
    } else {
      out.set_raw_data(reinterpret_cast<const char*>(t.raw().data()), t.raw().size());
    }
  }

  static void export_graph(const Graph& g, onnx::GraphProto& out, const PayloadWriter& write) {
    out = g.proto_;
    auto value_info_of = [](const Value* v) {
      onnx::ValueInfoProto vi = v->info_;
      vi.set_name(v->name_);
      return vi;
    };
    for (const auto& node : g.nodes_) {
      if (node->dead_) continue;
      onnx::NodeProto& np = *out.add_node();
      np = node->proto_;
      for (const Value* in : node->inputs_) np.add_input(in ? in->name_ : std::string());
      for (const Value* o : node->outputs_) np.add_output(o ? o->name_ : std::string());
      for (const Attribute& a : node->attributes_) {
        onnx::AttributeProto& ap = *np.add_attribute();
        ap = a.proto;
        if (a.graph) export_graph(*a.graph, *ap.mutable_g(), write);
        for (const auto& sub : a.graph_list) export_graph(*sub, *ap.add_graphs(), write);
        if (a.tensor) export_tensor(*a.tensor, *ap.mutable_t(), write);
      }
    }
    for (const Value* v : g.initializer_order_) {
      if (v->initializer_) {
        export_tensor(*v->initializer_, *out.add_initializer(), write);
        out.mutable_initializer()->rbegin()->set_name(v->name_);
      }
    }
    for (const Value* v : g.inputs_) *out.add_input() = value_info_of(v);
    for (const Value* v : g.outputs_) *out.add_output() = value_info_of(v);
    for (const Value* v : g.value_info_order_) *out.add_value_info() = value_info_of(v);
    for (const auto& vi : g.orphan_value_info_) *out.add_value_info() = vi;
  }

  static onnx::ModelProto export_model(const Model& m, const PayloadWriter& write) {
    onnx::ModelProto out = m.proto_;
    export_graph(*m.graph_, *out.mutable_graph(), write);
    return out;
  }
};

std::unique_ptr<Model> import_model(onnx::ModelProto&& proto, const PayloadResolver& resolve) {
  return ProtoAccess::import_model(std::move(proto), resolve);
}

onnx::ModelProto export_model(const Model& model, const PayloadWriter& write) {
  return ProtoAccess::export_model(model, write);
}

void validate_tensor(const Tensor& t, const std::string& where) {
  const auto& p = t.proto();
  for (int64_t d : p.dims()) {
    if (d < 0) fail("tensor '{}' ({}) has a negative dimension {}", t.name(), where, d);
  }
  const int64_t numel = t.numel();
  if (numel < 0) fail("tensor '{}' ({}) has absurd dims: the element count overflows 64 bits", t.name(), where);
  if (p.has_segment()) return;  // a segment of a larger tensor: sizes are not checkable on their own
  const int32_t dt = t.dtype();
  const auto n = static_cast<uint64_t>(numel);
  if (t.has_raw()) {
    if (dt == dtype::kString) fail("tensor '{}' ({}): string data cannot be stored as raw bytes", t.name(), where);
    if (dtype::bits(dt) == 0) return;  // a dtype newer than we know: nothing to check against
    const uint64_t expected = dtype::storage_bytes(dt, n);
    if (t.raw().size() != expected)
      fail("tensor '{}' ({}) has {} bytes of data, but its dims [{}] of {} need {} bytes", t.name(), where, t.raw().size(),
           fmt::join(p.dims(), ","), dtype::name(dt), expected);
    return;
  }
  uint64_t have = 0;
  uint64_t want = n;
  switch (dt) {
    case dtype::kFloat: have = static_cast<uint64_t>(p.float_data_size()); break;
    case dtype::kComplex64: have = static_cast<uint64_t>(p.float_data_size()); want = 2 * n; break;
    case dtype::kDouble: have = static_cast<uint64_t>(p.double_data_size()); break;
    case dtype::kComplex128: have = static_cast<uint64_t>(p.double_data_size()); want = 2 * n; break;
    case dtype::kInt64: have = static_cast<uint64_t>(p.int64_data_size()); break;
    case dtype::kUint32: case dtype::kUint64: have = static_cast<uint64_t>(p.uint64_data_size()); break;
    case dtype::kString: have = static_cast<uint64_t>(p.string_data_size()); break;
    case dtype::kInt32: case dtype::kInt16: case dtype::kUint16: case dtype::kInt8: case dtype::kUint8:
    case dtype::kBool: case dtype::kFloat16: case dtype::kBfloat16:
      have = static_cast<uint64_t>(p.int32_data_size());
      break;
    default:
      return;  // sub-byte and float8 types pack several values per int32: leave them to the checker
  }
  // A tensor with no data at all and a non-zero element count is legal only as a declared shape with no
  // values, which initializers cannot be.
  if (have != want)
    fail("tensor '{}' ({}) has {} values, but its dims [{}] need {}", t.name(), where, have, fmt::join(p.dims(), ","), want);
}

}  // namespace mopt::ir
