// clip-activations: bounds activations to what calibration data produces, so that a later static
// quantization does not spend its range on values the data never reaches.
//
//   clip-activations(data=calib/)      Before: Conv -> Relu -> y          Clip(0, 6) -> z
//                                      After:  Conv -> Clip(0, hi) -> y   Clip(0, min(6, hi')) -> z
//
// hi is the activation-percentile of |output| on the data (99.99 by default). Relu becomes Clip(0, hi);
// a Clip's constant maximum is tightened when the data stays below it; computed bounds are left alone.
#include <fmt/format.h>

#include <cmath>
#include <optional>

#include "data/feeds.h"
#include "eval/accuracy.h"
#include "exec/array.h"
#include "pass/pass.h"
#include "quant/calibrate.h"
#include "rewrite/rewrite.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

class ClipActivationsPass : public pass::Pass {
 public:
  explicit ClipActivationsPass(const pass::Options& o)
      : data_(o.get_string("data")), activation_percentile_(o.get_float("activation-percentile")) {
    if (data_.empty()) usage_error("clip-activations needs data=PATH (calibration data)");
    if (!(activation_percentile_ > 0 && activation_percentile_ <= 100))
      usage_error("clip(activation-percentile=...) must be in (0, 100], not {}", activation_percentile_);
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    nlohmann::json details = nlohmann::json::object();
    const bool changed = clip_activations(model, ctx, details);
    ctx.set_details(details);
    return {changed, "no Relu or Clip output exceeded what the data produces"};
  }

 private:
  // Relu -> Clip(0, hi) and Clip max -> min(max, hi), hi the activation-percentile of |output| on data.
  bool clip_activations(ir::Model& model, pass::PassContext& ctx, nlohmann::json& details) {
    const std::vector<data::Feeds> samples = eval::load_calibration(model, data_, ctx.evaluation());
    quant::CalibrationOptions options;
    options.method = quant::CalibrationMethod::Percentile;
    options.percentile = activation_percentile_;
    options.threads = ctx.evaluation() ? ctx.evaluation()->threads : 0;  // --threads, as for the accuracy check
    const quant::CalibrationTable table = quant::calibrate(model, samples, options);
    ir::Graph& graph = model.graph();
    const bool clip_inputs = model.opset() >= 11;  // Clip takes min/max as inputs from opset 11
    nlohmann::json activations = nlohmann::json::array();
    for (ir::Node* node : graph.nodes()) {
      const bool relu = node->is_op("Relu"), clip = node->is_op("Clip");
      if (!relu && !clip) continue;
      const quant::TensorRange* r = node->output(0) ? table.find(node->output(0)->name()) : nullptr;
      if (r == nullptr || rewrite::elem_type(*node->output(0)) != ir::dtype::kFloat) continue;
      const auto hi = static_cast<float>(r->max);
      if (!(hi > 0)) continue;
      const std::string who = rewrite::describe(*node);
      float old_max = INFINITY, low = 0;
      if (clip) {
        std::optional<exec::Array> mx = clip_inputs ? rewrite::constant_array(node->input(2)) : std::nullopt;
        std::optional<exec::Array> mn = clip_inputs ? rewrite::constant_array(node->input(1)) : std::nullopt;
        if (clip_inputs && ((node->input(2) && !mx) || (node->input(1) && !mn))) continue;  // computed bounds
        old_max = clip_inputs ? (mx ? static_cast<float>(mx->scalar_double()) : INFINITY) : node->attribute_float("max").value_or(INFINITY);
        low = clip_inputs ? (mn ? static_cast<float>(mn->scalar_double()) : -INFINITY) : node->attribute_float("min").value_or(-INFINITY);
        if (!(hi < old_max) || !(hi > low)) continue;
      }
      if (clip_inputs) {
        auto scalar = [&](const char* base, float v) {
          return rewrite::add_constant(graph, node->output(0)->name() + base, exec::Array::scalar<float>(ir::dtype::kFloat, v));
        };
        ir::Value* lo_value = relu ? scalar("_clip_min", 0.0f) : node->input(1);
        ir::Node* c = graph.create_node("Clip", {node->input(0), lo_value, scalar("_clip_max", hi)}, 1, node);
        c->mutable_proto().set_name(node->name());
        graph.replace_all_uses(node->output(0), c->output(0));
        graph.erase(node);
      } else {
        if (relu) {
          ir::Node* c = graph.create_node("Clip", {node->input(0)}, 1, node);
          c->mutable_proto().set_name(node->name());
          rewrite::set_float_attr(*c, "min", 0.0f);
          rewrite::set_float_attr(*c, "max", hi);
          graph.replace_all_uses(node->output(0), c->output(0));
          graph.erase(node);
        } else {
          rewrite::set_float_attr(*node, "max", hi);
        }
      }
      activations.push_back({{"node", who}, {"op", relu ? "Relu" : "Clip"}, {"old_max", old_max},
                             {"new_max", hi}, {"observed_max", r->observed_max}});
      ctx.count(relu ? "relus-bounded" : "clips-tightened");
    }
    details["activations"] = {{"data", data_}, {"percentile", activation_percentile_}, {"samples", table.samples},
                              {"tensors", activations}};
    return !activations.empty();
  }

  std::string data_;
  double activation_percentile_;
};

}  // namespace

const std::vector<pass::OptionSpec>& ClipActivationsOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"data", T::String, "", "calibration data: bound Relu outputs (Relu -> Clip) and tighten Clip maxima to what it produces", {}},
      {"activation-percentile", T::Float, "99.99", "the percentile of |activation| kept", {}, "", 0, 100},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createClipActivations(const pass::Options& options) {
  return std::make_unique<ClipActivationsPass>(options);
}

}  // namespace mopt::passes
