// convert: conversions of a whole model, in this order when several are asked for:
//   opset=N          default-domain opset, up or down, with ONNX's version converter
//   ir-version=N     the model's IR version
//   shapes/dims/batch  dynamic input dimensions made static, then shape inference
//   to=fp16|bf16     float32 tensors and operators to float16 or bfloat16 (lib/convert/float_precision.h);
//                    auto-mixed=true keeps the most sensitive nodes in float32 until the accuracy target
//                    holds on the driver's accuracy data (lib/convert/auto_mixed.h)
//
//   convert(to=fp16)                                  Before: x:f32 -> Conv(W:f32) -> y:f32
//                                                     After:  x:f32 -> Cast -> Conv(W:f16) -> Cast -> y:f32
//   convert(opset=13)  convert(batch=1)  convert(shapes="x=1,3,224,224;mask=1,128")
//   convert(to=fp16, op-block-list="default,Softmax", node-block-list="head/MatMul", keep-io-types=false)
#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "convert/auto_mixed.h"
#include "convert/float_precision.h"
#include "convert/shapes.h"
#include "convert/versions.h"
#include "eval/accuracy.h"
#include "ir/tensor.h"
#include "pass/pass.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, separator)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

class ConvertPass : public pass::Pass {
 public:
  explicit ConvertPass(const pass::Options& o) : options_(o) {
    const std::string& to = o.get_string("to");
    target_ = to == "fp16" ? ir::dtype::kFloat16 : to == "bf16" ? ir::dtype::kBfloat16 : 0;
    for (const std::string& s : split(o.get_string("shapes"), ';')) shapes_.given.add_shape(s);
    for (const std::string& s : split(o.get_string("dims"), ',')) shapes_.given.add_dim(s);
    if (o.get_int("batch") > 0) shapes_.batch = o.get_int("batch");
    if (o.get_int("batch") < 0) usage_error("convert: batch must be at least 1, got {}", o.get_int("batch"));
    if (o.get_bool("auto-mixed") && target_ == 0) usage_error("convert: auto-mixed=true needs to=fp16 or to=bf16");
    if (target_ == 0 && (!o.get_string("node-block-list").empty() || o.get_string("op-block-list") != "default")) {
      usage_error("convert: op-block-list and node-block-list apply to to=fp16 or to=bf16");
    }
    if (target_ == 0 && o.get_int("opset") == 0 && o.get_int("ir-version") == 0 && shapes_.empty()) {
      usage_error("convert: nothing to do; give to=, opset=, ir-version=, shapes=, dims= or batch=");
    }
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    bool changed = false;
    nlohmann::json details = nlohmann::json::object();
    if (const int64_t opset = options_.get_int("opset"); opset > 0) {
      const int64_t from = model.opset(), ir_from = model.ir_version();
      if (convert::convert_opset(model, opset)) {
        ctx.count("opset-converted");
        details["opset"] = {{"from", from}, {"to", opset}};
        if (model.ir_version() != ir_from) details["ir_version"] = {{"from", ir_from}, {"to", model.ir_version()}};
        changed = true;
      }
    }
    if (const int64_t ir = options_.get_int("ir-version"); ir > 0 && ir != model.ir_version()) {
      details["ir_version"] = {{"from", model.ir_version()}, {"to", ir}};
      convert::set_ir_version(model, ir);
      changed = true;
    }
    if (!shapes_.empty()) {
      const int64_t set = convert::make_static(model, shapes_);
      const convert::InferenceResult inferred = convert::infer_shapes(model);
      if (inferred.stopped) ctx.warn("shape inference stopped early: " + *inferred.stopped);
      ctx.count("input-dims-set", set);
      ctx.count("values-typed", inferred.values_typed + inferred.values_refined);
      details["static_input_dims"] = set;
      changed |= set > 0;
    }
    if (target_ != 0 && model.ir_version() < 4) {
      // IR 3 lists weights as graph inputs, which must keep their float32 type: leave IR 3 first.
      const int64_t from = model.ir_version(), to = std::max<int64_t>(7, convert::min_ir_version_for_opset(model.opset()));
      convert::upgrade_ir_version(model, to);
      ctx.warn(fmt::format("upgraded IR version {} to {}: initializers are no longer listed as graph inputs, so they can be "
                           "converted", from, to));
      details["ir_version"] = {{"from", from}, {"to", to}};
    }
    if (target_ != 0) changed |= convert_precision(model, ctx, details);
    ctx.set_details(std::move(details));
    return {changed};
  }

 private:
  bool convert_precision(ir::Model& model, pass::PassContext& ctx, nlohmann::json& details) {
    convert::FloatPrecisionOptions o;
    o.target = target_;
    o.keep_io_types = options_.get_bool("keep-io-types");
    o.clamp_out_of_range = options_.get_string("out-of-range") == "clamp";
    for (const std::string& op : split(options_.get_string("op-block-list"), ',')) {
      if (op == "default") o.op_block_list.insert(convert::default_op_block_list().begin(), convert::default_op_block_list().end());
      else if (op != "none") o.op_block_list.insert(op);
    }
    for (const std::string& n : split(options_.get_string("node-block-list"), ',')) o.node_block_list.insert(n);
    if (options_.get_bool("auto-mixed")) {
      const eval::Evaluation* evaluation = ctx.evaluation();
      if (evaluation == nullptr) usage_error("convert(auto-mixed=true) needs the accuracy check (drop --accuracy off)");
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
  convert::StaticShapes shapes_;
};

}  // namespace

const std::vector<pass::OptionSpec>& ConvertOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"to", T::Choice, "keep", "float precision: fp16, bf16, or keep", {"keep", "fp16", "bf16"}},
      {"keep-io-types", T::Bool, "true", "graph inputs and outputs stay float32 (Casts at the edges)", {}, "to=fp16|bf16"},
      {"op-block-list", T::String, "default",
       "comma-separated operator types kept in float32; 'default' is ONNX Runtime's list, 'none' keeps none", {}, "to=fp16|bf16"},
      {"node-block-list", T::String, "", "comma-separated node names kept in float32", {}, "to=fp16|bf16"},
      {"out-of-range", T::Choice, "keep",
       "weights beyond the float16 range: keep their nodes in float32, or clamp them to +-65504", {"keep", "clamp"}, "to=fp16|bf16"},
      {"auto-mixed", T::Bool, "false", "keep the most sensitive nodes in float32 until the accuracy target holds", {}, "to=fp16|bf16"},
      {"min-cosine", T::Float, "0.999", "auto-mixed target: lowest cosine similarity of any output", {}, "auto-mixed", -1, 1},
      {"max-accuracy-drop", T::Float, "-1", "auto-mixed target in accuracy points instead (labels or top-1), if >= 0", {}, "auto-mixed"},
      {"opset", T::Int, "0", "convert the default-domain opset to this version (up or down)", {}, "", 1, 17},
      {"ir-version", T::Int, "0", "set the IR version", {}, "", 1, 100},
      {"shapes", T::String, "", "static input shapes: 'x=1,3,224,224;mask=1,128'", {}},
      {"dims", T::String, "", "values of symbolic dimensions: 'batch=1,seq=128'", {}},
      {"batch", T::Int, "0", "first dimension of every input whose first dimension is dynamic", {}, "", 1, 1099511627776.0},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createConvert(const pass::Options& options) { return std::make_unique<ConvertPass>(options); }

}  // namespace mopt::passes
