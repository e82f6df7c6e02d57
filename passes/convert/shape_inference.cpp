// shape-inference: runs ONNX's shape inference (ONNX 1.12, opsets up to 17) and stores every inferred
// type and shape on the IR values, so later passes and the saved model can use them.
//
//   Before:  x[1,3,224,224] -> Conv -> t -> Relu -> y        (t untyped)
//   After:   same graph; value_info t: float[1,64,112,112]
//
// The model handed to ONNX carries small tensors' values (shape inputs such as Reshape's) but not the
// large weights: inference needs their types and dims only. Types the model already states win over
// inferred ones; node-level inference errors leave those values untyped (or fail with strict=true).
#include "convert/shapes.h"
#include "ir/verify.h"
#include "pass/pass.h"

namespace mopt::passes {
namespace {

class ShapeInferencePass : public pass::Pass {
 public:
  explicit ShapeInferencePass(const pass::Options& options)
      : strict_(options.get_bool("strict")), data_propagation_(options.get_bool("data-propagation")) {}

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    if (auto why = ir::newer_than_onnx_knows(model)) ctx.warn(*why + "; operators it does not know stay untyped");
    const convert::InferenceResult result = convert::infer_shapes(model, strict_, data_propagation_);
    if (result.stopped) ctx.warn("shape inference stopped early: " + *result.stopped);
    if (result.values_typed) ctx.count("values-typed", result.values_typed);
    if (result.values_refined) ctx.count("values-refined", result.values_refined);
    return {result.values_typed + result.values_refined > 0};
  }

 private:
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
