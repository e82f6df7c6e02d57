// prune: zeroes weights of Conv, MatMul and Gemm on the exported graph (no training framework needed).
//
//   prune(method=magnitude, sparsity=0.5)              the smallest half of |w| in each weight -> 0
//   prune(method=magnitude, sparsity=0.5, scope=global) one threshold over all selected weights
//   prune(method=nm, n=2, m=4)                          2 nonzeros in every 4 along the reduction axis
//
//   Before:  W = [0.9, -0.1, 0.05, -0.7]      After (magnitude 0.5):  W = [0.9, 0, 0, -0.7]
//
//   prune(method=channels, sparsity=0.25)              remove a quarter of each Conv's filters (and Gemm's
//                                                      output features) and the inputs that read them
//
// magnitude and nm rewrite the weights in place of the old initializers; the graph is unchanged.
// channels makes tensors smaller (lib/prune/channels.cpp says which readers it can rewrite). Which
// nodes are pruned and which skipped (and why) is in the report's details.
#include <fmt/format.h>


#include "pass/pass.h"
#include "prune/channels.h"
#include "prune/prune.h"
#include "util/error.h"

namespace mopt::passes {
namespace {

// {"Conv=0.3", "MatMul=0.6"} -> {Conv: 0.3, MatMul: 0.6}
std::map<std::string, double> parse_overrides(const std::vector<std::string>& items, const char* option) {
  std::map<std::string, double> out;
  for (const std::string& item : items) {
    const size_t eq = item.rfind('=');
    char* end = nullptr;
    const double v = eq == std::string::npos ? 0 : std::strtod(item.c_str() + eq + 1, &end);
    if (eq == std::string::npos || eq == 0 || end == item.c_str() + eq + 1 || *end != '\0')
      usage_error("prune option {} takes NAME=SPARSITY pairs separated by commas, not '{}'", option, item);
    out[item.substr(0, eq)] = v;
  }
  return out;
}

class PrunePass : public pass::Pass {
 public:
  explicit PrunePass(const pass::Options& o) {
    const std::string method = o.get_string("method");
    channels_ = method == "channels";
    channel_config_.ratio = o.get_float("sparsity");
    channel_config_.l2 = o.get_string("norm") == "l2";
    config_.method = method == "nm" ? prune::Method::NM : prune::Method::Magnitude;
    config_.sparsity = o.get_float("sparsity");
    config_.global = o.get_string("scope") == "global";
    config_.n = o.get_int("n");
    config_.m = o.get_int("m");
    if (!o.get_string("op-types").empty()) {
      config_.op_types.clear();
      for (const std::string& op : o.get_list("op-types")) config_.op_types.insert(op);
    }
    config_.op_sparsity = parse_overrides(o.get_list("op-sparsity"), "op-sparsity");
    config_.node_sparsity = parse_overrides(o.get_list("node-sparsity"), "node-sparsity");
    for (const std::string& n : o.get_list("exclude-nodes")) config_.exclude_nodes.insert(n);
    channel_config_.exclude_nodes.assign(config_.exclude_nodes.begin(), config_.exclude_nodes.end());
    config_.skip_first = o.get_bool("skip-first");
    config_.skip_last = o.get_bool("skip-last");
    config_.min_elements = o.get_int("min-elements");
    auto check_fraction = [](double v, const std::string& what) {
      if (!(v >= 0 && v < 1)) usage_error("prune: {} must be in [0, 1), not {}", what, v);
    };
    check_fraction(config_.sparsity, "sparsity");
    for (const auto& [name, v] : config_.op_sparsity) check_fraction(v, "the sparsity of " + name);
    for (const auto& [name, v] : config_.node_sparsity) check_fraction(v, "the sparsity of " + name);
  }

  pass::PassResult run(ir::Model& model, pass::PassContext& ctx) override {
    if (channels_) return run_channels(model, ctx);
    const prune::PruneSummary summary = prune::prune_model(model, config_);
    ctx.set_details(prune::to_json(summary, config_));
    ctx.count("tensors-pruned", static_cast<int64_t>(summary.tensors.size()));
    ctx.count("weights-zeroed", summary.zeros_after - summary.zeros_before);
    if (summary.tensors.empty()) ctx.warn("no weight was pruned (see the report's skipped list)");
    const bool changed = summary.zeros_after != summary.zeros_before;
    return {changed, changed ? "" : summary.tensors.empty() ? "no weight was selected for pruning (see the report's skipped list)"
                                                            : "every selected weight was already zero where pruning would zero it"};
  }

 private:
  pass::PassResult run_channels(ir::Model& model, pass::PassContext& ctx) {
    const prune::ChannelSummary s = prune::prune_channels(model, channel_config_);
    nlohmann::json pruned = nlohmann::json::array(), kept = nlohmann::json::array();
    int64_t removed = 0;
    for (const auto& r : s.pruned) {
      pruned.push_back({{"node", r.node}, {"channels_before", r.channels_before}, {"channels_after", r.channels_after}});
      removed += r.channels_before - r.channels_after;
    }
    for (const auto& [node, why] : s.kept) kept.push_back({{"node", node}, {"reason", why}});
    ctx.set_details({{"method", "channels"}, {"ratio", channel_config_.ratio}, {"norm", channel_config_.l2 ? "l2" : "l1"},
                     {"pruned", pruned}, {"kept", kept}});
    ctx.count("layers-pruned", static_cast<int64_t>(s.pruned.size()));
    ctx.count("channels-removed", removed);
    if (s.pruned.empty()) ctx.warn("no layer lost channels (see the report's kept list for why)");
    return {removed > 0, removed > 0 ? "" : "no layer lost channels (see the report's kept list for why)"};
  }

  prune::PruneConfig config_;
  prune::ChannelConfig channel_config_;
  bool channels_ = false;
};

}  // namespace

const std::vector<pass::OptionSpec>& PruneOptions() {
  using T = pass::OptionSpec::Type;
  static const std::vector<pass::OptionSpec> specs = {
      {"method", T::Choice, "magnitude", "magnitude (smallest |w|), nm (N:M along the reduction axis), channels (remove filters)",
       {"magnitude", "nm", "channels"}},
      {"sparsity", T::Float, "0.5", "magnitude: fraction of weights set to zero; channels: fraction of channels removed; in [0, 1)", {},
       "method=magnitude|channels"},
      {"norm", T::Choice, "l1", "channels: rank channels by the L1 or L2 norm of their weights", {"l1", "l2"}, "method=channels"},
      {"scope", T::Choice, "global", "magnitude: one threshold over all selected weights (default; small first layers keep more), or the fraction per weight tensor", {"global", "layer"},
       "method=magnitude"},
      {"n", T::Int, "2", "nm: nonzeros kept per group", {}, "method=nm", 1},
      {"m", T::Int, "4", "nm: group length along the reduction axis", {}, "method=nm", 1},
      {"op-types", T::String, "", "comma-separated operator types to prune (default: Conv,MatMul,Gemm)", {}},
      {"op-sparsity", T::String, "", "magnitude: per operator type, e.g. Conv=0.3,Gemm=0.7", {}, "method=magnitude"},
      {"node-sparsity", T::String, "", "magnitude: per node name, e.g. fc1=0.8 (wins over op-sparsity)", {}, "method=magnitude"},
      {"exclude-nodes", T::String, "", "comma-separated node names to leave alone", {}},
      {"skip-first", T::Bool, "false", "leave the first selected layer alone", {}},
      {"skip-last", T::Bool, "false", "leave the last selected layer alone", {}},
      {"min-elements", T::Int, "0", "leave weights with fewer elements alone", {}, "", 0},
  };
  return specs;
}

std::unique_ptr<pass::Pass> createPrune(const pass::Options& options) { return std::make_unique<PrunePass>(options); }

}  // namespace mopt::passes
