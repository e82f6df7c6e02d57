// Output comparison metrics, label accuracy and quality gates.
#include "eval/accuracy.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <set>

#include "exec/executor.h"
#include "util/error.h"
#include "util/log.h"

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

std::pair<std::string, std::string> parse_feedback(const ir::Model& model, const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    usage_error("--feedback expects OUTPUT=INPUT (an output fed back as the next sample's input), got '{}'", spec);
  std::string out = spec.substr(0, eq), in = spec.substr(eq + 1);
  std::vector<std::string> outputs, inputs;
  for (const ir::Value* v : model.graph().outputs()) outputs.push_back(v->name());
  for (const data::InputSpec& i : data::model_inputs(model)) inputs.push_back(i.name);
  if (std::find(outputs.begin(), outputs.end(), out) == outputs.end())
    usage_error("--feedback {}: the model has no output named '{}' (outputs: {})", spec, out, fmt::join(outputs, ", "));
  if (std::find(inputs.begin(), inputs.end(), in) == inputs.end())
    usage_error("--feedback {}: the model has no input named '{}' (inputs: {})", spec, in, fmt::join(inputs, ", "));
  return {out, in};
}

namespace {

// Runs `samples` through `executor` in order, feeding back outputs; calls `each(feeds, outputs)`.
template <typename Each>
void run_sequence(const ir::Model& model, exec::Executor& executor, const std::vector<data::Feeds>& samples,
                  const Feedback& feedback, Each&& each) {
  // A model converted to float16 with its inputs converted too (convert --no-keep-io-types) is fed the
  // same samples as the original, rounded to its input type as a caller of the converted model would.
  std::map<std::string, int32_t> float_inputs;
  for (const ir::Value* v : model.graph().inputs()) {
    const int32_t t = v->info().type().tensor_type().elem_type();
    if (exec::is_16bit_float(t)) float_inputs[v->name()] = t;
  }
  std::vector<size_t> feedback_outputs;
  for (const auto& [out, in] : feedback) {
    size_t index = 0;
    while (index < model.graph().outputs().size() && model.graph().outputs()[index]->name() != out) ++index;
    if (index == model.graph().outputs().size()) fail("--feedback: the model has no output named '{}'", out);
    feedback_outputs.push_back(index);
  }
  std::vector<Array> previous;
  for (size_t s = 0; s < samples.size(); ++s) {
    data::Feeds feeds = samples[s];
    for (size_t f = 0; f < feedback.size() && s > 0; ++f) feeds[feedback[f].second] = previous[feedback_outputs[f]];
    for (auto& [name, array] : feeds) {
      auto it = float_inputs.find(name);
      if (it != float_inputs.end() && array.dtype() == ir::dtype::kFloat) array = exec::cast(array, it->second);
    }
    std::vector<Array> outputs = executor.run(feeds);
    each(feeds, outputs);
    if (!feedback.empty()) previous = std::move(outputs);
  }
}

}  // namespace

double scaled_max_difference(const Array& reference, const Array& candidate) {
  const std::vector<double> a = reference.to_doubles(), b = candidate.to_doubles();
  if (a.size() != b.size()) return INFINITY;
  double scale = 1, worst = 0;
  for (double v : a) {
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    const double d = a[i] == b[i] ? 0.0 : std::abs(a[i] - b[i]);
    if (!(d <= worst)) worst = std::isfinite(d) ? d : INFINITY;  // NaN compares false: counts as infinite
  }
  return worst / scale;
}

Outputs run_samples(const ir::Model& model, const std::vector<data::Feeds>& samples, int threads, const Feedback& feedback,
                    exec::Float16Compute float16) {
  Outputs out;
  exec::ExecutorOptions options;
  options.threads = threads;
  options.float16 = float16;
  exec::Executor executor(model, options);
  for (const ir::Value* v : model.graph().outputs()) out.names.push_back(v->name());
  auto start = std::chrono::steady_clock::now();
  log::Phase phase("running", samples.size(), "samples");
  run_sequence(model, executor, samples, feedback, [&](const data::Feeds&, const std::vector<Array>& outputs) {
    out.per_sample.push_back(outputs);
    phase.advance();
  });
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

std::vector<data::Feeds> carry_state(const ir::Model& model, std::vector<data::Feeds> samples, const Feedback& feedback,
                                     int threads) {
  if (feedback.empty()) return samples;
  exec::Executor executor(model, exec::ExecutorOptions{threads, false, nullptr});
  std::vector<data::Feeds> out;
  run_sequence(model, executor, samples, feedback, [&](const data::Feeds& feeds, const std::vector<Array>&) { out.push_back(feeds); });
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

namespace {

// Below this RMS an output is "near zero": its direction (cosine) and its SNR are noise.
constexpr double kNearZeroRms = 1e-6;

}  // namespace

void MetricAccumulator::add(const std::vector<double>& reference, const std::vector<double>& candidate) {
  for (size_t i = 0; i < reference.size() && i < candidate.size(); ++i) {
    const double a = reference[i], b = candidate[i];
    if (!std::isfinite(a) || !std::isfinite(b)) {
      const bool same = (std::isnan(a) && std::isnan(b)) || a == b;
      if (!same) ++nonfinite_mismatches_;
      if (!same && std::isfinite(a)) ++new_nonfinite_;
      continue;
    }
    const double e = std::abs(a - b);
    max_abs_ = std::max(max_abs_, e);
    sum_abs_ += e;
    sum_sq_err_ += e * e;
    sum_sq_ref_ += a * a;
    sum_sq_cand_ += b * b;
    dot_ += a * b;
  }
  elements_ += reference.size();
}

OutputMetrics MetricAccumulator::finish(const std::string& name) const {
  OutputMetrics m;
  m.name = name;
  m.elements = elements_;
  m.nonfinite_mismatches = nonfinite_mismatches_;
  m.new_nonfinite = new_nonfinite_;
  m.max_abs_error = max_abs_;
  const double n = static_cast<double>(std::max<uint64_t>(elements_, 1));
  m.mean_abs_error = sum_abs_ / n;
  const double rms_ref = std::sqrt(sum_sq_ref_ / n), rms_cand = std::sqrt(sum_sq_cand_ / n);
  if (m.broken()) {
    m.max_abs_error = m.relative_l2 = INFINITY;
    m.undefined_reason = fmt::format("the optimized model produced {} NaN/Inf value{} where the original is finite",
                                     m.new_nonfinite, m.new_nonfinite == 1 ? "" : "s");
  } else if (rms_ref <= kNearZeroRms && rms_cand <= kNearZeroRms) {
    m.relative_l2 = sum_sq_ref_ > 0 ? std::sqrt(sum_sq_err_ / sum_sq_ref_) : (sum_sq_err_ > 0 ? INFINITY : 0.0);
    m.undefined_reason = fmt::format("both outputs are near zero (RMS {:.3g} and {:.3g}): cosine and SNR say nothing; "
                                     "see max|err|, or measure on real data",
                                     rms_ref, rms_cand);
  } else if (sum_sq_ref_ == 0) {
    m.relative_l2 = INFINITY;
    m.undefined_reason = "the original output is all zeros: cosine and SNR are undefined; see max|err|";
  } else {
    m.relative_l2 = std::sqrt(sum_sq_err_ / sum_sq_ref_);
    const double denom = std::sqrt(sum_sq_ref_) * std::sqrt(sum_sq_cand_);
    m.cosine = denom > 0 ? std::clamp(dot_ / denom, -1.0, 1.0) : 0.0;  // an all-zero candidate has collapsed
    m.snr_db = sum_sq_err_ > 0 ? 10.0 * std::log10(sum_sq_ref_ / sum_sq_err_) : INFINITY;
  }
  return m;
}

namespace {

enum class Scored { No, Classes, Binary };

// A binary decision output: one value per row ([N], [N, 1], [1, 1]) holding probabilities (every value of
// the reference in [0, 1] on every sample); its decision is p > 0.5.
bool binary_view(const Outputs& reference, size_t o, int64_t& rows) {
  const exec::Shape& shape = reference.per_sample[0][o].shape();
  if (shape.empty()) return false;
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] != 1) return false;
  }
  for (const auto& sample : reference.per_sample) {
    if (!exec::is_16bit_float(sample[o].dtype()) && sample[o].dtype() != ir::dtype::kFloat && sample[o].dtype() != ir::dtype::kDouble)
      return false;
    for (double v : sample[o].to_doubles()) {
      if (!(v >= 0 && v <= 1)) return false;
    }
  }
  rows = shape[0];
  return true;
}

// Which outputs `classifier_output` selects: "" every classifier-like one, "none" none, or one by name (it
// must be classifier-like).
std::vector<Scored> classifier_outputs(const Outputs& reference, const std::string& classifier_output, std::string* note) {
  std::vector<Scored> out(reference.names.size(), Scored::No);
  if (reference.per_sample.empty() || classifier_output == "none") {
    if (note) *note = classifier_output == "none" ? "no output scored as a classifier (--classifier-output none)" : "";
    return out;
  }
  std::vector<std::string> picked;
  for (size_t o = 0; o < reference.names.size(); ++o) {
    if (!classifier_output.empty() && reference.names[o] != classifier_output) continue;
    const exec::Shape& shape = reference.per_sample[0][o].shape();
    int64_t rows = 0, classes = 0;
    if (classifier_view(shape, rows, classes)) {
      out[o] = Scored::Classes;
      picked.push_back(fmt::format("'{}' {} (top-1 of C)", reference.names[o], exec::shape_string(shape)));
    } else if (binary_view(reference, o, rows)) {
      out[o] = Scored::Binary;
      picked.push_back(fmt::format("'{}' {} (binary decision p > 0.5: values in [0, 1])", reference.names[o], exec::shape_string(shape)));
    } else if (!classifier_output.empty()) {
      usage_error("--classifier-output {}: the output has shape {}: neither [N, C] with C >= 2 (after dropping unit dims) nor "
                  "one probability per row",
                  classifier_output, exec::shape_string(shape));
    }
  }
  if (!classifier_output.empty() && picked.empty())
    usage_error("--classifier-output {}: the model has no output named '{}' (outputs: {})", classifier_output, classifier_output,
                fmt::join(reference.names, ", "));
  if (note) {
    *note = picked.empty() ? "no output is classifier-like ([N, C] with C >= 2, or one probability per row), so there is no "
                             "top-1 agreement"
            : classifier_output.empty()
                ? fmt::format("scored as classifier{} by shape: {} (set with --classifier-output NAME|none)",
                              picked.size() == 1 ? "" : "s", fmt::join(picked, ", "))
                : fmt::format("scored as classifier (--classifier-output): {}", picked[0]);
  }
  return out;
}

}  // namespace

Comparison compare_outputs(const Outputs& reference, const Outputs& candidate, const Array* labels,
                           const std::string& classifier_output) {
  Comparison c;
  c.samples = reference.per_sample.size();
  c.reference_seconds = reference.seconds;
  c.candidate_seconds = candidate.seconds;
  if (reference.names.size() != candidate.names.size()) {
    fail("the models have different numbers of outputs ({} and {})", reference.names.size(), candidate.names.size());
  }
  const std::vector<Scored> scored = classifier_outputs(reference, classifier_output, &c.classifier_note);
  for (size_t o = 0; o < reference.names.size(); ++o) {
    MetricAccumulator acc;
    double top1 = 0, top5 = 0;
    uint64_t rows_total = 0;
    bool classifier = false, has_top5 = false;
    for (size_t s = 0; s < reference.per_sample.size(); ++s) {
      const Array& r = reference.per_sample[s][o];
      const Array& k = candidate.per_sample[s][o];
      if (r.shape() != k.shape()) {
        fail("output '{}' has shape {} in the original and {} in the new model", reference.names[o],
             exec::shape_string(r.shape()), exec::shape_string(k.shape()));
      }
      const std::vector<double> rv = r.to_doubles(), kv = k.to_doubles();
      acc.add(rv, kv);
      int64_t rows = 0, classes = 0;
      if (scored[o] == Scored::Binary) {
        classifier = true;
        rows_total += static_cast<uint64_t>(rv.size());
        for (size_t i = 0; i < rv.size(); ++i) top1 += (rv[i] > 0.5) == (kv[i] > 0.5) ? 1 : 0;
      } else if (scored[o] == Scored::Classes && classifier_view(r.shape(), rows, classes)) {
        classifier = true;
        rows_total += static_cast<uint64_t>(rows);
        for (int64_t row = 0; row < rows; ++row) {
          const double* rr = rv.data() + row * classes;
          const double* kr = kv.data() + row * classes;
          const int64_t ref_top = argmax(rr, classes);
          if (argmax(kr, classes) == ref_top) ++top1;
          if (in_top_k(kr, classes, ref_top, 5)) ++top5;
        }
        has_top5 = has_top5 || classes >= 5;
      }
    }
    OutputMetrics m = acc.finish(reference.names[o]);
    if (classifier && rows_total) {
      m.classifier = true;
      m.rows = rows_total;
      m.top1_agreement = top1 / static_cast<double>(rows_total);
      if (has_top5) m.top5_agreement = top5 / static_cast<double>(rows_total);
    }
    c.outputs.push_back(m);
  }
  if (labels) {
    if (classifier_output == "none") usage_error("--labels score a classifier output; drop --classifier-output none");
    LabelMetrics ref = label_accuracy(reference, *labels, classifier_output);
    LabelMetrics cand = label_accuracy(candidate, *labels, classifier_output);
    ref.candidate_accuracy = cand.reference_accuracy;
    c.labels = ref;
  }
  return c;
}

LabelMetrics label_accuracy(const Outputs& outputs, const Array& labels, const std::string& label_output) {
  size_t index = 0;
  if (!label_output.empty() && label_output != "none") {
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
    if (!found) fail("no classifier-like output ([N, C]) to score labels against; name one with --classifier-output");
  }
  LabelMetrics m;
  m.output = outputs.names[index];
  std::vector<int64_t> y = labels.to_int64s();
  m.count = y.size();
  m.reference_accuracy = accuracy_of(concat_doubles(outputs, index), classes_of(outputs, index), y);
  return m;
}

Outputs Evaluation::run(const ir::Model& model, exec::Float16Compute float16) const {
  if (input_names.empty()) return run_samples(model, samples, threads, feedback, float16);
  std::vector<data::Feeds> fed;
  for (const data::Feeds& f : samples) fed.push_back(data::feeds_for(model, input_names, f));
  return run_samples(model, fed, threads, feedback, float16);
}

Comparison Evaluation::evaluate(const ir::Model& model, exec::Float16Compute float16) const {
  Outputs candidate = run(model, float16);
  Comparison c = compare_outputs(reference, candidate, labels ? &*labels : nullptr, classifier_output);
  c.data = source;
  return c;
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

namespace {

const OutputMetrics* first_broken(const Comparison& c) {
  for (const OutputMetrics& m : c.outputs) {
    if (m.broken()) return &m;
  }
  return nullptr;
}

std::string broken_message(const OutputMetrics& m) { return fmt::format("output '{}': {}", m.name, m.undefined_reason); }

}  // namespace

std::vector<data::Feeds> load_calibration(const ir::Model& model, const std::string& path, const Evaluation* evaluation) {
  std::vector<data::Feeds> samples = data::load_samples(model, path);
  if (evaluation && !evaluation->holdout_of.empty() && evaluation->holdout_of == path) samples = data::split_holdout(std::move(samples)).calibration;
  // A sequence calibrates on the states the model itself carries through it.
  if (evaluation && !evaluation->feedback.empty()) samples = carry_state(model, std::move(samples), evaluation->feedback, evaluation->threads);
  return samples;
}

std::optional<double> lowest_cosine(const Comparison& c) {
  std::optional<double> worst;
  for (const OutputMetrics& m : c.outputs) {
    if (m.broken() || !m.cosine) return std::nullopt;
    worst = std::min(worst.value_or(1.0), *m.cosine);
  }
  return worst;
}

void require_real_data(const DataSource& source, const std::string& what) {
  if (!source.is_random() || source.random_requested) return;
  usage_error("{} would decide on random inputs, which say nothing about accuracy on real data; give real inputs "
              "(--accuracy DATA, or --data DATA for compare and calibration), or ask for random data explicitly "
              "(--accuracy random) to accept a verdict on it",
              what);
}

Verdict judge(const Comparison& c, const Thresholds& t) {
  Verdict v;
  std::vector<std::pair<double, std::string>> reasons;  // (severity, line): broken first, then by how far off
  std::set<std::string> worst;
  bool judged = false;
  for (const OutputMetrics& m : c.outputs) {
    if (m.broken()) {
      reasons.emplace_back(1e9, broken_message(m));
      worst.insert(m.name);
      judged = true;
      continue;
    }
    if (m.cosine) {
      judged = true;
      if (*m.cosine < t.min_cosine) {
        reasons.emplace_back(t.min_cosine - *m.cosine,
                             fmt::format("output '{}': cosine {:.6f} < {:.2f}", m.name, *m.cosine, t.min_cosine));
        worst.insert(m.name);
      }
    }
  }
  std::string basis;
  if (std::optional<double> drop = accuracy_drop_points(c, &basis)) {
    judged = true;
    if (*drop > t.max_drop_points + 1e-9) {
      reasons.emplace_back(*drop / 100.0, fmt::format("{}: {:.2f} pp > {:.2f} pp", basis, *drop, t.max_drop_points));
      if (c.labels) worst.insert(c.labels->output);
    }
  }
  std::stable_sort(reasons.begin(), reasons.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& r : reasons) v.reasons.push_back(std::move(r.second));
  v.worst_outputs.assign(worst.begin(), worst.end());
  if (!v.reasons.empty()) v.status = "degraded";
  else if (!judged) {
    v.status = "not-judged";
    for (const OutputMetrics& m : c.outputs) {
      if (!m.undefined_reason.empty()) v.reasons.push_back(fmt::format("output '{}': {}", m.name, m.undefined_reason));
    }
    if (c.outputs.empty()) v.reasons.push_back("the model has no outputs to compare");
  }
  return v;
}

std::vector<GateResult> check_gates(const Gates& gates, const Comparison* c, uint64_t output_bytes) {
  std::vector<GateResult> out;
  const OutputMetrics* broken = c ? first_broken(*c) : nullptr;
  // Every gate fails on an output that became NaN/Inf: no number measured on it means anything.
  auto fail_broken = [&](GateResult& g) {
    g.passed = false;
    g.measured.reset();
    g.verdict.clear();
    g.unmeasured_reason = "broken";
    g.message = fmt::format("{} (every gate fails)", broken_message(*broken));
  };
  if (gates.max_accuracy_drop) {
    GateResult g{"max-accuracy-drop", false, std::nullopt, *gates.max_accuracy_drop, "pp", "", "", ""};
    std::string basis;
    const std::optional<double> drop = c ? accuracy_drop_points(*c, &basis) : std::nullopt;
    if (broken) {
      fail_broken(g);
    } else if (!drop) {
      g.unmeasured_reason = "not measurable";
      g.message = "accuracy drop not measurable: no labels and no classifier-like output (gate fails)";
    } else {
      g.passed = *drop <= *gates.max_accuracy_drop + 1e-9;
      g.measured = *drop;
      g.message = fmt::format("accuracy drop {:.2f} pp ({}) {} the limit of {:.2f} pp{}", *drop, basis,
                              g.passed ? "is within" : "exceeds", *gates.max_accuracy_drop,
                              g.passed ? "" : fmt::format(" by {:.2f} pp", *drop - *gates.max_accuracy_drop));
    }
    out.push_back(g);
  }
  if (gates.min_cosine) {
    GateResult g{"min-cosine", false, std::nullopt, *gates.min_cosine, "cosine", "", "", ""};
    const OutputMetrics* worst = nullptr;
    const OutputMetrics* undefined = nullptr;
    if (c) {
      for (const OutputMetrics& m : c->outputs) {
        if (!m.cosine) undefined = undefined ? undefined : &m;
        else if (worst == nullptr || *m.cosine < *worst->cosine) worst = &m;
      }
    }
    if (broken) {
      fail_broken(g);
    } else if (!c || c->outputs.empty()) {
      g.unmeasured_reason = "not measurable";
      g.message = "cosine similarity not measurable: accuracy was not evaluated (gate fails)";
    } else if (undefined) {
      g.unmeasured_reason = "not measurable";
      g.message = fmt::format("cosine similarity of output '{}' is undefined: {} (gate fails)", undefined->name,
                              undefined->undefined_reason);
    } else {
      g.passed = *worst->cosine >= *gates.min_cosine;
      g.measured = *worst->cosine;
      g.message = fmt::format("lowest cosine similarity {:.6f} (output '{}') {} the minimum {:.6f}{}", *worst->cosine,
                              worst->name, g.passed ? "meets" : "is below", *gates.min_cosine,
                              g.passed ? "" : fmt::format(" by {:.6f}", *gates.min_cosine - *worst->cosine));
    }
    out.push_back(g);
  }
  if (gates.max_size) {
    GateResult g{"max-size", output_bytes <= *gates.max_size, static_cast<double>(output_bytes), static_cast<double>(*gates.max_size),
                 "bytes", "", "", ""};
    g.message = fmt::format("output size {} bytes {} the limit of {} bytes{}", output_bytes, g.passed ? "is within" : "exceeds",
                            *gates.max_size, g.passed ? "" : fmt::format(" by {} bytes", output_bytes - *gates.max_size));
    if (broken) fail_broken(g);
    out.push_back(g);
  }
  if (gates.fail_on_degraded) {
    GateResult g{"fail-on-degraded", false, std::nullopt, std::nullopt, "", "", "", ""};
    if (!c) {
      g.unmeasured_reason = "not measurable";
      g.message = "accuracy was not evaluated (gate fails)";
    } else {
      const Verdict v = judge(*c);
      g.passed = v.status == "ok";
      g.verdict = v.status;
      g.message = v.status == "ok" ? "the result is not degraded"
                  : fmt::format("the result is {}: {}", v.status == "degraded" ? "DEGRADED" : "not judged",
                                v.reasons.empty() ? "" : v.reasons[0]);
    }
    out.push_back(g);
  }
  return out;
}

// A metric as a JSON number; a non-finite one is null and named in `nonfinite` (JSON has no NaN or infinity).
static nlohmann::json number(const char* name, double v, std::vector<std::string>& nonfinite) {
  if (std::isfinite(v)) return v;
  nonfinite.push_back(fmt::format("{} is {}", name, std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf"));
  return nullptr;
}

nlohmann::json to_json(const DataSource& d) {
  nlohmann::json j = {{"kind", d.kind}, {"description", d.description}};
  if (!d.note.empty()) j["note"] = d.note;
  return j;
}

nlohmann::json to_json(const Verdict& v) {
  return {{"status", v.status}, {"reasons", v.reasons}, {"worst_outputs", v.worst_outputs},
          {"thresholds", {{"min_cosine", Thresholds{}.min_cosine}, {"max_drop_pp", Thresholds{}.max_drop_points}}}};
}

nlohmann::json to_json(const Comparison& c) {
  nlohmann::json j;
  j["data"] = to_json(c.data);
  j["samples"] = c.samples;
  if (!c.classifier_note.empty()) j["classifier"] = c.classifier_note;
  j["seconds"] = {{"original", c.reference_seconds}, {"optimized", c.candidate_seconds}};
  j["outputs"] = nlohmann::json::array();
  for (const OutputMetrics& m : c.outputs) {
    std::vector<std::string> nonfinite;
    nlohmann::json o = {{"name", m.name},
                        {"elements", m.elements},
                        {"max_abs_error", number("max_abs_error", m.max_abs_error, nonfinite)},
                        {"mean_abs_error", number("mean_abs_error", m.mean_abs_error, nonfinite)},
                        {"relative_l2_error", number("relative_l2_error", m.relative_l2, nonfinite)},
                        {"cosine_similarity", m.cosine ? nlohmann::json(*m.cosine) : nlohmann::json(nullptr)},
                        {"snr_db", m.snr_db ? number("snr_db", *m.snr_db, nonfinite) : nlohmann::json(nullptr)},
                        {"nonfinite_mismatches", m.nonfinite_mismatches},
                        {"new_nonfinite", m.new_nonfinite}};
    std::string reason = m.undefined_reason;
    for (const std::string& n : nonfinite) reason += (reason.empty() ? "" : "; ") + n;
    if (!reason.empty()) o["undefined_reason"] = reason;
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
                   {"accuracy_drop_pp", 100.0 * c.labels->drop()}};
  }
  j["verdict"] = to_json(judge(c));
  return j;
}

nlohmann::json to_json(const std::vector<GateResult>& gates) {
  nlohmann::json j = nlohmann::json::array();
  for (const GateResult& g : gates) {
    nlohmann::json entry = {{"gate", g.gate},
                            {"passed", g.passed},
                            {"measured", g.measured ? nlohmann::json(*g.measured) : nlohmann::json(nullptr)},
                            {"limit", g.limit ? nlohmann::json(*g.limit) : nlohmann::json(nullptr)},
                            {"unit", g.unit.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.unit)},
                            {"message", g.message}};
    if (!g.verdict.empty()) entry["verdict"] = g.verdict;
    else if (!g.measured) entry["unmeasured_reason"] = g.unmeasured_reason;
    j.push_back(std::move(entry));
  }
  return j;
}

std::string summary(const Comparison& c) {
  std::string s = fmt::format("accuracy on {} ({} sample{}):\n", c.data.description, c.samples, c.samples == 1 ? "" : "s");
  if (!c.data.note.empty()) s += fmt::format("  note: {}\n", c.data.note);
  for (const OutputMetrics& m : c.outputs) {
    s += fmt::format("  {:<24} max|err| {:.3g}  mean|err| {:.3g}  rel-L2 {:.3g}", m.name, m.max_abs_error, m.mean_abs_error,
                     m.relative_l2);
    if (m.cosine) s += fmt::format("  cosine {:.6f}  SNR {:.1f} dB", *m.cosine, *m.snr_db);
    else s += "  cosine n/a";
    if (m.classifier) {
      s += fmt::format("  top-1 agree {:.2f}%", m.top1_agreement * 100);
      if (m.top5_agreement) s += fmt::format("  top-5 {:.2f}%", *m.top5_agreement * 100);
    }
    s += "\n";
    if (!m.undefined_reason.empty()) s += fmt::format("    {}\n", m.undefined_reason);
  }
  if (c.labels) {
    s += fmt::format("  labels ({} on '{}'): original {:.2f}%  optimized {:.2f}%  drop {:+.2f} pp\n", c.labels->count,
                     c.labels->output, c.labels->reference_accuracy * 100, c.labels->candidate_accuracy * 100,
                     c.labels->drop() * 100);
  }
  return s;
}

std::string summary(const Verdict& v, const DataSource& source) {
  const std::string on = source.is_random() ? "random inputs (not real data: pass --accuracy DATA for a real verdict)"
                                            : source.description;
  if (v.status == "ok") return fmt::format("verdict: ok on {}", on);
  return fmt::format("verdict: {} on {}: {}", v.status == "degraded" ? "DEGRADED" : "NOT JUDGED", on, fmt::join(v.reasons, "; "));
}

}  // namespace mopt::eval
