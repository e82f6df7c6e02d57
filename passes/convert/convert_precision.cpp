// convert-precision: float32 tensors and operators to float16 or bfloat16, with Casts only where a
// float16 value meets a float32 one (lib/convert/float_precision.h). auto-mixed=true keeps the most
// sensitive nodes in float32 until the accuracy target holds on the driver's accuracy data
// (lib/convert/auto_mixed.h).
//
//   convert-precision(to=fp16)     Before: x:f32 -> Conv(W:f32) -> y:f32
//                                  After:  x:f32 -> Cast -> Conv(W:f16) -> Cast -> y:f32
//   convert-precision(to=fp16, op-block-list="default,Softmax", node-block-list="head/MatMul", keep-io-types=false)
//
// IR 3 lists weights as graph inputs, which must keep their float32 type: such models are brought to a
// current IR version first (with a warning).
#include <fmt/format.h>

#include <algorithm>

#include "convert/auto_mixed.h"
#include "convert/float_precision.h"
#include "convert/versions.h"
#include "eval/accuracy.h"
#include "ir/tensor.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class ConvertPrecisionPass : public pass::Pass {
 public:
  explicit ConvertPrecisionPass(const pass::Options& o) : options_(o) {
    target_ = o.get_string("to") == "bf16" ? ir::dtype::kBfloat16 : ir::dtype::kFloat16;
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    nlohmann::json details = nlohmann::json::object();
    if (model.ir_version() < 4) {
      const int64_t from = model.ir_version(), to = std::max<int64_t>(7, convert::min_ir_version_for_opset(model.opset()));
      convert::upgrade_ir_version(model, to);
      ctx.warn(fmt::format("upgraded IR version {} to {}: initializers are no longer listed as graph inputs, so they can be "
                           "converted", from, to));
      details["ir_version"] = {{"from", from}, {"to", to}};
    }
    const bool changed = convert_precision(model, ctx, details);
    ctx.set_details(std::move(details));
    return {changed, "no float32 node or tensor to convert"};
  }

 private:
  bool convert_precision(ir::Model& model, pass::PassContext& ctx, nlohmann::json& details) {
    convert::FloatPrecisionOptions o;
    o.target = target_;
    o.keep_io_types = options_.get_bool("keep-io-types");
    o.clamp_out_of_range = options_.get_string("out-of-range") == "clamp";
    for (const std::string& op : options_.get_list("op-block-list")) {
      if (op == "default") o.op_block_list.insert(convert::default_op_block_list().begin(), convert::default_op_block_list().end());
      else if (op != "none") o.op_block_list.insert(op);
    }
    for (const std::string& n : options_.get_list("node-block-list")) o.node_block_list.insert(n);
    if (options_.get_bool("auto-mixed")) {
      const eval::Evaluation* evaluation = ctx.evaluation();
      if (evaluation == nullptr) usage_error("convert-precision(auto-mixed=true) needs the accuracy check (drop --accuracy off)");
      eval::require_real_data(evaluation->source, "--auto-mixed");
      convert::MixedTarget target;
      if (const double drop = options_.get_float("max-accuracy-drop"); drop >= 0) target.max_accuracy_drop = drop;
      target.min_cosine = options_.get_float("min-cosine");
      const convert::MixedPrecisionResult mixed = convert::choose_float32_nodes(model, o, *evaluation, target);
      o.node_block_list.insert(mixed.kept_float32.begin(), mixed.kept_float32.end());
      details["auto_mixed"] = mixed.to_json();
      ctx.count("auto-mixed-evaluations", mixed.evaluations);
      if (!mixed.met) {
        ctx.warn(fmt::format("auto-mixed: the target ({}) is not met even with {} node(s) kept in float32", mixed.basis,
                             mixed.kept_float32.size()));
      }
    }
    const convert::FloatPrecisionResult r = convert::convert_float_precision(model, o);
    int64_t kept = 0;
    for (const auto& [reason, n] : r.nodes_kept) kept += n;
    ctx.count("nodes-converted", r.nodes_converted);
    ctx.count("nodes-kept-float32", kept);
    ctx.count("casts-inserted", r.casts_inserted);
    ctx.count("tensors-converted", r.tensors_converted);
    if (r.tensors_duplicated) ctx.count("tensors-duplicated", r.tensors_duplicated);
    if (r.cast_targets_updated) ctx.count("cast-targets-updated", r.cast_targets_updated);
    if (r.values_clamped) {
      ctx.count("values-clamped", r.values_clamped);
      ctx.warn(fmt::format("{} weight value(s) beyond the float16 range were clamped to +-65504", r.values_clamped));
    }
    if (auto it = r.nodes_kept.find("weights beyond the float16 range"); it != r.nodes_kept.end()) {
      ctx.warn(fmt::format("{} node(s) stay float32 because their weights exceed the float16 range (out-of-range=clamp "
                           "clamps them instead)", it->second));
    }
    if (r.values_raised) ctx.count("values-raised-to-min-subnormal", r.values_raised);
    nlohmann::json kept_nodes = nlohmann::json::array();
    for (size_t i = 0; i < r.kept.size() && i < 50; ++i) kept_nodes.push_back({{"node", r.kept[i].first}, {"reason", r.kept[i].second}});
    details["precision"] = {{"to", ir::dtype::name(target_)},
                            {"keep_io_types", o.keep_io_types},
                            {"nodes_converted", r.nodes_converted},
                            {"nodes_kept_by_reason", r.nodes_kept},
                            {"kept_nodes", kept_nodes},
                            {"casts_inserted", r.casts_inserted},
                            {"tensors_converted", r.tensors_converted},
                            {"tensors_duplicated", r.tensors_duplicated},
                            {"values_clamped", r.values_clamped},
                            {"values_raised_to_min_subnormal", r.values_raised}};
    return r.nodes_converted > 0 || r.tensors_converted > 0;
  }

  pass::Options options_;
  int32_t target_ = 0;
};

}  // namespace

const std::vector<pass::OptionSpec>& ConvertPrecisionOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"to", T::Choice, "fp16", "float precision: fp16 or bf16", {"fp16", "bf16"}},
      {"keep-io-types", T::Bool, "true", "graph inputs and outputs stay float32 (Casts at the edges)", {}},
      {"op-block-list", T::String, "default",
       "comma-separated operator types kept in float32; 'default' is ONNX Runtime's list, 'none' keeps none", {}},
      {"node-block-list", T::String, "", "comma-separated node names kept in float32", {}},
      {"out-of-range", T::Choice, "keep",
       "weights beyond the float16 range: keep their nodes in float32, or clamp them to +-65504", {"keep", "clamp"}},
      {"auto-mixed", T::Bool, "false", "keep the most sensitive nodes in float32 until the accuracy target holds", {}},
      {"min-cosine", T::Float, "0.999", "auto-mixed target: lowest cosine similarity of any output", {}, "auto-mixed", -1, 1},
      {"max-accuracy-drop", T::Float, "-1", "auto-mixed target in accuracy points instead (labels or top-1), if >= 0", {}, "auto-mixed"},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createConvertPrecision(const pass::Options& options) {
  return std::make_unique<ConvertPrecisionPass>(options);
}

}  // namespace mopt::passes
