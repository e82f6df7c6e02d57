// shape-inference: runs ONNX's shape inference (ONNX 1.12, opsets up to 17) and stores every inferred
// type and shape on the IR values, so later passes and the saved model can use them.
//
//   Before:  x[1,3,224,224] -> Conv -> t -> Relu -> y        (t untyped)
//   After:   same graph; value_info t: float[1,64,112,112]
//
// The model handed to ONNX carries small tensors' values (shape inputs such as Reshape's) but not the
// large weights: inference needs their types and dims only. Types the model already states win over
// inferred ones; node-level inference errors leave those values untyped (or fail with strict=true).
#include <onnx/shape_inference/implementation.h>

#include "ir/verify.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class ShapeInferencePass : public pass::Pass {
 public:
  explicit ShapeInferencePass(const pass::Options& options)
      : strict_(options.get_bool("strict")), data_propagation_(options.get_bool("data-propagation")) {}

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    onnx::ModelProto proto = ir::export_for_analysis(model);
    if (auto why = ir::newer_than_onnx_knows(model)) ctx.warn(*why + "; operators it does not know stay untyped");
    try {
      onnx::ShapeInferenceOptions options(/*check_type=*/false, /*strict_mode=*/strict_ ? 1 : 0, data_propagation_);
      onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), options);
    } catch (const std::exception& e) {
      const std::string message = one_line(e.what());
      if (strict_) fail("shape inference failed: {}", message);
      ctx.warn("shape inference stopped early: " + message);
      return {};
    }
    int64_t typed = 0;
    apply(model.graph(), proto.graph(), typed);
    if (typed) ctx.count("values-typed", typed);
    return {typed > 0};
  }

 private:
  // Walks the IR graph and the inferred proto graph side by side (export keeps node order).
  static void apply(ir::Graph& graph, const onnx::GraphProto& inferred, int64_t& typed) {
    auto take = [&](const onnx::ValueInfoProto& vi) {
      ir::Value* v = graph.find_local(vi.name());
      if (v == nullptr || v->has_type() || !vi.has_type()) return;
      graph.set_value_type(v, vi.type());
      ++typed;
    };
    for (const auto& vi : inferred.value_info()) take(vi);
    for (const auto& vi : inferred.output()) take(vi);
    const auto nodes = graph.nodes();
    for (size_t i = 0; i < nodes.size() && i < static_cast<size_t>(inferred.node_size()); ++i) {
      const auto& node_proto = inferred.node(static_cast<int>(i));
      const auto subgraphs = nodes[i]->subgraphs();
      size_t k = 0;
      for (const auto& attr : node_proto.attribute()) {
        if (attr.has_g() && k < subgraphs.size()) apply(*subgraphs[k++], attr.g(), typed);
        for (const auto& g : attr.graphs()) {
          if (k < subgraphs.size()) apply(*subgraphs[k++], g, typed);
        }
      }
    }
  }

  bool strict_;
  bool data_propagation_;
};

}  // namespace

const std::vector<pass::OptionSpec>& ShapeInferenceOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"strict", T::Bool, "false", "fail on the first node ONNX cannot infer, instead of leaving it untyped", {}},
      {"data-propagation", T::Bool, "false", "propagate constant shape values through Shape/Gather/Concat chains", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createShapeInference(const pass::Options& options) {
  return std::make_unique<ShapeInferencePass>(options);
}

}  // namespace mopt::passes
