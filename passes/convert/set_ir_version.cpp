// set-ir-version: sets the model's IR version (lib/convert/versions.h says what each version allows).
//
//   set-ir-version(ir-version=8)    Before: ir_version 9    After: ir_version 8
#include "convert/versions.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class SetIrVersionPass : public pass::Pass {
 public:
  explicit SetIrVersionPass(const pass::Options& o) : ir_version_(o.get_int("ir-version")) {
    if (ir_version_ == 0) usage_error("set-ir-version needs ir-version=N");
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    if (model.ir_version() == ir_version_) return {false, fmt::format("the model is at IR version {} already", ir_version_)};
    ctx.set_details({{"ir_version", {{"from", model.ir_version()}, {"to", ir_version_}}}});
    convert::set_ir_version(model, ir_version_);
    return {true};
  }

 private:
  int64_t ir_version_;
};

}  // namespace

const std::vector<pass::OptionSpec>& SetIrVersionOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"ir-version", T::Int, "0", "set the IR version", {}, "", 1, 100},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createSetIrVersion(const pass::Options& options) { return std::make_unique<SetIrVersionPass>(options); }

}  // namespace mopt::passes
