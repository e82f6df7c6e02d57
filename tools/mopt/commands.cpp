// The commands that read models without rewriting them: compare, run, bench, inspect, and passes (the
// registry, as text, JSON or the README's Markdown table).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>

#include "cli.h"
#include "data/npy.h"
#include "eval/layers.h"
#include "exec/executor.h"
#include "io/model_io.h"
#include "ir/verify.h"
#include "pass/preset.h"
#include "report/html.h"
#include "report/markdown.h"
#include "report/stats.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

namespace mopt::cli {

namespace fs = std::filesystem;

int run_compare_command(const std::string& original_path, const std::string& candidate_path, const DataFlags& f,
                        const GateFlags& gate_flags, const std::string& report_path, const std::string& html_path, bool json, bool per_layer,
                        Outcome& outcome) {
  report::Invocation invocation{outcome.command_line};
  // The documents never replace a model (or each other).
  for (const std::string& document : {report_path, html_path}) {
    if (document.empty()) continue;
    for (const std::string& model : {original_path, candidate_path}) {
      if (document == model || same_file(document, model)) usage_error("'{}' is a model being compared, not a place for the report", document);
    }
  }
  if (!report_path.empty() && report_path == html_path) usage_error("--report and --html name the same file");
  io::LoadInfo original_info, info;
  auto original = io::load_model(original_path, &original_info);
  auto candidate = io::load_model(candidate_path, &info);
  driver::AccuracyRequest request = accuracy_request(f);
  eval::DataSource source;
  std::vector<std::string> warnings;
  request.decisions = accuracy_decisions(gate_flags);
  driver::refuse_decisions_on_unasked_random(request);
  std::vector<data::Feeds> samples = driver::load_or_generate_samples(*original, request, &source, &warnings);
  for (const auto& w : warnings) log::warn("{}", w);
  exec::Array labels;
  if (!f.labels.empty()) labels = data::read_npy(f.labels);
  const eval::Feedback feedback = feedback_of(*original, f);
  std::optional<log::Phase> phase(std::in_place, "original model");
  eval::Outputs reference = eval::run_samples(*original, samples, f.threads, feedback);
  std::vector<data::Feeds> candidate_samples;  // by position where the candidate renamed inputs
  for (const data::Feeds& s : samples) candidate_samples.push_back(data::feeds_for(*candidate, *original, s));
  phase.emplace("candidate model");
  eval::Outputs outputs = eval::run_samples(*candidate, candidate_samples, f.threads, feedback);
  phase.reset();
  eval::Comparison c = eval::compare_outputs(reference, outputs, f.labels.empty() ? nullptr : &labels, f.classifier_output);
  c.data = source;
  const eval::Verdict verdict = eval::judge(c);
  std::optional<eval::LayerReport> layers;
  if (per_layer) {
    eval::LayerOptions options;
    options.threads = f.threads;
    options.max_samples = samples.size();
    layers = eval::compare_layers(*original, *candidate, eval::carry_state(*original, samples, feedback, f.threads), options);
  }
  std::vector<eval::GateResult> gates = eval::check_gates(gates_of(gate_flags), &c, info.file_bytes + info.external_bytes);
  invocation.exit_status = std::all_of(gates.begin(), gates.end(), [](const auto& g) { return g.passed; }) ? 0 : 3;
  if (json || !report_path.empty() || !html_path.empty())
    invocation.inputs = digest_files(driver::files_read({{original_path, original_info}, {candidate_path, info}}, request));
  nlohmann::json j = report::header(invocation);
  j["command"] = "compare";
  j["original"] = original_path;
  j["optimized"] = candidate_path;
  j["accuracy"] = eval::to_json(c);
  j["gates"] = eval::to_json(gates);
  if (layers) j["accuracy"]["layers"] = eval::to_json(*layers);
  if (!report_path.empty()) report::write_json(j, report_path);
  if (!html_path.empty()) report::write_html(j, html_path);
  outcome.report = report_path;
  outcome.document = report::dump_json(j);
  if (json) fmt::print("{}\n", report::dump_json(j));
  else if (log::level() >= log::Level::Normal) {
    std::string summary = eval::summary(c) + (layers ? eval::summary(*layers, 20) : "") + eval::summary(verdict, c.data) + "\n";
    for (const auto& g : gates) summary += fmt::format("  gate {:<18} {}: {}\n", g.gate, g.passed ? "passed" : "FAILED", g.message);
    fmt::print("{}", log::fit(summary, stdout));
  }
  return report_gates(gates, outcome);
}

std::string preview(const exec::Array& a) {
  std::vector<double> v = a.first_doubles(7);  // not the whole tensor: outputs can be gigabytes
  std::vector<std::string> parts;
  for (size_t i = 0; i < v.size() && i < 6; ++i) parts.push_back(fmt::format("{:.6g}", v[i]));
  return fmt::format("[{}{}]", fmt::join(parts, ", "), v.size() > 6 ? ", ..." : "");
}

int run_run_command(const std::string& model_path, const DataFlags& f, const std::string& save_dir, bool json,
                    const std::vector<std::string>& command_line) {
  report::Invocation invocation{command_line};
  io::LoadInfo info;
  auto model = io::load_model(model_path, &info);
  driver::AccuracyRequest request = accuracy_request(f);
  eval::DataSource source;
  std::vector<std::string> warnings;
  std::vector<data::Feeds> samples = driver::load_or_generate_samples(*model, request, &source, &warnings);
  for (const auto& w : warnings) log::warn("{}", w);
  const std::string& description = source.description;
  if (json) invocation.inputs = digest_files(driver::files_read({{model_path, info}}, request));
  eval::Outputs outputs = eval::run_samples(*model, samples, f.threads, feedback_of(*model, f));
  if (!save_dir.empty()) {
    fs::create_directories(save_dir);
    for (size_t s = 0; s < outputs.per_sample.size(); ++s) {
      fs::path dir = outputs.per_sample.size() == 1 ? fs::path(save_dir) : fs::path(save_dir) / fmt::format("sample_{:04}", s);
      fs::create_directories(dir);
      for (size_t o = 0; o < outputs.names.size(); ++o) {
        data::write_npy((dir / (data::file_safe_name(outputs.names[o]) + ".npy")).string(), outputs.per_sample[s][o]);
      }
    }
  }
  nlohmann::json j = report::header(invocation);
  j.update({{"model", model_path}, {"data", eval::to_json(source)}, {"samples", samples.size()}, {"seconds", outputs.seconds}});
  j["outputs"] = nlohmann::json::array();
  for (size_t o = 0; o < outputs.names.size(); ++o) {
    const exec::Array& a = outputs.per_sample[0][o];
    j["outputs"].push_back({{"name", outputs.names[o]}, {"dtype", ir::dtype::name(a.dtype())}, {"shape", a.shape()}});
  }
  std::optional<eval::LabelMetrics> acc;
  if (!f.labels.empty()) {
    acc = eval::label_accuracy(outputs, data::read_npy(f.labels), f.classifier_output);
    j["labels"] = {{"output", acc->output}, {"count", acc->count}, {"accuracy", acc->reference_accuracy}};
  }
  if (json) {
    fmt::print("{}\n", report::dump_json(j));
  } else if (log::level() >= log::Level::Normal) {
    fmt::print("ran {} on {} ({} sample{}, {:.3f} s)\n", model_path, description, samples.size(), samples.size() == 1 ? "" : "s",
               outputs.seconds);
    for (size_t o = 0; o < outputs.names.size(); ++o) {
      const exec::Array& a = outputs.per_sample[0][o];
      fmt::print("  {:<24} {}{} {}\n", outputs.names[o], ir::dtype::name(a.dtype()), exec::shape_string(a.shape()), preview(a));
    }
    if (acc) fmt::print("  accuracy on {} labels ('{}'): {:.2f}%\n", acc->count, acc->output, acc->reference_accuracy * 100);
    if (!save_dir.empty()) fmt::print("outputs saved under {}\n", save_dir);
  }
  return kExitOk;
}

// What `mopt bench` times, said in its output: not the runtime the model will be deployed on.
constexpr const char* kBenchRuntime =
    "mopt's reference executor (lib/exec, CPU), not ONNX Runtime or the runtime you deploy on: use it to compare models, "
    "not to predict deployed latency";

int run_bench_command(const std::string& model_path, const DataFlags& f, int warmup, int runs, bool json, bool profile,
                      const std::vector<std::string>& command_line) {
  report::Invocation invocation{command_line};
  io::LoadInfo info;
  auto model = io::load_model(model_path, &info);
  if (!f.feedback.empty()) usage_error("bench times one sample; --feedback does not apply (use run or compare for sequences)");
  driver::AccuracyRequest request = accuracy_request(f);
  request.random_samples = 1;
  eval::DataSource source;
  std::vector<std::string> warnings;
  std::vector<data::Feeds> samples = driver::load_or_generate_samples(*model, request, &source, &warnings);
  for (const auto& w : warnings) log::warn("{}", w);
  const std::string& description = source.description;
  if (json) invocation.inputs = digest_files(driver::files_read({{model_path, info}}, request));
  exec::Executor executor(*model, exec::ExecutorOptions{f.threads, profile, nullptr});
  for (int i = 0; i < warmup; ++i) executor.run(samples[0]);
  std::vector<double> ms;
  log::Phase phase("timing", static_cast<size_t>(runs), "runs");
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    executor.run(samples[0]);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    phase.advance();
  }
  phase.end();
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size())))]; };
  double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  nlohmann::json j = report::header(invocation);
  j.update({{"model", model_path}, {"data", eval::to_json(source)}, {"runtime", kBenchRuntime}, {"warmup", warmup}, {"runs", runs},
            {"threads", f.threads}, {"latency_ms", {{"min", sorted.front()}, {"p50", pct(50)}, {"p90", pct(90)},
            {"p99", pct(99)}, {"max", sorted.back()}, {"mean", mean}}}});
  std::vector<std::pair<std::string, double>> ops(executor.profile().seconds.begin(), executor.profile().seconds.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (profile) {
    nlohmann::json p = nlohmann::json::object();
    for (const auto& [op, sec] : ops) p[op] = {{"ms_per_run", sec * 1e3 / (warmup + runs)}, {"calls", executor.profile().calls.at(op)}};
    j["profile"] = p;
  }
  if (json) fmt::print("{}\n", report::dump_json(j));
  else if (log::level() >= log::Level::Normal) {
    fmt::print("{}: {} runs after {} warm-up ({})\n  timing {}\n  latency ms  min {:.3f}  p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  max {:.3f}  mean {:.3f}\n",
               model_path, runs, warmup, description, kBenchRuntime, sorted.front(), pct(50), pct(90), pct(99), sorted.back(), mean);
    if (profile) {
      fmt::print("  time per run by operator (ms):\n");
      for (const auto& [op, sec] : ops) fmt::print("    {:<24} {:>10.3f}\n", op, sec * 1e3 / (warmup + runs));
    }
  }
  return kExitOk;
}

// ------------------------------------------------------------------ inspect

int run_inspect_command(const std::string& input, bool json, const std::vector<std::string>& command_line) {
  report::Invocation invocation{command_line};
  io::LoadInfo info;
  auto model = io::load_model(input, &info);
  if (json) invocation.inputs = digest_files(driver::files_read({{input, info}}, {}));
  report::ModelStats stats = report::collect_stats(*model, 10);
  ir::CheckResult check = ir::run_onnx_checker(*model);
  const char* status = check.status == ir::CheckResult::Status::Passed   ? "passed"
                       : check.status == ir::CheckResult::Status::Failed ? "failed"
                                                                         : "not-judged";
  if (json) {
    nlohmann::json j = report::to_json(stats);
    j.update(report::header(invocation));
    j["path"] = input;
    j["file_bytes"] = info.file_bytes;
    j["external_data_bytes"] = info.external_bytes;
    j["checker"] = {{"status", status}, {"message", check.message}};
    fmt::print("{}\n", report::dump_json(j));
    return kExitOk;
  }
  fmt::print("{}\n", input);
  fmt::print("  file size      {} ({} bytes){}\n", report::human_bytes(info.file_bytes), info.file_bytes,
             info.external_bytes ? fmt::format(" + {} external data", report::human_bytes(info.external_bytes)) : "");
  std::vector<std::string> opsets;
  for (const auto& [d, v] : stats.opsets) opsets.push_back(fmt::format("{} {}", d, v));
  fmt::print("  ir version     {}\n  opsets         {}\n", stats.ir_version, fmt::join(opsets, ", "));
  if (!stats.producer.empty()) fmt::print("  producer       {}\n", stats.producer);
  fmt::print("  onnx checker   {}{}\n", status, check.message.empty() ? "" : ": " + check.message);
  fmt::print("inputs\n");
  for (const auto& io : stats.inputs) fmt::print("  {:<24} {}\n", io.name, io.type);
  fmt::print("outputs\n");
  for (const auto& io : stats.outputs) fmt::print("  {:<24} {}\n", io.name, io.type);
  fmt::print("graph\n  nodes          {}{}\n  initializers   {}\n  constant nodes {}\n", stats.nodes,
             stats.subgraphs ? fmt::format(" (in {} graphs)", stats.subgraphs + 1) : "", stats.initializers, stats.constant_nodes);
  fmt::print("parameters       {} ({})\n", report::human_count(stats.parameters), report::human_bytes(stats.parameter_bytes));
  for (const auto& [dt, s] : stats.by_dtype)
    fmt::print("  {:<14} {:>6} tensors {:>12} values {:>12}\n", dt, s.tensors, report::human_count(s.elements),
               report::human_bytes(s.bytes));
  fmt::print("operators\n");
  std::vector<std::pair<std::string, int64_t>> ops(stats.op_histogram.begin(), stats.op_histogram.end());
  std::stable_sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [op, n] : ops) fmt::print("  {:<24} {:>6}\n", op, n);
  fmt::print("largest tensors\n");
  for (const auto& t : stats.largest)
    fmt::print("  {:<32} {:<8} [{}] {}{}\n", t.name, t.dtype, fmt::join(t.dims, ","), report::human_bytes(t.bytes),
               t.kind == "constant-node" ? " (Constant node)" : "");
  return kExitOk;
}

// ------------------------------------------------------------------ passes

namespace {

nlohmann::json options_json(const std::vector<pass::OptionSpec>& specs) {
  nlohmann::json options = nlohmann::json::array();
  for (const auto& o : specs) {
    nlohmann::json option = {{"name", o.name}, {"default", o.default_value}, {"help", o.help}, {"choices", o.choices}};
    if (!o.applies_when.empty()) option["applies_when"] = o.applies_when;
    if (o.min) option["min"] = *o.min;
    if (o.max) option["max"] = *o.max;
    options.push_back(option);
  }
  return options;
}

std::vector<std::string> member_names(const pass::PresetInfo& preset) {
  std::vector<std::string> names;
  for (const auto& m : preset.members) names.push_back(m.pass);
  return names;
}

void print_options_text(const std::vector<pass::OptionSpec>& specs) {
  for (const auto& o : specs) {
    std::string notes = o.choices.empty() ? "" : fmt::format(" ({})", fmt::join(o.choices, "|"));
    if (o.min || o.max) notes += fmt::format(" [{}, {}]", o.min ? fmt::format("{}", *o.min) : "", o.max ? fmt::format("{}", *o.max) : "");
    if (!o.applies_when.empty()) notes += fmt::format(" [with {}]", o.applies_when);
    fmt::print("    {}={}  {}{}\n", o.name, o.default_value, o.help, notes);
  }
}

// A table cell: '|' escaped.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

// The README's pass table (between its `mopt passes --markdown` markers; tests/cli_test.sh checks they agree).
void print_markdown() {
  fmt::print("| pass | what it does | options |\n|---|---|---|\n");
  auto names = [](const std::vector<pass::OptionSpec>& specs) {
    std::vector<std::string> out;
    for (const auto& o : specs) out.push_back("`" + o.name + "`");
    return fmt::format("{}", fmt::join(out, ", "));
  };
  for (const auto& p : pass::registered_passes()) fmt::print("| `{}` | {} | {} |\n", p.name, cell(p.summary), names(p.option_specs()));
  for (const auto& p : pass::registered_presets()) {
    fmt::print("| `{}` (preset) | {}: {} | {} |\n", p.name, cell(p.summary), fmt::join(member_names(p), ", "), names(p.switches));
  }
  fmt::print("| `fuse` (preset) | the fusion and cleanup passes above, repeated to a fixed point | `max-iterations` |\n");
}

}  // namespace

// ------------------------------------------------------------------ report

int run_report_command(const std::string& document, const std::string& html, const std::string& markdown) {
  for (const std::string& target : {html, markdown}) {
    if (!target.empty() && (target == document || same_file(target, document)))
      usage_error("'{}' is the report being read, not a place to write", target);
  }
  if (!html.empty() && html == markdown) usage_error("--html and --markdown name the same file");
  nlohmann::json doc;
  const std::string kind = report::read_document(document, &doc);
  if (kind != "report" && kind != "compare")
    fail("'{}' is a {} document; mopt report renders the report of an optimizing command or of compare", document, kind);
  if (kind == "compare" && (html.empty() || !markdown.empty()))
    fail("not supported: the Markdown summary of a compare report; give --html FILE");
  if (html.empty() && markdown.empty()) {
    fmt::print("{}", report::markdown_summary(doc));
    return kExitOk;
  }
  if (!markdown.empty()) report::write_markdown(report::markdown_summary(doc), markdown);
  if (!html.empty()) report::write_html(doc, html);
  return kExitOk;
}

int run_passes_command(bool json, bool markdown, const std::vector<std::string>& command_line) {
  if (json && markdown) usage_error("give --json or --markdown, not both");
  if (markdown) {
    print_markdown();
    return kExitOk;
  }
  if (json) {
    nlohmann::json j = report::header(report::Invocation{command_line});
    nlohmann::json& passes = j["passes"] = nlohmann::json::array();
    for (const auto& p : pass::registered_passes()) {
      passes.push_back({{"name", p.name}, {"summary", p.summary}, {"options", options_json(p.option_specs())}});
    }
    for (const auto& p : pass::registered_presets()) {
      passes.push_back({{"name", p.name}, {"summary", p.summary}, {"preset", true}, {"passes", member_names(p)},
                   {"options", options_json(p.specs)}});
    }
    passes.push_back({{"name", "fuse"}, {"summary", "Preset group (a fixpoint) of the fusion and cleanup passes"}, {"preset", true},
                 {"expands_to", pass::kFuseGroup}, {"options", nlohmann::json::array({{{"name", "max-iterations"},
                 {"default", std::to_string(pass::kDefaultFixpointIterations)}, {"help", "rounds before giving up with a warning"},
                 {"choices", nlohmann::json::array()}}})}});
    fmt::print("{}\n", report::dump_json(j));
    return kExitOk;
  }
  for (const auto& p : pass::registered_passes()) {
    fmt::print("{}\n    {}\n", p.name, p.summary);
    print_options_text(p.option_specs());
  }
  for (const auto& p : pass::registered_presets()) {
    fmt::print("{}(...)\n    Preset: {}. Expands to the passes its options select ({}); options go to the pass that "
               "declares them\n", p.name, p.summary, fmt::join(member_names(p), ", "));
    print_options_text(p.switches);
  }
  fmt::print("fixpoint(max-iterations={}, PASS, ...)\n    Repeat the passes inside until none changes the model\n",
             pass::kDefaultFixpointIterations);
  fmt::print("fuse(max-iterations={})\n    Preset group: {}\n", pass::kDefaultFixpointIterations, pass::kFuseGroup);
  return kExitOk;
}

}  // namespace mopt::cli
