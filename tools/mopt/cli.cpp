// The shared flags and the model-rewriting command's run; see cli.h.
#include "cli.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <limits>

#include "ir/validate.h"
#include "report/stats.h"
#include "util/error.h"
#include "util/log.h"

namespace mopt::cli {
namespace {

// The quantization part of the report, for the terminal.
std::string quantize_summary(const report::RunReport& run) {
  std::string out;
  for (const pass::PassRun& p : run.pipeline_result.passes) {
    if (p.name != "quantize" || p.details.is_null()) continue;
    const nlohmann::json& d = p.details;
    out += fmt::format("quantization ({}): {} layer(s) quantized, {} skipped (see the report, or --explain)\n", d.value("mode", ""),
                       d.value("nodes_quantized", 0), d["skipped"].size());
    if (d.contains("calibration"))
      out += fmt::format("  calibration  {} on {} row(s) in {} batch(es), {:.3f} ms per row\n", d["calibration"]["method"].get<std::string>(),
                         d["calibration"]["rows"].get<int64_t>(), d["calibration"]["samples"].get<size_t>(),
                         d["calibration"]["seconds_per_row"].get<double>() * 1e3);
    if (d.contains("weight_error"))
      out += fmt::format("  block search: weight rounding error (relative L2) {:.4f} with full-range blocks -> {:.4f}\n",
                         d["weight_error"]["full_range"].get<double>(), d["weight_error"]["searched"].get<double>());
    if (d.contains("accuracy_aware")) {
      const auto& a = d["accuracy_aware"];
      std::vector<std::string> moves;  // "drop 3.10 pp -> 0.80 pp (target 1.00)", "cosine 0.984688 -> 0.991204 (target 0.99)"
      auto value = [](const nlohmann::json& v, const char* format) {
        return v.is_number() ? fmt::format(fmt::runtime(format), v.get<double>()) : std::string("undefined");
      };
      if (a.contains("target_drop_pp"))
        moves.push_back(fmt::format("drop {} pp -> {} pp (target {:.2f})", value(a["initial_drop_pp"], "{:.2f}"), value(a["final_drop_pp"], "{:.2f}"),
                                    a["target_drop_pp"].get<double>()));
      if (a.contains("target_cosine"))
        moves.push_back(fmt::format("cosine {} -> {} (target {:g})", value(a["initial_cosine"], "{:.6f}"), value(a["final_cosine"], "{:.6f}"),
                                    a["target_cosine"].get<double>()));
      out += fmt::format("  accuracy-aware: {} with {} layer(s) in float [{}], {} evaluations\n", fmt::join(moves, ", "),
                         a["kept_float"].size(), fmt::join(a["kept_float"].get<std::vector<std::string>>(), ", "), a["evaluations"].get<int>());
    }
  }
  return out;
}

}  // namespace

std::string error_line(const std::string& message) {
  constexpr size_t kMaxChars = 1000;
  std::string line = ir::printable(message);
  if (line.size() > kMaxChars) line = fmt::format("{}... ({} more characters)", line.substr(0, kMaxChars), line.size() - kMaxChars);
  return line;
}

void record_error(Outcome& outcome, const std::string& message) {
  outcome.error = error_line(message);
  if (outcome.print_errors)
    fmt::print(stderr, "{}\n", log::fit(log::paint("mopt: error:", log::Paint::Error, stderr) + " " + outcome.error, stderr));
}


void add_log_flags(CLI::App* cmd, CommonFlags& flags) {
  cmd->add_flag("-q,--quiet", flags.quiet, "Print nothing but errors");
  cmd->add_flag("-v,--verbose", flags.verbose, "Log each step to stderr");
  cmd->add_option("--color", flags.color, "Colour: auto (on a terminal, unless NO_COLOR is set), always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
}

void apply_log_flags(const CommonFlags& flags) {
  log::set_level(flags.quiet ? log::Level::Quiet : flags.verbose ? log::Level::Verbose : log::Level::Normal);
  log::set_show_phases(true);
  log::set_color(flags.color == "always" ? log::ColorMode::Always : flags.color == "never" ? log::ColorMode::Never : log::ColorMode::Auto);
}

// ------------------------------------------------------------------ data, accuracy and gate flags


void add_data_flags(CLI::App* cmd, DataFlags& f, const std::string& flag, const std::string& fallback, bool allow_off,
                    int default_samples) {
  f.data = fallback;
  f.samples = default_samples;
  f.data_option = cmd->add_option(flag, f.data,
                  fmt::format("Input data: 'random'{}, an .npy/.npz/.pb file, or a folder of <input>.npy files or "
                              "sample subfolders (default: {}{})",
                              allow_off ? ", 'off'" : "", allow_off ? "the command's calibration --data if any, else " : "",
                              fallback));
  cmd->add_option("--samples", f.samples, fmt::format("Number of random samples (default: {})", default_samples))->check(CLI::Range(1, 1000000));
  cmd->add_option("--seed", f.seed, "Seed for random inputs (default: 0)");
  cmd->add_option("--shape", f.shapes, "Shape of an input for random data: NAME=1,3,224,224 (repeatable)");
  cmd->add_option("--dim", f.dims, "Value of a symbolic dimension for random data: NAME=8 (repeatable)");
  cmd->add_option("--value-range", f.value_ranges,
                  "Range of an input's random values: NAME=LO:HI (integers: LO..HI inclusive; default -1:1 for floats, "
                  "0:9 for integers; repeatable)");
  cmd->add_option("--feedback", f.feedback,
                  "The samples are a sequence: output OUT of each sample is the next sample's input IN (RNN/VAD state), "
                  "for accuracy and calibration: OUT=IN (repeatable)");
  cmd->add_option("--labels", f.labels, "Integer class labels (.npy), one per row of the classifier output");
  cmd->add_option("--classifier-output,--label-output", f.classifier_output,
                  "Output scored as a classifier (top-1/top-5 agreement, --labels), or 'none' (default: every [N, C] "
                  "output; the first for --labels)");
  cmd->add_option("--threads", f.threads, "Threads for the passes and the executor (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--max-eval-seconds", f.max_eval_seconds,
                  "Stop any one run of the reference executor after this many seconds (0: no limit; default: 600)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--max-tensor-bytes", f.max_tensor_bytes,
                  "Largest tensor the reference executor may allocate, like 512M or 4G (0: no limit; default: half the "
                  "machine's memory)");
}

uint64_t default_max_tensor_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 2 : 0;
}

driver::AccuracyRequest accuracy_request(const DataFlags& f) {
  exec::set_run_time_limit(f.max_eval_seconds);
  if (std::optional<uint64_t> limit = parse_size(f.max_tensor_bytes, "--max-tensor-bytes")) exec::set_max_tensor_bytes(*limit);
  driver::AccuracyRequest r;
  r.source = f.data;
  r.source_explicit = f.data_explicit();
  r.random_samples = f.samples;
  r.seed = f.seed;
  for (const auto& s : f.shapes) r.shapes.add_shape(s);
  for (const auto& d : f.dims) r.shapes.add_dim(d);
  for (const auto& v : f.value_ranges) r.shapes.add_range(v);
  r.labels = f.labels;
  r.classifier_output = f.classifier_output;
  r.feedback = f.feedback;
  r.threads = f.threads;
  return r;
}

eval::Feedback feedback_of(const ir::Model& model, const DataFlags& f) {
  eval::Feedback out;
  for (const std::string& spec : f.feedback) out.push_back(eval::parse_feedback(model, spec));
  return out;
}


void add_gate_flags(CLI::App* cmd, GateFlags& f) {
  cmd->add_option("--max-accuracy-drop", f.max_accuracy_drop,
                  "Gate: fail (exit 3) if accuracy drops by more than this many percentage points (labelled "
                  "accuracy with --labels, else top-1 disagreement with the original)");
  cmd->add_option("--min-cosine", f.min_cosine, "Gate: fail (exit 3) if any output's cosine similarity is below this");
  cmd->add_option("--max-size", f.max_size, "Gate: fail (exit 3) if the output model is larger (bytes, or with K/M/G)");
  cmd->add_flag("--fail-on-degraded", f.fail_on_degraded,
                "Gate: fail (exit 3) on a DEGRADED verdict (an output with cosine < 0.99 or new NaN/Inf, or accuracy / "
                "top-1 agreement down more than 1 point)");
}


eval::Gates gates_of(const GateFlags& f) {
  eval::Gates g;
  if (f.max_accuracy_drop >= 0) g.max_accuracy_drop = f.max_accuracy_drop;
  if (f.min_cosine > -2) g.min_cosine = f.min_cosine;
  g.max_size = parse_size(f.max_size, "--max-size");
  g.fail_on_degraded = f.fail_on_degraded;
  return g;
}

std::vector<std::string> accuracy_decisions(const GateFlags& f) {
  std::vector<std::string> out;
  if (f.max_accuracy_drop >= 0) out.push_back("--max-accuracy-drop");
  if (f.min_cosine > -2) out.push_back("--min-cosine");
  if (f.fail_on_degraded) out.push_back("--fail-on-degraded");
  return out;
}

int report_gates(const std::vector<eval::GateResult>& gates, Outcome& outcome) {
  bool ok = true;
  for (const auto& g : gates) {
    if (!g.passed) {
      ok = false;
      if (outcome.print_errors)
        fmt::print(stderr, "mopt: gate {} {}: {}\n", g.gate, log::paint("failed", log::Paint::Error, stderr), g.message);
      outcome.failed_gates.push_back(fmt::format("{}: {}", g.gate, g.message));
    }
  }
  return ok ? kExitOk : kExitGate;
}

namespace {
// "verdict: DEGRADED ..." / "verdict: ok ...", the verdict word coloured on a terminal.
std::string painted_verdict(std::string text, std::FILE* stream) {
  for (const auto& [word, paint] : {std::pair{"DEGRADED", log::Paint::Error}, std::pair{"verdict: ok", log::Paint::Good}}) {
    const size_t at = text.find(word);
    if (at != std::string::npos) text.replace(at, std::strlen(word), log::paint(word, paint, stream));
  }
  return text;
}
}  // namespace

void add_model_output_flags(CLI::App* cmd, OptimizeFlags& f, const std::string& suffix) {
  cmd->add_option("model", f.input, "Input .onnx model (several, with -O DIR: run as mopt batch)")->required();
  cmd->add_option("-o,--output", f.output, fmt::format("Output model (default: <model>{} beside the input)", suffix));
  cmd->add_option("-O,--output-dir", f.output_dir, "Write the output (named as by default) into this folder, created if needed");
  cmd->add_option("--report", f.report, "Report path (default: <output>.report.json)");
  cmd->add_option("--markdown", f.markdown,
                  "Also write the report as Markdown (sizes, accuracy, gates, worst layers) for CI summaries; appended "
                  "when FILE is $GITHUB_STEP_SUMMARY");
  cmd->add_option("--html", f.html,
                  "Also write the report as one self-contained HTML page (sizes by type, largest tensors, operators, passes, "
                  "accuracy with its data, gates, per-layer error)");
  cmd->add_flag("--in-place", f.in_place, "Overwrite the input model (atomically)");
  cmd->add_option("--external-data", f.external_data,
                  "Store tensors of at least this many bytes (like 1K or 1M) in <output>.data (models over 2 GB need "
                  "it), or 'inline' to store every tensor in the .onnx file; default: keep the input's layout");
  cmd->add_flag("--verify-each", f.verify_each, "Check IR invariants and the ONNX checker after every pass");
  cmd->add_flag("--explain", f.explain, "Say why each considered rewrite was not applied");
  cmd->add_flag("--verify-numerics", f.verify_numerics,
                "Run the model on the accuracy data before and after every pass; roll back (and name) a pass whose "
                "outputs move by more than --numerics-tolerance");
  cmd->add_option("--numerics-tolerance", f.numerics_tolerance,
                  "Largest output change --verify-numerics accepts, relative to max(1, max|output|) (default: 1e-4)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_flag("--no-compressed-size", f.no_compressed_size, "Skip measuring the zstd-compressed sizes");
  cmd->add_flag("--no-per-layer", f.no_per_layer,
                "Skip the per-layer comparison (two more runs of the models on up to 4 accuracy samples)");
  cmd->add_flag("--allow-unchanged", f.allow_unchanged,
                "Write the model even when the command's pass changed nothing (by default that is an error, exit 1)");
}

std::optional<uint64_t> parse_size(const std::string& text, const char* flag) {
  if (text.empty()) return std::nullopt;
  uint64_t multiplier = 1;
  std::string digits = text;
  const char last = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
  if (last == 'K' || last == 'M' || last == 'G') {
    multiplier = last == 'K' ? 1024 : last == 'M' ? 1024 * 1024 : 1024ull * 1024 * 1024;
    digits.pop_back();
  }
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(digits, &used);
    if (used != digits.size() || digits.empty() || digits[0] == '-') throw std::invalid_argument(text);
    if (v > std::numeric_limits<uint64_t>::max() / multiplier) throw std::out_of_range(text);
    return v * multiplier;
  } catch (const std::exception&) {
    usage_error("{} takes a size in bytes (like 1024, 64K or 1M), not '{}'", flag, text);
  }
}


int print_or_run(bool print_only, Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags,
                 Outcome& outcome) {
  if (print_only) {
    fmt::print("{}\n", pass::print_pipeline(job.pipeline));
    return kExitOk;
  }
  return run_pipeline_command(std::move(job), f, data_flags, gate_flags, outcome);
}

int run_pipeline_command(Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags,
                         Outcome& outcome) {
  if (f.in_place && !f.output.empty()) usage_error("give -o/--output or --in-place, not both");
  if (!f.output_dir.empty() && (f.in_place || !f.output.empty())) usage_error("give -O/--output-dir, -o/--output or --in-place, not two of them");
  driver::OptimizeRequest request;
  request.command = job.command;
  request.command_line = outcome.command_line;
  request.default_suffix = job.suffix;
  request.input = f.input;
  request.output = f.output_dir.empty() ? fs::path(f.output)
                                         : fs::path(f.output_dir) / driver::default_output(fs::path(f.input).filename(), job.suffix);
  request.report = f.report;
  request.markdown = f.markdown;
  request.html = f.html;
  request.in_place = f.in_place;
  request.pipeline = std::move(job.pipeline);
  request.required_change = job.required_change;
  request.allow_unchanged = f.allow_unchanged;
  request.manager.verify_each = f.verify_each;
  request.manager.explain = f.explain;
  request.verify_numerics = f.verify_numerics;
  request.numerics_tolerance = f.numerics_tolerance;
  request.external_data_threshold = f.external_data == "inline" ? std::optional<uint64_t>(std::numeric_limits<uint64_t>::max())
                                                                : parse_size(f.external_data, "--external-data");
  request.accuracy = accuracy_request(data_flags);
  request.accuracy.shapes.batch = job.batch;
  request.accuracy.calibration = job.calibration;
  request.gates = gates_of(gate_flags);
  request.accuracy.decisions = accuracy_decisions(gate_flags);
  request.accuracy.decisions.insert(request.accuracy.decisions.end(), job.decisions.begin(), job.decisions.end());
  request.accuracy.required = data_flags.data != "random" || request.gates.judge_accuracy() || f.verify_numerics;
  if (request.accuracy.source == "off" && request.gates.judge_accuracy()) {
    usage_error("accuracy gates need the accuracy check; drop --accuracy off");
  }
  if (request.accuracy.source == "off" && f.verify_numerics) usage_error("--verify-numerics runs the model on the accuracy data; drop --accuracy off");
  request.compressed_size = !f.no_compressed_size;
  request.per_layer = !f.no_per_layer;
  if (outcome.dry_run) {
    outcome.output = f.in_place ? f.input : request.output.empty() ? driver::default_output(f.input, job.suffix).string() : request.output.string();
    return kExitOk;
  }
  if (!f.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(f.output_dir, ec);
    if (ec) fail("cannot create output folder '{}': {}", f.output_dir, ec.message());
  }
  driver::OptimizeResult result = driver::run_optimize(request);
  outcome.output = result.output.string();
  outcome.report = result.report.string();
  for (const auto& w : result.run.pipeline_result.warnings) log::warn("{}", w);
  for (const auto& w : result.run.warnings) log::warn("{}", w);
  // With -o - the model is standard output, so the summary goes to stderr.
  std::FILE* out = result.output == "-" ? stderr : stdout;
  if (log::level() >= log::Level::Normal) {
    std::string summary = report::summary_table(result.run) + quantize_summary(result.run) + result.run.layers_summary;
    if (!result.run.verdict_summary.empty()) summary += painted_verdict(result.run.verdict_summary, out) + "\n";
    if (result.input_kept) summary += fmt::format("a gate failed: --in-place left {} unchanged\n", f.input);
    else summary += fmt::format("wrote {} ({:.2f} s)\n", result.output == "-" ? "the model to standard output" : result.output.string(),
                                result.run.total_seconds);
    summary += fmt::format("report {}\n", result.report.string());
    fmt::print(out, "{}", log::fit(summary, out));
  } else if (result.run.accuracy.is_null() && request.accuracy.source != "off") {
    // -q keeps what changes the meaning of the result: the accuracy asked for was not measured.
    fmt::print(stderr, "{}\n", log::fit(fmt::format("mopt: {} accuracy not measured: {}", log::paint("warning:", log::Paint::Warning, stderr),
                                                     result.run.accuracy_skipped), stderr));
  }
  // A degraded result is never silent, not even with -q.
  if (result.run.degraded) fmt::print(stderr, "{}\n", log::fit("mopt: " + painted_verdict(result.run.verdict_summary, stderr), stderr));
  return report_gates(result.gates, outcome);
}

CLI::App* add_pipeline_command(CLI::App& app, const std::string& name, const std::string& description,
                               const std::string& suffix, PipelineCommandFlags& flags, CommonFlags& common,
                               const std::function<void(CLI::App*)>& add_options) {
  CLI::App* cmd = app.add_subcommand(name, description);
  add_model_output_flags(cmd, flags.output, suffix);
  add_options(cmd);
  add_data_flags(cmd, flags.data, "--accuracy", "random", true, 4);
  add_gate_flags(cmd, flags.gates);
  add_log_flags(cmd, common);
  return cmd;
}

}  // namespace mopt::cli
