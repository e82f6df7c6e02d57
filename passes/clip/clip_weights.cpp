// clip-weights: clamps weight outliers of Conv, MatMul and Gemm, so that quantization spends its levels on
// the values that matter instead of a few extremes.
//
//   clip-weights(range=0.5)                    every weight into [-0.5, 0.5]
//   clip-weights(range=-0.2:0.8)               into [-0.2, 0.8]
//   clip-weights(percentile=99.9)              into +-(the 99.9th percentile of |w|) of each tensor
//   clip-weights(sigma=3, per-channel=true)    into mean +- 3 std of each output channel
//
//   Before:  W = [0.1, -0.2, 0.15, 9.0]      After (range=1):  W = [0.1, -0.2, 0.15, 1.0]
//
// The weight is rewritten as a new initializer; the report lists, per tensor, the bounds and how many
// values moved. Weights shared by several nodes are clipped once. Output channels are where
// rewrite/weight_layout.h says (axis 0 of Conv weights, the N axis of MatMul and Gemm weights).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "exec/array.h"
#include "pass/pass.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

enum class Rule { Range, Percentile, Sigma };

struct Bounds {
  float lo, hi;
};

// The bounds for one group of weights under the rule.
Bounds bounds_of(std::vector<float>& group, Rule rule, double value, Bounds range) {
  if (rule == Rule::Range) return range;
  if (rule == Rule::Sigma) {
    double sum = 0, sq = 0;
    for (float v : group) sum += v;
    const double mean = sum / static_cast<double>(group.size());
    for (float v : group) sq += (v - mean) * (v - mean);
    const double sd = std::sqrt(sq / static_cast<double>(group.size()));
    return {static_cast<float>(mean - value * sd), static_cast<float>(mean + value * sd)};
  }
  for (float& v : group) v = std::abs(v);
  const auto n = static_cast<double>(group.size());
  const auto k = static_cast<size_t>(std::clamp(std::ceil(value / 100.0 * n) - 1, 0.0, n - 1));
  std::nth_element(group.begin(), group.begin() + static_cast<std::ptrdiff_t>(k), group.end());
  return {-group[k], group[k]};
}

class ClipWeightsPass : public pass::Pass {
 public:
  explicit ClipWeightsPass(const pass::Options& o) : per_channel_(o.get_bool("per-channel")) {
    const std::string range = o.get_string("range");
    const double percentile = o.get_float("percentile"), sigma = o.get_float("sigma");
    const int rules = !range.empty() + (percentile > 0) + (sigma > 0);
    if (rules != 1) usage_error("clip-weights takes exactly one of range=, percentile= or sigma= (got {})", rules);
    if (!range.empty()) {
      rule_ = Rule::Range;
      range_ = parse_range(range);
    } else if (percentile > 0) {
      if (percentile > 100) usage_error("clip(percentile=...) must be in (0, 100], not {}", percentile);
      rule_ = Rule::Percentile;
      value_ = percentile;
    } else {
      rule_ = Rule::Sigma;
      value_ = sigma;
    }
    for (const std::string& op : o.get_list("op-types")) {
      if (per_channel_ && op != "Conv" && op != "ConvTranspose" && op != "MatMul" && op != "Gemm")
        usage_error("clip-weights(per-channel=true) knows the output channels of Conv, ConvTranspose, MatMul and Gemm "
                    "weights only, not {}", op);
      op_types_.insert(op);
    }
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    nlohmann::json details = nlohmann::json::object();
    const bool changed = clip_weights(model, ctx, details);
    ctx.set_details(details);
    return {changed, "no weight was outside its bounds (see the report's details)"};
  }

 private:
  bool clip_weights(ir::Model& model, pass::PassContext& ctx, nlohmann::json& details) {
    ir::Graph& graph = model.graph();
    nlohmann::json tensors = nlohmann::json::array();
    int64_t moved_total = 0;
    std::set<const ir::Value*> done;
    for (ir::Node* node : graph.nodes()) {
      if (!node->is_default_domain() || !op_types_.count(node->op_type())) continue;
      ir::Value* w = node->input(1);
      const ir::Tensor* t = w ? w->constant() : nullptr;
      if (t == nullptr || t->dtype() != ir::dtype::kFloat || t->dims().size() < 2 || done.count(w)) continue;
      done.insert(w);
      exec::Array a = exec::Array::from_tensor(*t).clone();
      const std::vector<int64_t> dims = a.shape();
      const std::optional<rewrite::WeightLayout> layout = rewrite::weight_layout(*node, dims.size());
      if (per_channel_ && !layout) {
        ctx.explain_skip(*node, "per-channel bounds need the weight's output-channel axis, which this node's weight does not have");
        continue;
      }
      const size_t axis = per_channel_ ? layout->output_axis : 0;
      int64_t outer = 1, inner = 1;
      for (size_t d = 0; d < axis; ++d) outer *= dims[d];
      for (size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
      const int64_t channels = per_channel_ ? dims[axis] : 1;
      if (!per_channel_) inner = a.numel(), outer = 1;
      float* p = a.data<float>();
      int64_t moved = 0;
      float lo_min = INFINITY, hi_max = -INFINITY;
      for (int64_t c = 0; c < channels; ++c) {
        // The group: every element whose index along `axis` is c.
        std::vector<int64_t> idx;
        for (int64_t o = 0; o < outer; ++o) {
          for (int64_t i = 0; i < inner; ++i) idx.push_back((o * channels + c) * inner + i);
        }
        std::vector<float> group;
        group.reserve(idx.size());
        for (int64_t i : idx) group.push_back(p[i]);
        const Bounds b = bounds_of(group, rule_, value_, range_);
        lo_min = std::min(lo_min, b.lo);
        hi_max = std::max(hi_max, b.hi);
        for (int64_t i : idx) {
          const float v = std::clamp(p[i], b.lo, b.hi);
          moved += v != p[i];
          p[i] = v;
        }
      }
      tensors.push_back({{"node", rewrite::describe(*node)}, {"tensor", w->name()}, {"elements", a.numel()},
                         {"moved", moved}, {"lowest_bound", lo_min}, {"highest_bound", hi_max}});
      moved_total += moved;
      if (moved == 0) continue;
      graph.replace_all_uses(w, rewrite::add_constant(graph, w->name(), std::move(a)));
      rewrite::remove_unused_weights(graph, {w});
      ctx.count("tensors-clipped");
    }
    ctx.count("values-moved", moved_total);
    details["weights"] = {{"rule", rule_ == Rule::Range ? "range" : rule_ == Rule::Percentile ? "percentile" : "sigma"},
                          {"per_channel", per_channel_}, {"tensors", tensors}};
    details["values_moved"] = moved_total;
    return moved_total > 0;
  }

  static Bounds parse_range(const std::string& text) {
    char* end = nullptr;
    const size_t colon = text.find(':');
    if (colon == std::string::npos) {
      const double a = std::strtod(text.c_str(), &end);
      if (*end != '\0' || !(a > 0)) usage_error("clip(range=...) takes A (for [-A, A]) or LO:HI, not '{}'", text);
      return {static_cast<float>(-a), static_cast<float>(a)};
    }
    const std::string lo_text = text.substr(0, colon), hi_text = text.substr(colon + 1);
    const double lo = std::strtod(lo_text.c_str(), &end);
    const bool lo_ok = *end == '\0' && !lo_text.empty();
    const double hi = std::strtod(hi_text.c_str(), &end);
    if (!lo_ok || *end != '\0' || hi_text.empty() || !(lo < hi)) usage_error("clip(range=...) takes A or LO:HI with LO < HI, not '{}'", text);
    return {static_cast<float>(lo), static_cast<float>(hi)};
  }

  bool per_channel_;
  Rule rule_ = Rule::Range;
  double value_ = 0;
  Bounds range_{0, 0};
  std::set<std::string> op_types_;
};

}  // namespace

const std::vector<pass::OptionSpec>& ClipWeightsOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"range", T::String, "", "fixed bounds: A for [-A, A], or LO:HI", {}},
      {"percentile", T::Float, "0", "bound |w| by this percentile of |w| (e.g. 99.9)", {}},
      {"sigma", T::Float, "0", "bound w to mean +- sigma * std", {}},
      {"per-channel", T::Bool, "false", "percentile/sigma bounds per output channel instead of per tensor", {}},
      {"op-types", T::String, "Conv,MatMul,Gemm", "comma-separated operator types whose weights are clipped", {}},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createClipWeights(const pass::Options& options) { return std::make_unique<ClipWeightsPass>(options); }

}  // namespace mopt::passes
