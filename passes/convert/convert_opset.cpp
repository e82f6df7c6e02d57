// convert-opset: converts the default-domain opset up or down with ONNX's version converter, and up to
// opset 21 with mopt's own adapter beyond 17
// (lib/convert/versions.h); the IR version follows when the new opset needs a newer one.
//
//   convert-opset(opset=13)    Before: opset 11, Squeeze(x, axes=[1])   After: opset 13, Squeeze(x, [1])
#include "convert/versions.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class ConvertOpsetPass : public pass::Pass {
 public:
  explicit ConvertOpsetPass(const pass::Options& o) : opset_(o.get_int("opset")) {
    if (opset_ == 0) usage_error("convert-opset needs opset=N");
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    const int64_t from = model.opset(), ir_from = model.ir_version();
    if (!convert::convert_opset(model, opset_)) return {false, fmt::format("the model is at opset {} already", opset_)};
    ctx.count("opset-converted");
    nlohmann::json details = {{"opset", {{"from", from}, {"to", opset_}}}};
    if (model.ir_version() != ir_from) details["ir_version"] = {{"from", ir_from}, {"to", model.ir_version()}};
    ctx.set_details(std::move(details));
    return {true};
  }

 private:
  int64_t opset_;
};

}  // namespace

const std::vector<pass::OptionSpec>& ConvertOpsetOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"opset", T::Int, "0", "convert the default-domain opset to this version (up or down; above 17 up only)", {}, "", 1, 21},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createConvertOpset(const pass::Options& options) { return std::make_unique<ConvertOpsetPass>(options); }

}  // namespace mopt::passes
