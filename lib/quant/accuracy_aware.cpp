// Per-layer errors and the accuracy-aware fallback; see accuracy_aware.h.
#include "quant/accuracy_aware.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "exec/executor.h"
#include "ir/proto.h"
#include "util/error.h"
#include "util/search.h"
#include "util/log.h"

namespace mopt::quant {
namespace {

std::unique_ptr<ir::Model> clone(const ir::Model& model) { return ir::import_model(ir::export_model(model)); }

bool is_weighted(const ir::Node& n) { return n.is_op("Conv") || n.is_op("MatMul") || n.is_op("Gemm"); }

// Mean relative L2 error over the outputs of a comparison (0 when identical).
double mean_relative_l2(const eval::Comparison& c) {
  double sum = 0;
  for (const auto& o : c.outputs) sum += o.relative_l2;
  return c.outputs.empty() ? 0 : sum / static_cast<double>(c.outputs.size());
}

}  // namespace

void add_layer_errors(const eval::Captures& float_values, const eval::Captures& quantized_values, QuantizeSummary& summary) {
  for (LayerRecord& layer : summary.layers) {
    eval::MetricAccumulator metrics;  // NaN-aware, as the accuracy report's per-layer table
    bool seen = false;
    for (size_t s = 0; s < float_values.size() && s < quantized_values.size(); ++s) {
      auto f = float_values[s].find(layer.output);
      auto q = quantized_values[s].find(layer.value);
      if (f == float_values[s].end() || q == quantized_values[s].end() || f->second.numel() != q->second.numel()) continue;
      metrics.add(f->second.to_doubles(), q->second.to_doubles());
      seen = true;
    }
    if (!seen) continue;
    const eval::OutputMetrics m = metrics.finish(layer.node);
    layer.relative_l2 = m.relative_l2;
    layer.cosine = m.cosine;  // undefined (null) for an all-zero layer, or one broken by NaN/Inf
    layer.max_abs_error = m.max_abs_error;
  }
}

bool FallbackScore::meets(const FallbackTarget& target) const {
  if (target.max_drop && !(drop && *drop <= *target.max_drop + 1e-9)) return false;
  if (target.min_cosine && !(cosine && *cosine >= *target.min_cosine)) return false;
  return true;
}

std::string FallbackScore::describe() const {
  std::vector<std::string> parts;
  if (drop) parts.push_back(fmt::format("drop {:.2f} pp", *drop));
  parts.push_back(cosine ? fmt::format("cosine {:.6f}", *cosine) : std::string("cosine undefined"));
  return fmt::format("{}", fmt::join(parts, ", "));
}

nlohmann::json FallbackResult::to_json() const {
  nlohmann::json sens = nlohmann::json::array();
  for (const auto& [node, value] : sensitivity) {
    const bool kept = std::find(kept_float.begin(), kept_float.end(), node) != kept_float.end();
    sens.push_back({{"node", node}, {"relative_l2_alone", value}, {"kept_float", kept}});
  }
  auto number = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j = {{"evaluations", evaluations}, {"kept_float", kept_float}, {"sensitivity", sens},
                      {"met", final_score.meets(target)}};
  if (target.max_drop) {
    j.update({{"target_drop_pp", *target.max_drop}, {"basis", basis}, {"initial_drop_pp", number(initial.drop)},
              {"final_drop_pp", number(final_score.drop)}});
  }
  if (target.min_cosine) {
    j.update({{"target_cosine", *target.min_cosine}, {"initial_cosine", number(initial.cosine)}, {"final_cosine", number(final_score.cosine)}});
  }
  return j;
}

FallbackResult accuracy_aware_exclusions(const ir::Model& model, const QuantizeConfig& config, const CalibrationTable* table,
                                         const eval::Evaluation& evaluation, const FallbackTarget& target) {
  if (!target.max_drop && !target.min_cosine) throw std::logic_error("accuracy_aware_exclusions without a target");
  FallbackResult result;
  result.target = target;
  // Quantizes a copy with extra exclusions and measures it: (score, mean relative L2).
  auto measure = [&](const std::set<std::string>& exclude) {
    auto copy = clone(model);
    QuantizeConfig c = config;
    c.exclude_nodes.insert(exclude.begin(), exclude.end());
    quantize_model(*copy, c, table);
    eval::Comparison cmp = evaluation.evaluate(*copy);
    ++result.evaluations;
    FallbackScore score;
    if (target.max_drop) {
      std::string basis;
      score.drop = eval::accuracy_drop_points(cmp, &basis);
      if (!score.drop) usage_error("the accuracy-aware search needs labels (--labels) or a classifier-like output to measure a drop");
      result.basis = basis;
    }
    // The lowest cosine over the outputs; undefined on any output (all zeros, NaN) leaves it undefined.
    for (const auto& o : cmp.outputs) {
      if (!o.cosine) {
        score.cosine.reset();
        break;
      }
      score.cosine = score.cosine ? std::min(*score.cosine, *o.cosine) : *o.cosine;
    }
    if (cmp.outputs.empty()) score.cosine.reset();
    return std::pair<FallbackScore, double>{score, mean_relative_l2(cmp)};
  };

  log::Phase search_phase("accuracy-aware search");
  result.initial = result.final_score = measure({}).first;
  if (result.initial.meets(target)) return result;

  std::vector<std::string> layers;
  for (const ir::Node* n : select_nodes(model, config, nullptr)) {
    if (is_weighted(*n)) layers.push_back(n->name());
  }
  log::Phase sensitivity_phase("sensitivity", layers.size(), "layers");
  for (size_t i = 0; i < layers.size(); ++i) {
    std::set<std::string> others;
    for (const std::string& l : layers) {
      if (l != layers[i]) others.insert(l);
    }
    result.sensitivity.emplace_back(layers[i], measure(others).second);
    sensitivity_phase.advance();
  }
  sensitivity_phase.end();
  std::stable_sort(result.sensitivity.begin(), result.sensitivity.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  auto top = [&](size_t k) {
    std::set<std::string> s;
    for (size_t i = 0; i < k; ++i) s.insert(result.sensitivity[i].first);
    return s;
  };
  // Smallest k in [1, L] meeting the target; k = L keeps every weighted layer float.
  std::map<size_t, FallbackScore> scores;
  log::Phase bisect_phase("layers kept float", 0, "tries");
  const size_t k = util::smallest_meeting(1, result.sensitivity.size(), [&](size_t mid) {
    bisect_phase.set_note(fmt::format("trying {}", mid));
    scores[mid] = measure(top(mid)).first;
    bisect_phase.advance();
    return scores[mid].meets(target);
  });
  bisect_phase.end();
  const std::set<std::string> chosen = top(k);
  result.final_score = scores.count(k) ? scores[k] : measure(chosen).first;
  for (const auto& [node, value] : result.sensitivity) {
    if (chosen.count(node)) result.kept_float.push_back(node);
  }
  return result;
}

}  // namespace mopt::quant
