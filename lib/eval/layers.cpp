// Per-layer error by original node name; see layers.h.
#include "eval/layers.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "exec/executor.h"

namespace mopt::eval {
namespace {

bool is_float_array(const exec::Array& a) {
  const int32_t t = a.dtype();
  return t == ir::dtype::kFloat || t == ir::dtype::kDouble || exec::is_16bit_float(t);
}

// The dequantized copy of `value` (value -> QuantizeLinear -> DequantizeLinear) the next layer reads, or
// `value` itself when it is not quantized.
const ir::Value* read_as(const ir::Value& value) {
  for (const ir::Use& q : value.uses()) {
    if (!q.node->is_op("QuantizeLinear") || q.input_index != 0 || q.node->output(0) == nullptr) continue;
    for (const ir::Use& dq : q.node->output(0)->uses()) {
      if (dq.node->is_op("DequantizeLinear") && dq.input_index == 0 && dq.node->output(0)) return dq.node->output(0);
    }
  }
  return &value;
}

// The optimized model's value for the original `value` (an output of `node`), or "" when it has none: the
// value of the same name, or, for a Relu/Clip output that quantization folded into the QuantizeLinear of
// its input (input -> Q(range of the Relu) -> DQ), that DequantizeLinear's output.
std::string counterpart_of(const ir::Node& node, const ir::Value& value, const ir::Model& optimized) {
  const ir::Graph& graph = optimized.graph();
  if (const ir::Value* same = graph.find_local(value.name()); same && same->producer()) return same->name();
  if ((node.is_op("Relu") || node.is_op("Clip")) && node.input(0)) {
    if (const ir::Value* input = graph.find_local(node.input(0)->name()); input && input->producer()) {
      if (const ir::Value* dq = read_as(*input); dq != input) return dq->name();
    }
  }
  return "";
}

struct Pair {
  std::string node, op_type, value, counterpart;
  MetricAccumulator acc;
  bool compared = false;
};

}  // namespace

LayerReport compare_layers(const ir::Model& original, const ir::Model& optimized, const std::vector<data::Feeds>& samples,
                           const LayerOptions& options) {
  LayerReport report;
  std::vector<Pair> pairs;
  std::map<std::string, size_t> by_value;       // original value -> index in pairs
  std::map<std::string, std::string> wanted;    // optimized value -> original value
  for (const ir::Node* node : original.graph().nodes()) {
    if (node->is_op("Constant")) continue;
    for (const ir::Value* v : node->outputs()) {
      if (v == nullptr) continue;
      Pair p;
      p.node = node->name().empty() ? fmt::format("{} -> {}", node->op_type(), v->name()) : node->name();
      p.op_type = node->op_type();
      p.value = v->name();
      if (const std::string c = counterpart_of(*node, *v, optimized); !c.empty()) {
        p.counterpart = c;
        wanted[c] = p.value;
      }
      by_value[p.value] = pairs.size();
      pairs.push_back(std::move(p));
    }
  }

  // Each model runs on a sample while the original's captures fit the budget; values past it are compared
  // in further rounds, so memory stays bounded and every value is compared (at most kMaxRounds rounds).
  constexpr int kMaxRounds = 16;
  const uint64_t budget = options.max_bytes / 2;  // half for each model
  uint64_t held = 0;
  std::vector<char> done(pairs.size(), 0);
  std::map<std::string, exec::Array> original_values, optimized_values;
  exec::ExecutorOptions o1, o2;
  o1.threads = o2.threads = options.threads;
  o1.observe = [&](const ir::Value& v, const exec::Array& a) {
    auto it = by_value.find(v.name());
    if (it == by_value.end() || done[it->second] || !is_float_array(a) || pairs[it->second].counterpart.empty()) return;
    if (held + a.nbytes() > budget && !original_values.empty()) return;  // a later round
    held += a.nbytes();
    original_values[v.name()] = a;  // shares the buffer
  };
  o2.observe = [&](const ir::Value& v, const exec::Array& a) {
    auto it = wanted.find(v.name());
    if (it == wanted.end() || !is_float_array(a) || !original_values.count(it->second)) return;
    optimized_values[v.name()] = a;
  };
  exec::Executor run_original(original, o1), run_optimized(optimized, o2);
  const size_t n = std::min(samples.size(), options.max_samples);
  bool incomplete = false;
  for (size_t s = 0; s < n; ++s) {
    std::fill(done.begin(), done.end(), 0);
    const data::Feeds optimized_feeds = data::feeds_for(optimized, original, samples[s]);  // renamed inputs
    for (int round = 0;; ++round) {
      held = 0;
      original_values.clear();
      optimized_values.clear();
      run_original.run(samples[s]);
      if (original_values.empty()) break;
      if (round == kMaxRounds) {
        incomplete = true;
        break;
      }
      run_optimized.run(optimized_feeds);
      for (const auto& [name, ref] : original_values) {
        const size_t index = by_value.at(name);
        Pair& p = pairs[index];
        done[index] = 1;
        auto it = optimized_values.find(p.counterpart);
        if (it == optimized_values.end() || it->second.shape() != ref.shape()) continue;
        p.acc.add(ref.to_doubles(), it->second.to_doubles());
        p.compared = true;
      }
    }
  }
  original_values.clear();
  optimized_values.clear();
  report.samples = n;
  for (Pair& p : pairs) {
    if (!p.compared) {
      ++report.unmatched;
      continue;
    }
    report.layers.push_back(LayerError{p.node, p.op_type, p.value, p.counterpart, p.acc.finish(p.value)});
  }
  report.values = report.layers.size() + report.unmatched;
  if (incomplete)
    report.note = fmt::format("{} rounds of {} MiB captures did not cover every value: later layers are not compared",
                              kMaxRounds, budget >> 20);
  std::stable_sort(report.layers.begin(), report.layers.end(), [](const LayerError& a, const LayerError& b) {
    if (a.metrics.broken() != b.metrics.broken()) return a.metrics.broken();
    return a.metrics.relative_l2 > b.metrics.relative_l2;
  });
  return report;
}

nlohmann::json to_json(const LayerReport& r, size_t limit) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < r.layers.size() && (limit == 0 || i < limit); ++i) {
    const LayerError& l = r.layers[i];
    const OutputMetrics& m = l.metrics;
    nlohmann::json j = {{"node", l.node},
                        {"op_type", l.op_type},
                        {"value", l.value},
                        {"relative_l2_error", std::isfinite(m.relative_l2) ? nlohmann::json(m.relative_l2) : nlohmann::json(nullptr)},
                        {"cosine_similarity", m.cosine ? nlohmann::json(*m.cosine) : nlohmann::json(nullptr)},
                        {"max_abs_error", std::isfinite(m.max_abs_error) ? nlohmann::json(m.max_abs_error) : nlohmann::json(nullptr)},
                        {"new_nonfinite", m.new_nonfinite}};
    if (l.counterpart != l.value) j["compared_with"] = l.counterpart;
    if (!m.undefined_reason.empty()) j["undefined_reason"] = m.undefined_reason;
    layers.push_back(std::move(j));
  }
  nlohmann::json j = {{"samples", r.samples}, {"values", r.values}, {"compared", r.layers.size()},
                      {"unmatched", r.unmatched}, {"worst_first", layers}};
  if (!r.note.empty()) j["note"] = r.note;
  return j;
}

std::string summary(const LayerReport& r, size_t worst) {
  if (r.layers.empty()) return "";
  std::string s = fmt::format("worst layers ({} of {} values compared on {} sample{}, by original node):\n", r.layers.size(),
                              r.values, r.samples, r.samples == 1 ? "" : "s");
  for (size_t i = 0; i < r.layers.size() && i < worst; ++i) {
    const LayerError& l = r.layers[i];
    s += fmt::format("  {:<36} {:<18} rel-L2 {:<10.4g} cosine {}\n", l.node, l.op_type, l.metrics.relative_l2,
                     l.metrics.cosine ? fmt::format("{:.6f}", *l.metrics.cosine) : "n/a");
  }
  return s;
}

}  // namespace mopt::eval
