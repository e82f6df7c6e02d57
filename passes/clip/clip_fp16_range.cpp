// clip-fp16-range: clamps every float32 initializer into the float16 range (+-65504), so that a later
// float16 conversion has no infinities.
//
//   Before:  W = [0.5, 1e6, -7e4]        After:  W = [0.5, 65504, -65504]
//
// Graph inputs (IR 3 weights) and non-finite values are left alone; each changed tensor is rewritten as a
// new initializer.
#include <algorithm>
#include <cmath>
#include <span>

#include "exec/array.h"
#include "pass/pass.h"
#include "rewrite/rewrite.h"

namespace mopt::passes {
namespace {

constexpr float kFloat16Max = 65504.0f;

class ClipFp16RangePass : public pass::Pass {
 public:
  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    nlohmann::json details = nlohmann::json::object();
    const bool changed = clamp_to_float16(model, ctx, details);
    ctx.set_details(details);
    return {changed, "every float32 initializer is within the float16 range"};
  }

 private:
  // Every float32 initializer into [-65504, 65504], so a later float16 conversion has no infinities.
  bool clamp_to_float16(ir::Model& model, pass::PassContext& ctx, nlohmann::json& details) {
    int64_t moved = 0, tensors = 0;
    model.for_each_graph([&](ir::Graph& graph) {
      for (ir::Value* v : graph.initializers()) {
        if (v->initializer()->dtype() != ir::dtype::kFloat || v->is_graph_input()) continue;
        exec::Array a = exec::Array::from_tensor(*v->initializer());
        const float* p = a.data<float>();
        if (std::all_of(p, p + a.numel(), [](float x) { return !(std::abs(x) > kFloat16Max); })) continue;
        exec::Array c = a.clone();
        for (float& x : std::span<float>(c.data<float>(), static_cast<size_t>(c.numel()))) {
          if (std::abs(x) > kFloat16Max && std::isfinite(x)) {
            x = std::copysign(kFloat16Max, x);
            ++moved;
          }
        }
        graph.replace_all_uses(v, rewrite::add_constant(graph, v->name(), std::move(c)));
        rewrite::remove_unused_weights(graph, {v});
        ++tensors;
      }
    });
    ctx.count("float16-clamped-values", moved);
    details["float16"] = {{"tensors", tensors}, {"values_moved", moved}};
    return moved > 0;
  }

};

}  // namespace

const std::vector<pass::OptionSpec>& ClipFp16RangeOptions() {
  static const std::vector<pass::OptionSpec> specs;
  return specs;
}

std::unique_ptr<pass::Pass> createClipFp16Range(const pass::Options&) { return std::make_unique<ClipFp16RangePass>(); }

}  // namespace mopt::passes
