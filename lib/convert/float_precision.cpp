// Float32 -> float16/bfloat16 conversion; see float_precision.h.
//
//   Before:  x:f32 -> Conv(W:f32) -> Relu -> Resize(scales:f32) -> Softmax -> y:f32
//   After:   x:f32 -> Cast(f16) -> Conv(W:f16) -> Relu -> Cast(f32) -> Resize -> Cast(f16) -> Softmax
//            -> Cast(f32) -> y:f32                      (Resize is on the default block list)
#include "convert/float_precision.h"

#include <onnx/defs/schema.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "convert/shapes.h"
#include "exec/array.h"
#include "rewrite/rewrite.h"
#include "util/error.h"
#include "util/file.h"

namespace mopt::convert {
namespace {

namespace d = ir::dtype;

enum class Want { Any, Float32, Half };

struct NodePlan {
  bool float_involved = false;  // reads or writes float32 values
  bool convert = false;
  std::string reason;  // why a float-involved node stays float32
  std::vector<Want> inputs;
  std::vector<bool> outputs_half;
};

// The element type a value holds now: a constant's dtype, else its recorded type (0 when unknown).
int32_t type_of(const ir::Value* v) {
  if (const ir::Tensor* t = v->constant()) return t->dtype();
  if (v->initializer()) return v->initializer()->dtype();
  return v->info().type().tensor_type().elem_type();
}

void set_elem_type(ir::Value* v, int32_t dtype) {
  if (!v->has_type()) return;
  onnx::TypeProto type = v->info().type();
  type.mutable_tensor_type()->set_elem_type(dtype);
  v->owner()->set_value_type(v, type);
}

const char* short_name(int32_t target) { return target == d::kBfloat16 ? "bf16" : "fp16"; }

// Largest finite value of the target type and its smallest positive (subnormal) value.
constexpr float kHalfMax = 65504.0f, kHalfMinPositive = 5.9604644775390625e-08f;  // 2^-24
constexpr float kBfloat16Max = 3.38953139e38f;

// What happens to a float32 value on its way to the target type: finite values beyond its range are
// clamped to its largest, and (float16) nonzero values that would round to zero are raised to its
// smallest subnormal. Both are counted by the pass and applied when the payload is produced.
struct Narrowing {
  bool half;
  float max;
  explicit Narrowing(int32_t target) : half(target == d::kFloat16), max(half ? kHalfMax : kBfloat16Max) {}
  bool clamps(float a) const { return a > max && a <= std::numeric_limits<float>::max(); }  // a = |x|
  bool raises(float a) const { return half && a != 0 && a < kHalfMinPositive; }

  // The 16-bit values of `block`, through `scratch` (branch-free loops, so that they vectorize).
  void convert(std::span<const float> block, std::vector<float>& scratch, std::span<uint16_t> out) const {
    scratch.resize(block.size());
    for (size_t j = 0; j < block.size(); ++j) {
      const float x = block[j], a = std::fabs(x);
      scratch[j] = clamps(a) ? std::copysign(max, x) : raises(a) ? std::copysign(kHalfMinPositive, x) : x;
    }
    if (half) {
      exec::floats_to_half(scratch, out);
    } else {
      for (size_t j = 0; j < block.size(); ++j) out[j] = exec::float_to_bfloat16(scratch[j]);
    }
  }
};

// A float32 tensor in the target type. Its values are counted now (clamped, raised) and converted while
// the payload is read: a writer streams it to the file, so the converted weights take no memory unless
// something (the accuracy check) reads them (ir::Bytes::produced).
ir::Tensor to_16bit(const ir::Tensor& tensor, int32_t target, FloatPrecisionResult& result) {
  const ir::Bytes bytes = ir::float32_payload(tensor);
  const size_t n = bytes.size() / sizeof(float);
  const Narrowing narrowing(target);
  constexpr size_t kBlockFloats = 64 << 10;
  // Blocks of a copy (the payload may be unaligned, and a weight in the mapped model is read from its file
  // rather than faulted in through the map).
  int64_t clamped = 0, raised = 0;
  for_each_float_block(bytes.span(), kBlockFloats, [&](size_t, std::span<const float> block) {
    int64_t clamped_here = 0, raised_here = 0;
    for (float x : block) {
      const float a = std::fabs(x);
      clamped_here += narrowing.clamps(a);
      raised_here += narrowing.raises(a);
    }
    clamped += clamped_here;
    raised += raised_here;
  });
  result.values_clamped += clamped;
  result.values_raised += raised;
  onnx::TensorProto shell = tensor.proto();
  shell.clear_float_data();
  shell.set_data_type(target);
  ir::Tensor converted(std::move(shell));
  converted.set_raw(ir::Bytes::produced(n * sizeof(uint16_t), [bytes, narrowing](const ir::ByteSink& sink) {
    std::vector<float> scratch;
    std::vector<uint16_t> out;
    for_each_float_block(bytes.span(), kBlockFloats, [&](size_t, std::span<const float> block) {
      out.resize(block.size());
      narrowing.convert(block, scratch, out);
      sink(std::as_bytes(std::span(out)));
    });
  }));
  return converted;
}

// Whether a formal parameter (through its type constraint) admits `type`, e.g. "tensor(float16)".
bool allows(const onnx::OpSchema::FormalParameter& param, const std::string& type) {
  const auto& types = param.GetTypes();
  return std::any_of(types.begin(), types.end(), [&](const std::string* t) { return *t == type; });
}

// The schema's formal parameter for actual position `i` (the last one repeats when variadic).
const onnx::OpSchema::FormalParameter* formal(const std::vector<onnx::OpSchema::FormalParameter>& params, size_t i) {
  if (i < params.size()) return &params[i];
  if (!params.empty() && params.back().GetOption() == onnx::OpSchema::Variadic) return &params.back();
  return nullptr;
}

class Converter {
 public:
  Converter(ir::Model& model, const FloatPrecisionOptions& options) : model_(model), options_(options) {
    if (options.target != d::kFloat16 && options.target != d::kBfloat16) {
      fail("not supported: converting float32 to {} (float16 and bfloat16 are)", d::name(options.target));
    }
    target_type_ = options.target == d::kFloat16 ? "tensor(float16)" : "tensor(bfloat16)";
  }

  // Decides every node's plan (all graphs).
  void plan() { plan_graph(model_.graph()); }

  const std::unordered_map<const ir::Node*, NodePlan>& plans() const { return plans_; }

  FloatPrecisionResult run() {
    plan();
    for (const auto& [node, p] : plans_) {
      if (!p.float_involved) continue;
      if (p.convert) ++result_.nodes_converted;
      else ++result_.nodes_kept[p.reason];
    }
    collect_kept(model_.graph());
    decide_constants(model_.graph());
    walk(model_.graph(), !options_.keep_io_types);
    return result_;
  }

 private:
  // ---- planning ----
  void plan_graph(ir::Graph& graph) {
    for (ir::Node* n : graph.nodes()) {
      plans_[n] = plan_node(*n);
      for (ir::Graph* g : n->subgraphs()) plan_graph(*g);
    }
  }

  NodePlan plan_node(const ir::Node& n) {
    NodePlan p;
    p.inputs.assign(n.inputs().size(), Want::Any);
    p.outputs_half.assign(n.outputs().size(), false);
    if (n.is_op("Constant")) return p;  // a weight: converted with the constants
    // Shape, Size and Cast read any type: no Cast in front of them, and only Cast's output can be float.
    const bool reads_any = n.is_op("Shape") || n.is_op("Size") || n.is_op("Cast");
    bool involved = false;
    for (const ir::Value* v : n.inputs()) involved |= v && type_of(v) == d::kFloat && !reads_any;
    for (const ir::Value* v : n.outputs()) involved |= v && type_of(v) == d::kFloat;
    if (!involved) return p;
    p.float_involved = true;
    // A kept node reads its float inputs in float32.
    auto keep = [&](std::string reason) {
      p.reason = std::move(reason);
      for (size_t i = 0; i < n.inputs().size(); ++i) {
        const ir::Value* v = n.input(i);
        p.inputs[i] = v && type_of(v) == d::kFloat && !reads_any ? Want::Float32 : Want::Any;
      }
      std::fill(p.outputs_half.begin(), p.outputs_half.end(), false);
      return p;
    };
    if (!n.is_default_domain()) return keep(fmt::format("operator of domain '{}'", n.domain()));
    if (options_.op_block_list.count(n.op_type())) return keep("blocked operator");
    if (!n.name().empty() && options_.node_block_list.count(n.name())) return keep("blocked node");
    if (rewrite::is_random(n) || n.op_type() == "EyeLike") return keep("output type set by an attribute");
    const int64_t opset = model_.opset("");
    const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(n.op_type(), static_cast<int>(opset), "");
    if (schema == nullptr) return keep(fmt::format("no ONNX 1.12 schema for opset {}", opset));
    for (const ir::Value* v : n.inputs()) {
      if (v && type_of(v) == 0) return keep("untyped values");
    }
    for (const ir::Value* v : n.outputs()) {
      if (v && type_of(v) == 0 && (v->has_uses() || v->is_graph_output())) return keep("untyped values");
    }
    // A body whose outputs are untyped could not be made to match converted If/Loop/Scan outputs.
    for (const ir::Graph* g : n.subgraphs()) {
      for (const ir::Value* v : g->outputs()) {
        if (type_of(v) == 0) return keep("untyped subgraph outputs");
      }
    }
    if (n.is_op("Cast") && n.output(0)->is_graph_output() && n.owner() == &model_.graph() && options_.keep_io_types) {
      return keep("casts to a float32 graph output");
    }
    bool any_half = false;
    for (size_t i = 0; i < n.inputs().size(); ++i) {
      const ir::Value* v = n.input(i);
      if (!v || type_of(v) != d::kFloat || reads_any) continue;
      const auto* f = formal(schema->inputs(), i);
      if (f == nullptr) return keep("more inputs than its schema");
      const bool half = allows(*f, target_type_);
      p.inputs[i] = half ? Want::Half : Want::Float32;
      any_half |= half;
      // A weight the target cannot hold (a BatchNormalization variance of 1e5) would change the node's
      // result when clamped. Clip's bounds are the exception: data in the target type never exceeds them.
      const bool clip_bound = n.is_op("Clip") && i > 0;
      if (half && !clip_bound && !options_.clamp_out_of_range && out_of_range(v)) return keep("weights beyond the float16 range");
    }
    for (size_t o = 0; o < n.outputs().size(); ++o) {
      const ir::Value* v = n.output(o);
      if (!v || type_of(v) != d::kFloat) continue;
      const auto* f = formal(schema->outputs(), o);
      if (f == nullptr) return keep("more outputs than its schema");
      p.outputs_half[o] = allows(*f, target_type_);
      any_half |= p.outputs_half[o];
    }
    if (!any_half) return keep(fmt::format("no {} form in its schema", d::name(options_.target)));
    p.convert = true;
    return p;
  }

  // Whether a float32 constant holds finite values beyond the float16 range (cached per value).
  bool out_of_range(const ir::Value* v) {
    const ir::Tensor* t = v->constant();
    if (t == nullptr || options_.target != d::kFloat16) return false;
    auto [it, inserted] = out_of_range_.emplace(v, false);
    if (!inserted) return it->second;
    const ir::Bytes bytes = t->data();
    bool beyond = false;
    for_each_block(bytes.span().first(bytes.size() / sizeof(float) * sizeof(float)), 64 << 10, [&](size_t, std::span<const std::byte> block) {
      const auto* values = reinterpret_cast<const float*>(block.data());
      for (size_t i = 0; i < block.size() / sizeof(float); ++i) beyond |= std::isfinite(values[i]) && std::fabs(values[i]) > kHalfMax;
    });
    return it->second = beyond;
  }

  void collect_kept(const ir::Graph& graph) {
    for (const ir::Node* n : graph.nodes()) {
      const NodePlan& p = plans_.at(n);
      if (p.float_involved && !p.convert) result_.kept.emplace_back(rewrite::describe(*n), p.reason);
      for (const ir::Graph* g : n->subgraphs()) collect_kept(*g);
    }
  }

  // What the reader of a graph output wants: float32 for kept main-graph outputs (else the target type);
  // for a body, what its If/Loop/Scan computes in.
  Want output_want(const ir::Graph& graph) const {
    const ir::Node* parent = graph.parent_node();
    if (parent == nullptr) return options_.keep_io_types ? Want::Float32 : Want::Half;
    return plans_.at(parent).convert ? Want::Half : Want::Float32;
  }

  // Weights (initializers, Constant nodes) read by converted nodes are converted in place, or copied
  // when float32 readers need them too.
  void decide_constants(ir::Graph& graph) {
    std::vector<ir::Value*> constants;
    for (ir::Value* v : graph.initializers()) {
      if (!v->is_graph_input() && v->initializer()->dtype() == d::kFloat) constants.push_back(v);
    }
    for (ir::Node* n : graph.nodes()) {
      if (n->is_op("Constant") && n->output(0) && n->output(0)->constant() && n->output(0)->constant()->dtype() == d::kFloat) {
        constants.push_back(n->output(0));
      }
      for (ir::Graph* g : n->subgraphs()) decide_constants(*g);
    }
    for (ir::Value* v : constants) {
      bool half = false, full = false;
      for (const ir::Use& u : v->uses()) {
        const Want w = plans_.at(u.node).inputs.at(u.input_index);
        half |= w == Want::Half;
        full |= w == Want::Float32;
      }
      if (v->is_graph_output()) {
        const Want w = output_want(graph);
        half |= w == Want::Half;
        full |= w == Want::Float32;
      }
      if (!half) continue;
      const ir::Tensor& tensor = *v->constant();
      if (!full) {
        replace_tensor(v, to_16bit(tensor, options_.target, result_));
        set_elem_type(v, options_.target);
        converted_.insert(v);
        ++result_.tensors_converted;
      } else {
        ir::Tensor copy = to_16bit(tensor, options_.target, result_);
        ir::Value* c = rewrite::add_constant(graph, v->name() + "_" + short_name(options_.target), std::move(copy));
        half_copies_[v] = c;
        converted_.insert(c);
        ++result_.tensors_duplicated;
      }
    }
  }

  static void replace_tensor(ir::Value* v, ir::Tensor converted) {
    if (v->initializer()) {
      converted.set_name(v->name());
      *v->initializer() = std::move(converted);
      return;
    }
    for (ir::Attribute& a : v->producer()->mutable_attributes()) {
      if (a.name() == "value") a.tensor = std::make_unique<ir::Tensor>(std::move(converted));
    }
  }

  // ---- rewriting ----
  void walk(ir::Graph& graph, bool io_half) {
    if (io_half) {
      for (ir::Value* v : graph.inputs()) {
        if (!v->initializer() && type_of(v) == d::kFloat) {
          set_elem_type(v, options_.target);
          converted_.insert(v);
        }
      }
    }
    for (ir::Node* n : graph.nodes()) {
      const NodePlan& p = plans_.at(n);
      for (size_t i = 0; i < n->inputs().size() && p.float_involved; ++i) fix_input(*n, i, p.inputs[i]);
      for (ir::Graph* g : n->subgraphs()) walk(*g, p.convert);
      if (!p.convert) continue;
      for (size_t o = 0; o < n->outputs().size(); ++o) {
        if (!p.outputs_half[o]) continue;
        set_elem_type(n->output(o), options_.target);
        converted_.insert(n->output(o));
      }
      if (n->is_op("Cast") && rewrite::attr_int(*n, "to", 0) == d::kFloat) {
        rewrite::set_int_attr(*n, "to", options_.target);
        ++result_.cast_targets_updated;
      }
      if (n->is_op("ConstantOfShape") && p.outputs_half[0]) convert_fill_value(*n);
    }
    fix_outputs(graph);
  }

  void fix_input(ir::Node& node, size_t i, Want want) {
    ir::Value* v = node.input(i);
    if (v == nullptr) return;
    if (want == Want::Half && type_of(v) == d::kFloat) {
      auto copy = half_copies_.find(v);
      node.set_input(i, copy != half_copies_.end() ? copy->second : cast(*node.owner(), &node, v, options_.target));
    } else if (want == Want::Float32 && converted_.count(v)) {
      node.set_input(i, cast(*node.owner(), &node, v, d::kFloat));
    }
  }

  // The value `v` cast to `to` in `graph`, made once per graph and shared by its readers. It is placed
  // before `before` (the first reader; nullptr: at the end).
  ir::Value* cast(ir::Graph& graph, ir::Node* before, ir::Value* v, int32_t to) {
    const auto key = std::make_tuple(&graph, v, to);
    if (auto it = casts_.find(key); it != casts_.end()) return it->second;
    ir::Node* c = graph.create_node("Cast", {v}, 1, before, "", v->name() + "_" + (to == d::kFloat ? "fp32" : short_name(to)));
    rewrite::set_int_attr(*c, "to", to);
    ir::Value* out = c->output(0);
    if (v->has_type()) {
      onnx::TypeProto type = v->info().type();
      type.mutable_tensor_type()->set_elem_type(to);
      graph.set_value_type(out, type);
    }
    if (to != d::kFloat) converted_.insert(out);
    ++result_.casts_inserted;
    casts_[key] = out;
    return out;
  }

  void fix_outputs(ir::Graph& graph) {
    const Want want = output_want(graph);
    for (size_t i = 0; i < graph.outputs().size(); ++i) {
      ir::Value* v = graph.outputs()[i];
      int32_t to = 0;
      if (want == Want::Half && type_of(v) == d::kFloat) to = options_.target;
      if (want == Want::Float32 && converted_.count(v)) to = d::kFloat;
      if (to == 0) continue;
      if (graph.parent_node() == nullptr) {
        cast_main_output(graph, v, to);
      } else {
        auto copy = half_copies_.find(v);
        const bool use_copy = to != d::kFloat && copy != half_copies_.end();
        graph.set_output(i, use_copy ? copy->second : cast(graph, nullptr, v, to));
      }
    }
  }

  // A main-graph output keeps its name: the Cast at the end takes it over.
  void cast_main_output(ir::Graph& graph, ir::Value* v, int32_t to) {
    const std::vector<ir::Use> readers = v->uses();
    onnx::TypeProto type = v->info().type();
    ir::Node* c = graph.create_node("Cast", {v}, 1, nullptr, "", v->name());
    rewrite::set_int_attr(*c, "to", to);
    ir::Value* out = c->output(0);
    if (!graph.replace_all_uses(v, out)) fail("internal error: cannot cast graph output '{}'", v->name());
    c->set_input(0, v);
    for (const ir::Use& u : readers) u.node->set_input(u.input_index, v);
    if (type.has_tensor_type()) {
      const int32_t from = type_of(v);
      type.mutable_tensor_type()->set_elem_type(to);
      graph.set_value_type(out, type);
      type.mutable_tensor_type()->set_elem_type(from);
      if (v->producer()) graph.set_value_type(v, type);
    }
    if (to != d::kFloat) converted_.insert(out);
    ++result_.casts_inserted;
  }

  // ConstantOfShape's fill value (default 0.0f) in the target type.
  void convert_fill_value(ir::Node& n) {
    for (ir::Attribute& a : n.mutable_attributes()) {
      if (a.name() == "value" && a.tensor && a.tensor->dtype() == d::kFloat) {
        a.tensor = std::make_unique<ir::Tensor>(to_16bit(*a.tensor, options_.target, result_));
        return;
      }
    }
    exec::Array zero = exec::cast(exec::Array(d::kFloat, {1}), options_.target);
    ir::Attribute value;
    value.proto.set_name("value");
    value.proto.set_type(onnx::AttributeProto::TENSOR);
    value.tensor = std::make_unique<ir::Tensor>(zero.to_tensor("value"));
    n.mutable_attributes().push_back(std::move(value));
  }

  ir::Model& model_;
  const FloatPrecisionOptions& options_;
  std::string target_type_;
  FloatPrecisionResult result_;
  std::unordered_map<const ir::Node*, NodePlan> plans_;
  std::map<std::tuple<ir::Graph*, ir::Value*, int32_t>, ir::Value*> casts_;
  std::unordered_map<ir::Value*, ir::Value*> half_copies_;
  std::set<const ir::Value*> converted_;  // values now holding the target type
  std::unordered_map<const ir::Value*, bool> out_of_range_;
};

}  // namespace

const std::set<std::string>& default_op_block_list() {
  static const std::set<std::string> ops = {
      "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer", "FeatureVectorizer", "Imputer",
      "LabelEncoder", "LinearClassifier", "LinearRegressor", "Normalizer", "OneHotEncoder", "RandomUniformLike",
      "SVMClassifier", "SVMRegressor", "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap",
      "NonMaxSuppression", "TopK", "RoiAlign", "Resize", "Range", "CumSum", "Min", "Max", "Upsample"};
  return ops;
}

FloatPrecisionResult convert_float_precision(ir::Model& model, const FloatPrecisionOptions& options) {
  infer_shapes(model);
  Converter converter(model, options);
  return converter.run();
}

std::vector<std::string> convertible_nodes(ir::Model& model, const FloatPrecisionOptions& options) {
  rewrite::name_unnamed_nodes(model);
  infer_shapes(model);
  Converter converter(model, options);
  converter.plan();
  std::vector<std::string> names;
  for (const ir::Node* n : model.graph().nodes()) {
    if (converter.plans().at(n).convert) names.push_back(n->name());
  }
  return names;
}

}  // namespace mopt::convert
