// upgrade-ir-version: brings models older than IR version 4 to a current IR version, where initializers
// are no longer listed as graph inputs and so are constants that rewrites may fold and replace.
//
//   Before:  ir_version 3; inputs: x, W, b (W and b also initializers)
//   After:   ir_version 7; inputs: x                (W and b stay initializers)
//
// ONNX Runtime already treats those initializers as constants in IR < 4 models, so what a runtime
// computes does not change; only the listed inputs do, and the report says so. Models at IR >= 4 are
// left alone.
#include <fmt/format.h>

#include "pass/pass.h"
#include "convert/versions.h"

namespace mopt::passes {
namespace {

class UpgradeIrVersionPass : public pass::Pass {
 public:
  explicit UpgradeIrVersionPass(const pass::Options& options) : target_(options.get_int("target")) {}

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    const int64_t from = model.ir_version();
    size_t inputs = model.graph().inputs().size();
    if (!convert::upgrade_ir_version(model, target_)) return {};
    inputs -= model.graph().inputs().size();
    ctx.warn(fmt::format("IR version {} -> {}: {} initializer(s) are no longer listed as graph inputs", from, target_, inputs));
    ctx.count("initializers-no-longer-inputs", static_cast<int64_t>(inputs));
    return {true};
  }

 private:
  int64_t target_;
};

}  // namespace

const std::vector<pass::OptionSpec>& UpgradeIrVersionOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"target", T::Int, "7", "IR version to write for models below IR 4", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createUpgradeIrVersion(const pass::Options& options) {
  return std::make_unique<UpgradeIrVersionPass>(options);
}

}  // namespace mopt::passes
