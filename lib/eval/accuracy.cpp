// Output comparison metrics, label accuracy and quality gates.
#include "eval/accuracy.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "exec/executor.h"
#include "util/error.h"

namespace mopt::eval {
namespace d = ir::dtype;
using exec::Array;

Captures capture_values(const ir::Model& model, const std::vector<data::Feeds>& samples, const std::set<std::string>& names,
                        int threads) {
  Captures out(samples.size());
  size_t current = 0;
  exec::ExecutorOptions options;
  options.threads = threads;
  options.observe = [&](const ir::Value& v, const exec::Array& a) {
    if (names.count(v.name())) out[current][v.name()] = a;  // shares the buffer, no copy
  };
  exec::Executor executor(model, options);
  for (current = 0; current < samples.size(); ++current) executor.run(samples[current]);
  return out;
}

Outputs run_samples(const ir::Model& model, const std::vector<data::Feeds>& samples, int threads) {
  Outputs out;
  exec::Executor executor(model, exec::ExecutorOptions{threads, false, nullptr});
  for (const ir::Value* v : model.graph().outputs()) out.names.push_back(v->name());
  auto start = std::chrono::steady_clock::now();
  // A model converted to float16 with its inputs converted too (convert --no-keep-io-types) is fed the
  // same samples as the original, rounded to its input type as a caller of the converted model would.
  std::map<std::string, int32_t> float_inputs;
  for (const ir::Value* v : model.graph().inputs()) {
    const int32_t t = v->info().type().tensor_type().elem_type();
    if (exec::is_16bit_float(t)) float_inputs[v->name()] = t;
  }
  for (const data::Feeds& feeds : samples) {
    if (float_inputs.empty()) {
      out.per_sample.push_back(executor.run(feeds));
      continue;
    }
    data::Feeds adapted = feeds;
    for (auto& [name, array] : adapted) {
      auto it = float_inputs.find(name);
      if (it != float_inputs.end() && array.dtype() == ir::dtype::kFloat) array = exec::cast(array, it->second);
    }
    out.per_sample.push_back(executor.run(adapted));
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

namespace {

// [rows, classes] view of a classifier-like output: rank >= 2 and, after dropping unit dims other than
// the first, exactly [N, C] with C >= 2 ([360,10], [1,1000,1,1]; not [1,1] or [1,1,640,640]).
bool classifier_view(const exec::Shape& shape, int64_t& rows, int64_t& classes) {
  if (shape.size() < 2) return false;
  std::vector<int64_t> dims{shape[0]};
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] != 1) dims.push_back(shape[i]);
  }
  if (dims.size() != 2 || dims[1] < 2) return false;
  rows = dims[0];
  classes = dims[1];
  return true;
}

int64_t argmax(const double* row, int64_t n) { return std::max_element(row, row + n) - row; }

bool in_top_k(const double* row, int64_t n, int64_t target, int64_t k) {
  int64_t better = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (row[i] > row[target] || (row[i] == row[target] && i < target)) ++better;
  }
  return better < k;
}

const OutputMetrics* pick_label_output(const std::vector<OutputMetrics>& metrics, const std::string& name) {
  for (const OutputMetrics& m : metrics) {
    if (name.empty() ? m.classifier : m.name == name) return &m;
  }
  return nullptr;
}

std::vector<double> concat_doubles(const Outputs& o, size_t index) {
  std::vector<double> all;
  for (const auto& sample : o.per_sample) {
    std::vector<double> v = sample[index].to_doubles();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

size_t output_index(const Outputs& o, const std::string& name) {
  for (size_t i = 0; i < o.names.size(); ++i) {
    if (o.names[i] == name) return i;
  }
  fail("model has no output named '{}'", name);
}

double accuracy_of(const std::vector<double>& values, int64_t classes, const std::vector<int64_t>& labels) {
  int64_t rows = static_cast<int64_t>(values.size()) / classes;
  if (rows != static_cast<int64_t>(labels.size())) {
    fail("labels hold {} entries but the model produced {} predictions", labels.size(), rows);
  }
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (argmax(values.data() + r * classes, classes) == labels[static_cast<size_t>(r)]) ++correct;
  }
  return rows ? static_cast<double>(correct) / static_cast<double>(rows) : 0.0;
}

int64_t classes_of(const Outputs& o, size_t index) {
  int64_t rows = 0, classes = 0;
  if (o.per_sample.empty() || !classifier_view(o.per_sample[0][index].shape(), rows, classes)) {
    fail("output '{}' is not classifier-like ([N, C]); labels need one", o.names[index]);
  }
  return classes;
}

}  // namespace

Comparison compare_outputs(const Outputs& reference, const Outputs& candidate, const Array* labels,
                           const std::string& label_output) {
  Comparison c;
  c.samples = reference.per_sample.size();
  c.reference_seconds = reference.seconds;
  c.candidate_seconds = candidate.seconds;
  if (reference.names.size() != candidate.names.size()) {
    fail("the models have different numbers of outputs ({} and {})", reference.names.size(), candidate.names.size());
  }
  for (size_t o = 0; o < reference.names.size(); ++o) {
    OutputMetrics m;
    m.name = reference.names[o];
    double sum_abs = 0, sum_sq_ref = 0, sum_sq_err = 0, dot = 0, sum_sq_cand = 0;
    for (size_t s = 0; s < reference.per_sample.size(); ++s) {
      const Array& r = reference.per_sample[s][o];
      const Array& k = candidate.per_sample[s][o];
      if (r.shape() != k.shape()) {
        fail("output '{}' has shape {} in the original and {} in the new model", m.name, exec::shape_string(r.shape()),
             exec::shape_string(k.shape()));
      }
      std::vector<double> rv = r.to_doubles(), kv = k.to_doubles();
      for (size_t i = 0; i < rv.size(); ++i) {
        double a = rv[i], b = kv[i];
        if (!std::isfinite(a) || !std::isfinite(b)) {
          bool same = (std::isnan(a) && std::isnan(b)) || a == b;
          if (!same) ++m.nonfinite_mismatches;
          continue;
        }
        double e = std::abs(a - b);
        m.max_abs_error = std::max(m.max_abs_error, e);
        sum_abs += e;
        sum_sq_err += e * e;
        sum_sq_ref += a * a;
        sum_sq_cand += b * b;
        dot += a * b;
      }
      m.elements += rv.size();
      int64_t rows = 0, classes = 0;
      if (classifier_view(r.shape(), rows, classes)) {
        m.classifier = true;
        m.rows += static_cast<uint64_t>(rows);
        double same1 = 0, same5 = 0;
        for (int64_t row = 0; row < rows; ++row) {
          const double* rr = rv.data() + row * classes;
          const double* kr = kv.data() + row * classes;
          int64_t ref_top = argmax(rr, classes);
          if (argmax(kr, classes) == ref_top) ++same1;
          if (in_top_k(kr, classes, ref_top, 5)) ++same5;
        }
        m.top1_agreement += same1;
        if (classes >= 5) m.top5_agreement = m.top5_agreement.value_or(0) + same5;
      }
    }
    double n = static_cast<double>(std::max<uint64_t>(m.elements, 1));
    m.mean_abs_error = sum_abs / n;
    m.relative_l2 = sum_sq_ref > 0 ? std::sqrt(sum_sq_err / sum_sq_ref) : (sum_sq_err > 0 ? INFINITY : 0.0);
    double denom = std::sqrt(sum_sq_ref) * std::sqrt(sum_sq_cand);
    m.cosine = denom > 0 ? dot / denom : (sum_sq_ref == 0 && sum_sq_cand == 0 ? 1.0 : 0.0);
    m.snr_db = sum_sq_err > 0 ? 10.0 * std::log10(sum_sq_ref / sum_sq_err) : INFINITY;
    if (m.classifier && m.rows) {
      m.top1_agreement /= static_cast<double>(m.rows);
      if (m.top5_agreement) *m.top5_agreement /= static_cast<double>(m.rows);
    }
    c.outputs.push_back(m);
  }
  if (labels) {
    LabelMetrics ref = label_accuracy(reference, *labels, label_output);
    LabelMetrics cand = label_accuracy(candidate, *labels, label_output);
    ref.candidate_accuracy = cand.reference_accuracy;
    c.labels = ref;
  }
  return c;
}

LabelMetrics label_accuracy(const Outputs& outputs, const Array& labels, const std::string& label_output) {
  size_t index = 0;
  if (!label_output.empty()) {
    index = output_index(outputs, label_output);
  } else {
    bool found = false;
    for (size_t i = 0; i < outputs.names.size() && !found; ++i) {
      int64_t rows = 0, classes = 0;
      if (!outputs.per_sample.empty() && classifier_view(outputs.per_sample[0][i].shape(), rows, classes)) {
        index = i;
        found = true;
      }
    }
    if (!found) fail("no classifier-like output ([N, C]) to score labels against; name one with --output");
  }
  LabelMetrics m;
  m.output = outputs.names[index];
  std::vector<int64_t> y = labels.to_int64s();
  m.count = y.size();
  m.reference_accuracy = accuracy_of(concat_doubles(outputs, index), classes_of(outputs, index), y);
  return m;
}

Comparison Evaluation::evaluate(const ir::Model& model) const {
  Outputs candidate = run_samples(model, samples, threads);
  return compare_outputs(reference, candidate, labels ? &*labels : nullptr, label_output);
}

std::optional<double> accuracy_drop_points(const Comparison& c, std::string* basis) {
  if (c.labels) {
    if (basis) *basis = "labelled accuracy";
    return c.labels->drop() * 100.0;
  }
  if (const OutputMetrics* m = pick_label_output(c.outputs, "")) {
    if (basis) *basis = fmt::format("top-1 disagreement with the original on '{}'", m->name);
    return (1.0 - m->top1_agreement) * 100.0;
  }
  return std::nullopt;
}

std::vector<GateResult> check_gates(const Gates& gates, const Comparison* c, uint64_t output_bytes) {
  std::vector<GateResult> out;
  if (gates.max_accuracy_drop) {
    GateResult g{"max-accuracy-drop", false, "", fmt::format("{:.2f} pp", *gates.max_accuracy_drop), ""};
    std::string basis;
    const std::optional<double> drop = c ? accuracy_drop_points(*c, &basis) : std::nullopt;
    if (!drop) {
      g.measured = "not measurable";
      g.message = "accuracy drop not measurable: no labels and no classifier-like output (gate fails)";
    } else {
      g.passed = *drop <= *gates.max_accuracy_drop + 1e-9;
      g.measured = fmt::format("{:.2f} pp", *drop);
      g.message = fmt::format("accuracy drop {:.2f} pp ({}) {} the limit of {:.2f} pp{}", *drop, basis,
                              g.passed ? "is within" : "exceeds", *gates.max_accuracy_drop,
                              g.passed ? "" : fmt::format(" by {:.2f} pp", *drop - *gates.max_accuracy_drop));
    }
    out.push_back(g);
  }
  if (gates.min_cosine) {
    GateResult g{"min-cosine", false, "", fmt::format("{:.6f}", *gates.min_cosine), ""};
    if (!c || c->outputs.empty()) {
      g.measured = "not measurable";
      g.message = "cosine similarity not measurable: accuracy was not evaluated (gate fails)";
    } else {
      const OutputMetrics* worst = &c->outputs[0];
      for (const OutputMetrics& m : c->outputs) {
        if (m.cosine < worst->cosine) worst = &m;
      }
      g.passed = worst->cosine >= *gates.min_cosine;
      g.measured = fmt::format("{:.6f}", worst->cosine);
      g.message = fmt::format("lowest cosine similarity {:.6f} (output '{}') {} the minimum {:.6f}{}", worst->cosine,
                              worst->name, g.passed ? "meets" : "is below", *gates.min_cosine,
                              g.passed ? "" : fmt::format(" by {:.6f}", *gates.min_cosine - worst->cosine));
    }
    out.push_back(g);
  }
  if (gates.max_size) {
    GateResult g{"max-size", output_bytes <= *gates.max_size, std::to_string(output_bytes), std::to_string(*gates.max_size), ""};
    g.message = fmt::format("output size {} bytes {} the limit of {} bytes{}", output_bytes, g.passed ? "is within" : "exceeds",
                            *gates.max_size, g.passed ? "" : fmt::format(" by {} bytes", output_bytes - *gates.max_size));
    out.push_back(g);
  }
  return out;
}

static nlohmann::json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

nlohmann::json to_json(const Comparison& c) {
  nlohmann::json j;
  j["data"] = c.data;
  j["samples"] = c.samples;
  j["seconds"] = {{"original", c.reference_seconds}, {"optimized", c.candidate_seconds}};
  j["outputs"] = nlohmann::json::array();
  for (const OutputMetrics& m : c.outputs) {
    nlohmann::json o = {{"name", m.name},
                        {"elements", m.elements},
                        {"max_abs_error", number(m.max_abs_error)},
                        {"mean_abs_error", number(m.mean_abs_error)},
                        {"relative_l2_error", number(m.relative_l2)},
                        {"cosine_similarity", number(m.cosine)},
                        {"snr_db", number(m.snr_db)},
                        {"nonfinite_mismatches", m.nonfinite_mismatches}};
    if (m.classifier) {
      o["rows"] = m.rows;
      o["top1_agreement"] = m.top1_agreement;
      if (m.top5_agreement) o["top5_agreement"] = *m.top5_agreement;
    }
    j["outputs"].push_back(o);
  }
  if (c.labels) {
    j["labels"] = {{"output", c.labels->output},
                   {"count", c.labels->count},
                   {"original_accuracy", c.labels->reference_accuracy},
                   {"optimized_accuracy", c.labels->candidate_accuracy},
                   {"accuracy_drop", c.labels->drop()}};
  }
  return j;
}

nlohmann::json to_json(const std::vector<GateResult>& gates) {
  nlohmann::json j = nlohmann::json::array();
  for (const GateResult& g : gates) {
    j.push_back({{"gate", g.gate}, {"passed", g.passed}, {"measured", g.measured}, {"limit", g.limit}, {"message", g.message}});
  }
  return j;
}

std::string summary(const Comparison& c) {
  std::string s = fmt::format("accuracy on {} ({} sample{}):\n", c.data, c.samples, c.samples == 1 ? "" : "s");
  for (const OutputMetrics& m : c.outputs) {
    s += fmt::format("  {:<24} max|err| {:.3g}  mean|err| {:.3g}  rel-L2 {:.3g}  cosine {:.6f}  SNR {:.1f} dB", m.name,
                     m.max_abs_error, m.mean_abs_error, m.relative_l2, m.cosine, m.snr_db);
    if (m.classifier) {
      s += fmt::format("  top-1 agree {:.2f}%", m.top1_agreement * 100);
      if (m.top5_agreement) s += fmt::format("  top-5 {:.2f}%", *m.top5_agreement * 100);
    }
    s += "\n";
  }
  if (c.labels) {
    s += fmt::format("  labels ({} on '{}'): original {:.2f}%  optimized {:.2f}%  drop {:+.2f} pp\n", c.labels->count,
                     c.labels->output, c.labels->reference_accuracy * 100, c.labels->candidate_accuracy * 100,
                     c.labels->drop() * 100);
  }
  return s;
}

}  // namespace mopt::eval
