// set-static-shapes: makes dynamic input dimensions static (a whole input shape, a symbolic dimension by
// name, or the batch dimension of every input), then runs shape inference so the rest of the graph sees
// them (lib/convert/shapes.h).
//
//   set-static-shapes(batch=1)    Before: x: float[N,3,224,224] -> ... -> y: float[N,1000]
//                                 After:  x: float[1,3,224,224] -> ... -> y: float[1,1000]
//   set-static-shapes(shapes="x=1,3,224,224;mask=1,128")   set-static-shapes(dims="batch=1,seq=128")

#include "convert/shapes.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class SetStaticShapesPass : public pass::Pass {
 public:
  explicit SetStaticShapesPass(const pass::Options& o) {
    for (const std::string& s : o.get_list("shapes", ';')) shapes_.given.add_shape(s);
    for (const std::string& s : o.get_list("dims")) shapes_.given.add_dim(s);
    if (o.get_int("batch") > 0) shapes_.batch = o.get_int("batch");
    if (shapes_.empty()) usage_error("set-static-shapes needs shapes=, dims= or batch=");
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    const int64_t set = convert::make_static(model, shapes_);
    const convert::InferenceResult inferred = convert::infer_shapes(model);
    if (inferred.stopped) ctx.warn("shape inference stopped early: " + *inferred.stopped);
    ctx.count("input-dims-set", set);
    ctx.count("values-typed", inferred.values_typed + inferred.values_refined);
    ctx.set_details({{"static_input_dims", set}});
    return {set > 0, "the input dimensions asked for are static already"};
  }

 private:
  convert::StaticShapes shapes_;
};

}  // namespace

const std::vector<pass::OptionSpec>& SetStaticShapesOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"shapes", T::String, "", "static input shapes: 'x=1,3,224,224;mask=1,128'", {}},
      {"dims", T::String, "", "values of symbolic dimensions: 'batch=1,seq=128'", {}},
      {"batch", T::Int, "0", "first dimension of every input whose first dimension is dynamic", {}, "", 1, 1099511627776.0},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createSetStaticShapes(const pass::Options& options) {
  return std::make_unique<SetStaticShapesPass>(options);
}

}  // namespace mopt::passes
