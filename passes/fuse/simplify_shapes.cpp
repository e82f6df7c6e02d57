// simplify-shapes: replaces shape computations whose answer is already known by constants.
//
//   Before:  x: float[N,3,224,224]                      After:  x: float[N,3,224,224]
//            s = Shape(x); c = Gather(s, 1)                     c = 3 (initializer)
//            t = Shape(x[1,3,8,8]); Reshape(y, t)               t = [1,3,8,8]; Reshape(y, t)
//            n = Size(x[2,4])                                   n = 8
//
// Shape and Size of a value with a fully static shape fold outright; a Gather or Slice of a Shape folds
// when the dimensions it picks are static, even if others (a batch N) are not. What follows (Concat,
// Unsqueeze, ...) is then constant and fold-constants computes it. Shapes come from the model's types
// and value_info: run shape-inference first (the fuse group does).
//
// A Reshape whose target is assembled from its own input's dynamic dimensions gets a constant target
// that copies them with 0 (as ONNX Runtime's reshape fusion does):
//
//   Before:  n = Unsqueeze(Gather(Shape(x), 0)); t = Concat(n, [4], [16]); y = Reshape(x', t)
//   After:   y = Reshape(x', [0, 4, 16])        when x' dimension 0 is the same as x dimension 0
//
// "The same" means the same value and axis, or dimensions with the same symbolic name; allowzero=1
// Reshapes are left alone (0 would mean an empty dimension).
#include <fmt/format.h>

#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

using rewrite::constant_ints;

using Dims = std::vector<std::optional<int64_t>>;  // nullopt: a dynamic dimension

std::optional<Dims> known_dims(const ir::Value& value) {
  if (const ir::Tensor* c = value.constant()) {
    Dims d;
    for (int64_t v : c->dims()) d.push_back(v);
    return d;
  }
  const onnx::TypeProto& t = value.info().type();
  if (!t.has_tensor_type() || !t.tensor_type().has_shape()) return std::nullopt;
  Dims d;
  for (const auto& dim : t.tensor_type().shape().dim()) {
    d.push_back(dim.has_dim_value() && dim.dim_value() >= 0 ? std::optional<int64_t>(dim.dim_value()) : std::nullopt);
  }
  return d;
}

int64_t clamp_index(int64_t i, int64_t n) {
  if (i < 0) i += n;
  return std::max<int64_t>(0, std::min(i, n));
}

// The dimensions a Shape node reports (its start/end attributes, opset 15, applied).
std::optional<Dims> shape_output(const ir::Node& shape) {
  std::optional<Dims> dims = known_dims(*shape.input(0));
  if (!dims) return std::nullopt;
  const auto rank = static_cast<int64_t>(dims->size());
  const int64_t start = clamp_index(rewrite::attr_int(shape, "start", 0), rank);
  const int64_t end = clamp_index(rewrite::attr_int(shape, "end", rank), rank);
  Dims out;
  for (int64_t i = start; i < end; ++i) out.push_back((*dims)[static_cast<size_t>(i)]);
  return out;
}

std::optional<std::vector<int64_t>> all_static(const Dims& dims) {
  std::vector<int64_t> out;
  for (const auto& d : dims) {
    if (!d) return std::nullopt;
    out.push_back(*d);
  }
  return out;
}

exec::Array int64_array(const std::vector<int64_t>& values, bool scalar) {
  if (scalar) return exec::Array::scalar<int64_t>(ir::dtype::kInt64, values.at(0));
  return exec::Array::vector<int64_t>(ir::dtype::kInt64, values);
}

// Where one element of a shape vector comes from: a constant, or dimension `axis` of `value`.
struct ShapeElement {
  std::optional<int64_t> constant;
  const ir::Value* value = nullptr;
  int64_t axis = 0;
};

// The symbolic name of a value's dimension, or "".
std::string dim_param(const ir::Value& value, int64_t axis) {
  const onnx::TypeProto& t = value.info().type();
  if (!t.has_tensor_type() || !t.tensor_type().has_shape() || axis >= t.tensor_type().shape().dim_size()) return "";
  return t.tensor_type().shape().dim(static_cast<int>(axis)).dim_param();
}

// The elements of a 1-D int64 shape vector built by Concat from constants and
// Unsqueeze(Gather(Shape(v), scalar index)) pieces; nullopt for anything else.
std::optional<std::vector<ShapeElement>> shape_elements(const ir::Value* shape) {
  const ir::Node* concat = shape ? shape->producer() : nullptr;
  if (concat == nullptr || !concat->is_op("Concat")) return std::nullopt;
  std::vector<ShapeElement> out;
  for (const ir::Value* part : concat->inputs()) {
    if (std::optional<std::vector<int64_t>> c = constant_ints(part)) {
      for (int64_t v : *c) out.push_back({v, nullptr, 0});
      continue;
    }
    const ir::Node* unsqueeze = part ? part->producer() : nullptr;
    if (unsqueeze == nullptr || !unsqueeze->is_op("Unsqueeze") || unsqueeze->input(0) == nullptr) return std::nullopt;
    const ir::Node* gather = unsqueeze->input(0)->producer();
    if (gather == nullptr || !gather->is_op("Gather") || rewrite::attr_int(*gather, "axis", 0) != 0) return std::nullopt;
    const ir::Node* shape_node = gather->input(0)->producer();
    std::optional<std::vector<int64_t>> index = constant_ints(gather->input(1));
    if (shape_node == nullptr || !shape_node->is_op("Shape") || !index || index->size() != 1 ||
        gather->input(1)->constant()->dims().size() != 0 || rewrite::attr_int(*shape_node, "start", 0) != 0)
      return std::nullopt;
    std::optional<Dims> dims = known_dims(*shape_node->input(0));
    if (!dims) return std::nullopt;
    int64_t axis = (*index)[0];
    if (axis < 0) axis += static_cast<int64_t>(dims->size());
    if (axis < 0 || axis >= static_cast<int64_t>(dims->size())) return std::nullopt;
    out.push_back({std::nullopt, shape_node->input(0), axis});
  }
  return out;
}

class SimplifyShapesPass : public pass::GraphPass {
 protected:
  bool run_on_graph(ir::Graph& graph, pass::PassContext& ctx) override {
    bool changed = false;
    for (ir::Node* node : graph.nodes()) {
      if (node->dead() || !node->is_default_domain() || node->output(0) == nullptr || node->input(0) == nullptr) continue;
      if (node->is_op("Reshape")) {
        if (reshape_with_copied_dims(graph, *node)) {
          ctx.count("reshape-targets-made-constant");
          changed = true;
        }
        continue;
      }
      std::optional<exec::Array> value;
      if (node->is_op("Shape")) value = shape_value(*node);
      else if (node->is_op("Size")) value = size_value(*node);
      else if (node->is_op("Gather")) value = gather_of_shape(*node);
      else if (node->is_op("Slice")) value = slice_of_shape(*node);
      else continue;
      if (!value) continue;
      ir::Value* out = node->output(0);
      if (out->is_graph_output()) {
        ctx.explain_skip(*node, "its output is a graph output");
        continue;
      }
      graph.replace_all_uses(out, rewrite::add_constant(graph, out->name(), *value));
      graph.erase(node);
      ctx.count(node->op_type() == "Shape" || node->op_type() == "Size" ? "shapes-folded" : "shape-reads-folded");
      changed = true;
    }
    return changed;
  }

 private:
  static bool reshape_with_copied_dims(ir::Graph& graph, ir::Node& reshape) {
    if (rewrite::attr_int(reshape, "allowzero", 0) != 0 || reshape.input(1) == nullptr || reshape.input(1)->constant()) return false;
    std::optional<std::vector<ShapeElement>> elements = shape_elements(reshape.input(1));
    if (!elements) return false;
    const ir::Value& data = *reshape.input(0);
    std::vector<int64_t> target;
    for (size_t p = 0; p < elements->size(); ++p) {
      const ShapeElement& e = (*elements)[p];
      if (e.constant) {
        target.push_back(*e.constant);
        continue;
      }
      const auto position = static_cast<int64_t>(p);
      const std::string name = dim_param(*e.value, e.axis);
      const bool same = (e.value == &data && e.axis == position) || (!name.empty() && name == dim_param(data, position));
      if (!same) return false;
      target.push_back(0);
    }
    ir::Value* old = reshape.input(1);
    reshape.set_input(1, rewrite::add_constant(graph, old->name(), int64_array(target, false)));
    return true;
  }

  static std::optional<exec::Array> shape_value(const ir::Node& node) {
    std::optional<Dims> dims = shape_output(node);
    if (!dims) return std::nullopt;
    std::optional<std::vector<int64_t>> values = all_static(*dims);
    if (!values) return std::nullopt;
    return int64_array(*values, false);
  }

  static std::optional<exec::Array> size_value(const ir::Node& node) {
    std::optional<Dims> dims = known_dims(*node.input(0));
    if (!dims) return std::nullopt;
    std::optional<std::vector<int64_t>> values = all_static(*dims);
    if (!values) return std::nullopt;
    int64_t n = 1;
    for (int64_t d : *values) n *= d;
    return exec::Array::scalar<int64_t>(ir::dtype::kInt64, n);
  }

  // Gather(Shape(x), indices) with every picked dimension static.
  static std::optional<exec::Array> gather_of_shape(const ir::Node& node) {
    const ir::Node* shape = node.input(0)->producer();
    if (shape == nullptr || !shape->is_op("Shape") || rewrite::attr_int(node, "axis", 0) != 0) return std::nullopt;
    std::optional<Dims> dims = shape_output(*shape);
    std::optional<exec::Array> indices = rewrite::constant_array(node.input(1));
    if (!dims || !indices || (indices->dtype() != ir::dtype::kInt64 && indices->dtype() != ir::dtype::kInt32) ||
        indices->rank() > 1)
      return std::nullopt;
    std::vector<int64_t> picked;
    const auto n = static_cast<int64_t>(dims->size());
    for (int64_t i : indices->to_int64s()) {
      if (i < -n || i >= n) return std::nullopt;  // out of range: let the runtime report it
      const auto& d = (*dims)[static_cast<size_t>(i < 0 ? i + n : i)];
      if (!d) return std::nullopt;
      picked.push_back(*d);
    }
    return int64_array(picked, indices->rank() == 0);
  }

  // Slice(Shape(x), starts, ends[, axes=0][, steps=1]) with every sliced dimension static.
  static std::optional<exec::Array> slice_of_shape(const ir::Node& node) {
    const ir::Node* shape = node.input(0)->producer();
    if (shape == nullptr || !shape->is_op("Shape") || node.owner()->model()->opset() < 10) return std::nullopt;
    std::optional<Dims> dims = shape_output(*shape);
    std::optional<std::vector<int64_t>> starts = constant_ints(node.input(1)), ends = constant_ints(node.input(2));
    if (!dims || !starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
    if (node.input(3)) {
      std::optional<std::vector<int64_t>> axes = constant_ints(node.input(3));
      if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
    }
    if (node.input(4)) {
      std::optional<std::vector<int64_t>> steps = constant_ints(node.input(4));
      if (!steps || steps->size() != 1 || (*steps)[0] != 1) return std::nullopt;
    }
    const auto n = static_cast<int64_t>(dims->size());
    const int64_t start = clamp_index((*starts)[0], n), end = clamp_index((*ends)[0], n);
    std::vector<int64_t> picked;
    for (int64_t i = start; i < end; ++i) {
      if (!(*dims)[static_cast<size_t>(i)]) return std::nullopt;
      picked.push_back(*(*dims)[static_cast<size_t>(i)]);
    }
    return int64_array(picked, false);
  }
};

}  // namespace

const std::vector<pass::OptionSpec>& SimplifyShapesOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createSimplifyShapes(const pass::Options&) { return std::make_unique<SimplifyShapesPass>(); }

}  // namespace mopt::passes
