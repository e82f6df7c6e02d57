// Automatic mixed precision; see auto_mixed.h.
#include "convert/auto_mixed.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "exec/executor.h"
#include "io/model_io.h"
#include "util/error.h"
#include "util/search.h"

namespace mopt::convert {
namespace {

// Relative L2 distance of `candidate` from `reference`; infinite when the candidate is not finite
// where the reference is (float16 overflow).
double relative_error(const exec::Array& reference, const exec::Array& candidate) {
  const std::vector<double> a = reference.to_doubles(), b = candidate.to_doubles();
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isfinite(a[i]) && !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(a[i])) continue;
    diff2 += (a[i] - b[i]) * (a[i] - b[i]);
    ref2 += a[i] * a[i];
  }
  return ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
}

bool is_float(const exec::Array& a) { return a.dtype() == ir::dtype::kFloat; }

}  // namespace

nlohmann::json MixedPrecisionResult::to_json() const {
  nlohmann::json s = nlohmann::json::array();
  for (size_t i = 0; i < sensitivity.size() && i < 20; ++i) {
    const double e = sensitivity[i].second;
    nlohmann::json entry = {{"node", sensitivity[i].first}, {"relative_l2", std::isfinite(e) ? nlohmann::json(e) : nlohmann::json(nullptr)}};
    if (!std::isfinite(e)) entry["undefined_reason"] = "the outputs became non-finite with this node in float16";
    s.push_back(std::move(entry));
  }
  return {{"basis", basis},     {"initial", initial}, {"final", final},   {"met", met},
          {"kept_float32", kept_float32}, {"evaluations", evaluations}, {"most_sensitive", s}};
}

MixedPrecisionResult choose_float32_nodes(ir::Model& model, const FloatPrecisionOptions& options,
                                          const eval::Evaluation& evaluation, const MixedTarget& target) {
  MixedPrecisionResult result;
  // The measure: higher is better for cosine, lower for the drop; met() compares with the target.
  auto measure = [&](const std::vector<std::string>& keep) {
    std::unique_ptr<ir::Model> candidate = io::clone_model(model);
    FloatPrecisionOptions o = options;
    o.node_block_list.insert(keep.begin(), keep.end());
    convert_float_precision(*candidate, o);
    ++result.evaluations;
    const eval::Comparison c = evaluation.evaluate(*candidate, exec::Float16Compute::kRoundEachOperator);
    const bool broken = std::any_of(c.outputs.begin(), c.outputs.end(), [](const auto& m) { return m.broken(); });
    if (target.max_accuracy_drop) {
      std::optional<double> drop = eval::accuracy_drop_points(c, &result.basis);
      if (!drop) fail("--max-accuracy-drop needs labels (--labels) or a classifier-like output to measure");
      return broken ? 100.0 : *drop;  // new NaN/Inf never meets a target
    }
    result.basis = "lowest cosine similarity of any output";
    // New NaN/Inf or an undefined cosine cannot confirm the target: they count as the worst cosine.
    return eval::lowest_cosine(c).value_or(-1.0);
  };
  auto met = [&](double v) { return target.max_accuracy_drop ? v <= *target.max_accuracy_drop : v >= target.min_cosine; };

  result.initial = result.final = measure({});
  if ((result.met = met(result.initial))) return result;

  // Sensitivity of each convertible node, converted alone, on the first sample.
  const std::vector<std::string> candidates = convertible_nodes(model, options);
  const std::set<std::string> wanted(candidates.begin(), candidates.end());
  std::set<std::string> values;
  std::map<std::string, const ir::Node*> by_name;
  for (const ir::Node* n : model.graph().nodes()) {
    if (!wanted.count(n->name()) || !n->subgraphs().empty()) continue;
    by_name[n->name()] = n;
    for (const ir::Value* v : n->inputs()) {
      if (v && !v->constant()) values.insert(v->name());
    }
    for (const ir::Value* v : n->outputs()) {
      if (v) values.insert(v->name());
    }
  }
  const std::vector<data::Feeds> first(evaluation.samples.begin(), evaluation.samples.begin() + 1);
  const eval::Captures captured = eval::capture_values(model, first, values, evaluation.threads);
  for (const auto& [name, node] : by_name) {
    std::vector<exec::Array> inputs;
    inputs.reserve(node->inputs().size());
    bool complete = true;
    for (const ir::Value* v : node->inputs()) {
      exec::Array a;
      if (v == nullptr) {
        inputs.emplace_back();
        continue;
      }
      if (const ir::Tensor* t = v->constant()) {
        a = exec::Array::from_tensor(*t);
      } else if (auto it = captured[0].find(v->name()); it != captured[0].end()) {
        a = it->second;
      } else {
        complete = false;  // an outer or unobserved value
        break;
      }
      inputs.push_back(is_float(a) ? exec::cast(a, options.target) : a);
    }
    if (!complete) continue;
    std::vector<const exec::Array*> pointers;
    for (const exec::Array& a : inputs) pointers.push_back(a.defined() ? &a : nullptr);
    double error = 0;
    try {
      const std::vector<exec::Array> outputs = exec::run_node(model, *node, pointers);
      for (size_t o = 0; o < outputs.size() && o < node->outputs().size(); ++o) {
        const ir::Value* v = node->output(o);
        auto it = v ? captured[0].find(v->name()) : captured[0].end();
        if (it == captured[0].end() || !is_float(it->second)) continue;
        error = std::max(error, relative_error(it->second, outputs[o]));
      }
    } catch (const Error&) {
      continue;  // a kernel that cannot run this node alone: not ranked
    }
    result.sensitivity.emplace_back(name, error);
  }
  std::stable_sort(result.sensitivity.begin(), result.sensitivity.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  auto top = [&](size_t k) {
    std::vector<std::string> keep;
    for (size_t i = 0; i < k; ++i) keep.push_back(result.sensitivity[i].first);
    return keep;
  };
  // Smallest k in [1, N] meeting the target; k = N keeps every ranked node, and is measured first: when even
  // that misses the target there is nothing to search.
  const size_t all = result.sensitivity.size();
  std::map<size_t, double> measured = {{all, measure(top(all))}};
  if (!met(measured[all])) {
    result.kept_float32 = top(all);
    result.final = measured[all];
    return result;
  }
  const size_t k = util::smallest_meeting(1, all, [&](size_t mid) { return met(measured[mid] = measure(top(mid))); });
  result.kept_float32 = top(k);
  result.final = measured.at(k);
  result.met = true;
  return result;
}

}  // namespace mopt::convert
