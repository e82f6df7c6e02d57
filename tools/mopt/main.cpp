// mopt: the command-line tool. Each command parses its flags, builds a pipeline or request and calls
// the library; the work itself lives in lib/. Exit codes: 0 success, 1 error, 2 usage error,
// 3 a quality gate failed (the model and report are still written).
#include <CLI/CLI.hpp>
#include <unistd.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <numeric>
#include <iostream>
#include <limits>
#include <new>

#include "data/npy.h"
#include "driver/optimize.h"
#include "eval/accuracy.h"
#include "eval/layers.h"
#include "exec/executor.h"
#include "io/model_io.h"
#include "ir/validate.h"
#include "ir/verify.h"
#include "pass/pipeline.h"
#include "report/stats.h"
#include "pass_flags.h"
#include "util/error.h"
#include "util/log.h"

namespace {

using namespace mopt;
namespace fs = std::filesystem;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitGate = 3;

// One line on stderr: control characters escaped (a model's names cannot forge lines or drive the
// terminal) and at most 1000 characters.
void print_error(const std::string& message) {
  constexpr size_t kMaxChars = 1000;
  std::string line = ir::printable(message);
  if (line.size() > kMaxChars) line = fmt::format("{}... ({} more characters)", line.substr(0, kMaxChars), line.size() - kMaxChars);
  fmt::print(stderr, "mopt: error: {}\n", line);
}

struct CommonFlags {
  bool quiet = false;
  bool verbose = false;
};

void add_log_flags(CLI::App* cmd, CommonFlags& flags) {
  cmd->add_flag("-q,--quiet", flags.quiet, "Print nothing but errors");
  cmd->add_flag("-v,--verbose", flags.verbose, "Log each step to stderr");
}

void apply_log_flags(const CommonFlags& flags) {
  if (flags.quiet) log::set_level(log::Level::Quiet);
  else if (flags.verbose) log::set_level(log::Level::Verbose);
}

// ------------------------------------------------------------------ data, accuracy and gate flags

struct DataFlags {
  std::string data;  // random | off | PATH
  CLI::Option* data_option = nullptr;  // to tell a default from an explicit choice
  int samples = 0;  // set by add_data_flags to the command's default
  uint64_t seed = 0;
  std::vector<std::string> shapes, dims, value_ranges, feedback;
  std::string labels, classifier_output;
  int threads = 0;
  double max_eval_seconds = 600;
  std::string max_tensor_bytes;  // empty: half the machine's memory
  bool data_explicit() const { return data_option && data_option->count() > 0; }
};

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
  cmd->add_option("--threads", f.threads, "Executor threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--max-eval-seconds", f.max_eval_seconds,
                  "Stop any one run of the reference executor after this many seconds (0: no limit; default: 600)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--max-tensor-bytes", f.max_tensor_bytes,
                  "Largest tensor the reference executor may allocate, like 512M or 4G (0: no limit; default: half the "
                  "machine's memory)");
}

std::optional<uint64_t> parse_size(const std::string& text, const char* flag);

// Half the physical memory: the executor's default limit per tensor, so a malformed shape fails with a
// message instead of the kernel's out-of-memory killer.
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

struct GateFlags {
  double max_accuracy_drop = -1, min_cosine = -2;
  std::string max_size;
  bool fail_on_degraded = false;
};

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

// The flags that decide on the accuracy data: refused on random data the user did not ask for.
std::vector<std::string> accuracy_decisions(const GateFlags& f) {
  std::vector<std::string> out;
  if (f.max_accuracy_drop >= 0) out.push_back("--max-accuracy-drop");
  if (f.min_cosine > -2) out.push_back("--min-cosine");
  if (f.fail_on_degraded) out.push_back("--fail-on-degraded");
  return out;
}

int report_gates(const std::vector<eval::GateResult>& gates) {
  bool ok = true;
  for (const auto& g : gates) {
    if (!g.passed) {
      ok = false;
      fmt::print(stderr, "mopt: gate {} failed: {}\n", g.gate, g.message);
    }
  }
  return ok ? kExitOk : kExitGate;
}

// ------------------------------------------------------------------ quantize, prune, clip, convert
// Each is a preset pipeline around its pass. The pass's options are flags generated from its option table
// (pass_flags.h); what is written here is only what a command adds: flags of its own, options it derives
// from other flags, and its output name.

struct PassCommandFlags {
  explicit PassCommandFlags(cli::PassFlagLayout layout) : pass(std::move(layout)) {}
  cli::PassFlags pass;
  bool no_fuse = false, fuse = false, weight_only = false, print_pipeline = false;
};

// How quantize, prune and clip run their pass: the fuse group first (unless --no-fuse), so BatchNorm is
// folded and constants computed before weights are judged, and dead-code elimination after.
pass::Pipeline around_fuse(pass::PipelineElement element, bool fuse) {
  pass::Pipeline pipeline = pass::parse_pipeline(fuse ? "fuse,eliminate-dead-code" : "eliminate-dead-code");
  pipeline.elements.insert(pipeline.elements.end() - 1, std::move(element));
  return pipeline;
}

// The pass's flags, and the command's own: --no-fuse where the command fuses first (quantize, prune, clip),
// --fuse where it does not (convert), and --print-pipeline.
void add_pass_command_flags(CLI::App* cmd, PassCommandFlags& f, bool fuses_first) {
  f.pass.add_to(cmd);
  if (fuses_first) {
    cmd->add_flag("--no-fuse", f.no_fuse,
                  "Work on the graph as it is, without the fuse group first (BatchNorm folding, constant folding, ...)");
  } else {
    cmd->add_flag("--fuse", f.fuse, "Run the fuse group first (BatchNorm folding, constant folding, ...)");
  }
  cmd->add_flag("--print-pipeline", f.print_pipeline, "Print the pipeline this command runs and exit");
}

cli::PassFlagLayout quantize_layout() {
  return {"quantize",
          {{"max-samples", "max-calibration-samples"}},
          {"max-accuracy-drop"},  // the gate's --max-accuracy-drop is also the fallback's target
          {{"mode", "dynamic, static or weight-only (default: static with --data, else dynamic)"}}};
}

pass::Pipeline quantize_pipeline(const PassCommandFlags& f, const GateFlags& gates) {
  const std::string data = f.pass.value("data");
  const std::string mode = f.weight_only ? "weight-only" : f.pass.given("mode") ? f.pass.value("mode") : data.empty() ? "dynamic" : "static";
  if (f.weight_only && f.pass.given("mode") && f.pass.value("mode") != "weight-only")
    usage_error("--weight-only contradicts --mode {}", f.pass.value("mode"));
  if (mode == "static" && data.empty()) usage_error("static quantization needs calibration data: --data PATH");
  if (mode != "static" && !data.empty()) usage_error("--data is calibration data for static mode; {} mode does not use it", mode);
  std::vector<std::pair<std::string, std::string>> derived = {{"mode", mode}};
  if (gates.max_accuracy_drop >= 0) derived.emplace_back("max-accuracy-drop", fmt::format("{}", gates.max_accuracy_drop));
  // Fusing first matters for speed: a BatchNormalization left between quantized Convs runs in float
  // between Q/DQ pairs (digits_cnn was 1.2-1.6x slower quantized than float in ONNX Runtime).
  return around_fuse(f.pass.element(derived), !f.no_fuse);
}

std::string quantize_suffix(const PassCommandFlags& f) {
  const bool weight_only = f.weight_only || f.pass.value("mode") == "weight-only";
  return weight_only && f.pass.value("bits") == "4" ? ".int4.onnx" : ".int8.onnx";
}

cli::PassFlagLayout convert_layout() {
  // --shape and --dim (the data flags) fix the model's input dimensions; --min-cosine and --max-accuracy-drop
  // (the gates) are auto-mixed's targets.
  return {"convert", {}, {"shapes", "dims", "min-cosine", "max-accuracy-drop"}, {}};
}

pass::Pipeline convert_pipeline(const PassCommandFlags& f, const DataFlags& data, const GateFlags& gates) {
  std::vector<std::pair<std::string, std::string>> derived;
  if (!data.shapes.empty()) derived.emplace_back("shapes", fmt::format("{}", fmt::join(data.shapes, ";")));
  if (!data.dims.empty()) derived.emplace_back("dims", fmt::format("{}", fmt::join(data.dims, ",")));
  if (f.pass.value("auto-mixed") == "true") {
    if (gates.max_accuracy_drop >= 0) derived.emplace_back("max-accuracy-drop", fmt::format("{}", gates.max_accuracy_drop));
    if (gates.min_cosine > -2) derived.emplace_back("min-cosine", fmt::format("{}", gates.min_cosine));
  }
  pass::Pipeline pipeline;
  if (f.fuse) pipeline = pass::parse_pipeline("fuse");
  pipeline.elements.push_back(f.pass.element(derived));
  return pipeline;
}

std::string convert_suffix(const PassCommandFlags& f) {
  if (f.pass.value("to") != "keep") return "." + f.pass.value("to") + ".onnx";
  if (f.pass.given("opset")) return fmt::format(".opset{}.onnx", f.pass.value("opset"));
  return ".converted.onnx";
}

// The quantization part of the report, for the terminal.
void print_quantize_summary(const report::RunReport& run, std::FILE* out) {
  for (const pass::PassRun& p : run.pipeline_result.passes) {
    if (p.name != "quantize" || p.details.is_null()) continue;
    const nlohmann::json& d = p.details;
    fmt::print(out, "quantization ({}): {} layer(s) quantized, {} skipped (see the report, or --explain)\n", d.value("mode", ""),
               d.value("nodes_quantized", 0), d["skipped"].size());
    if (d.contains("calibration"))
      fmt::print(out, "  calibration  {} on {} row(s) in {} batch(es), {:.3f} ms per row\n", d["calibration"]["method"].get<std::string>(),
                 d["calibration"]["rows"].get<int64_t>(), d["calibration"]["samples"].get<size_t>(),
                 d["calibration"]["seconds_per_row"].get<double>() * 1e3);
    if (d.contains("accuracy_aware")) {
      const auto& a = d["accuracy_aware"];
      fmt::print(out, "  accuracy-aware: drop {:.2f} pp -> {:.2f} pp (target {:.2f}) with {} layer(s) in float [{}], {} evaluations\n",
                 a["initial_drop_pp"].get<double>(), a["final_drop_pp"].get<double>(), a["target_drop_pp"].get<double>(),
                 a["kept_float"].size(), fmt::join(a["kept_float"].get<std::vector<std::string>>(), ", "),
                 a["evaluations"].get<int>());
    }
  }
}

// ------------------------------------------------------------------ fuse

struct FuseFlags {
  int64_t max_iterations = pass::kDefaultFixpointIterations;
  std::string skip, max_folded_bytes;
  bool print_pipeline = false;
};

void add_fuse_flags(CLI::App* cmd, FuseFlags& f) {
  cmd->add_option("--max-iterations", f.max_iterations, "Rounds of the fuse group before giving up with a warning (default: 10)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  cmd->add_option("--max-folded-bytes", f.max_folded_bytes,
                  "fold-constants leaves a node when folding would grow the model by more than this (bytes, or "
                  "with K/M/G; default: 1M)");
  cmd->add_option("--skip", f.skip, "Comma-separated passes of the group to leave out (e.g. fuse-gelu,fold-input-normalization)");
  cmd->add_flag("--print-pipeline", f.print_pipeline, "Print the pipeline this command runs and exit");
}

pass::Pipeline fuse_pipeline(const FuseFlags& f) {
  pass::Pipeline pipeline = pass::parse_pipeline("fuse");
  pass::PipelineElement& group = pipeline.elements.at(0);
  group.max_iterations = f.max_iterations;
  std::vector<std::string> skip;
  for (size_t start = 0; start <= f.skip.size() && !f.skip.empty();) {
    const size_t comma = std::min(f.skip.find(',', start), f.skip.size());
    skip.push_back(f.skip.substr(start, comma - start));
    start = comma + 1;
  }
  for (const std::string& name : skip) {
    auto it = std::find_if(group.children.begin(), group.children.end(), [&](const auto& e) { return e.name == name; });
    if (it == group.children.end()) usage_error("--skip: '{}' is not a pass of the fuse group (see --print-pipeline)", name);
    group.children.erase(it);
  }
  if (group.children.empty()) usage_error("--skip leaves the fuse group empty");
  if (std::optional<uint64_t> bytes = parse_size(f.max_folded_bytes, "--max-folded-bytes")) {
    for (auto& e : group.children) {
      if (e.name == "fold-constants") e.options.set(e.name, "max-folded-bytes", std::to_string(*bytes));
    }
  }
  return pipeline;
}

// ------------------------------------------------------------------ optimize

struct OptimizeFlags {
  std::string input, output, report, passes, pipeline_file;
  std::string external_data;  // "" = keep the input's layout
  bool in_place = false, print_pipeline = false, verify_each = false, explain = false, no_compressed_size = false,
       verify_numerics = false, allow_unchanged = false, no_per_layer = false;
  double numerics_tolerance = 1e-4;
};

const char* kDefaultOptimizePipeline = "fuse";

void add_model_output_flags(CLI::App* cmd, OptimizeFlags& f, const std::string& suffix) {
  cmd->add_option("model", f.input, "Input .onnx model")->required();
  cmd->add_option("-o,--output", f.output, fmt::format("Output model (default: <model>{} beside the input)", suffix));
  cmd->add_option("--report", f.report, "Report path (default: <output>.report.json)");
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

// What a model-rewriting command runs, beyond its flags.
struct Job {
  Job(std::string command_, std::string suffix_, pass::Pipeline pipeline_, std::string required_change_ = "",
      std::string calibration_ = "")
      : command(std::move(command_)), suffix(std::move(suffix_)), pipeline(std::move(pipeline_)),
        required_change(std::move(required_change_)), calibration(std::move(calibration_)) {}
  std::string command, suffix;
  pass::Pipeline pipeline;
  std::string required_change;         // the pass the command exists to run: it must change the model
  std::string calibration;             // calibration data, measured on when --accuracy is not given
  std::vector<std::string> decisions;  // the command's own flags that decide on the data (--auto-mixed)
  std::optional<int64_t> batch;        // random data for a model whose batch dimension convert makes static
};

int run_pipeline_command(Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags);

// Prints the pipeline (--print-pipeline) or runs it and writes the model and report.
int print_or_run(bool print_only, Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags) {
  if (print_only) {
    fmt::print("{}\n", pass::print_pipeline(job.pipeline));
    return kExitOk;
  }
  return run_pipeline_command(std::move(job), f, data_flags, gate_flags);
}

pass::Pipeline optimize_pipeline(const OptimizeFlags& f) {
  if (!f.passes.empty() && !f.pipeline_file.empty()) usage_error("give --passes or --pipeline, not both");
  if (!f.pipeline_file.empty()) return pass::load_pipeline_file(f.pipeline_file);
  return pass::parse_pipeline(f.passes.empty() ? kDefaultOptimizePipeline : f.passes);
}

int run_pipeline_command(Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags) {
  if (f.in_place && !f.output.empty()) usage_error("give -o/--output or --in-place, not both");
  driver::OptimizeRequest request;
  request.command = job.command;
  request.default_suffix = job.suffix;
  request.input = f.input;
  request.output = f.output;
  request.report = f.report;
  request.in_place = f.in_place;
  request.pipeline = std::move(job.pipeline);
  request.required_change = job.required_change;
  request.allow_unchanged = f.allow_unchanged;
  request.manager.verify_each = f.verify_each;
  request.manager.explain = f.explain;
  request.manager.verify_numerics = f.verify_numerics;
  request.manager.numerics_tolerance = f.numerics_tolerance;
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
  driver::OptimizeResult result = driver::run_optimize(request);
  for (const auto& w : result.run.pipeline_result.warnings) log::warn("{}", w);
  for (const auto& w : result.run.warnings) log::warn("{}", w);
  // With -o - the model is standard output, so the summary goes to stderr.
  std::FILE* out = result.output == "-" ? stderr : stdout;
  if (log::level() >= log::Level::Normal) {
    fmt::print(out, "{}", report::summary_table(result.run));
    print_quantize_summary(result.run, out);
    fmt::print(out, "{}", result.run.layers_summary);
    if (!result.run.verdict_summary.empty()) fmt::print(out, "{}\n", result.run.verdict_summary);
    if (result.input_kept) fmt::print(out, "a gate failed: --in-place left {} unchanged\n", f.input);
    else fmt::print(out, "wrote {} ({:.2f} s)\n", result.output == "-" ? "the model to standard output" : result.output.string(),
                    result.run.total_seconds);
    fmt::print(out, "report {}\n", result.report.string());
  }
  // A degraded result is never silent, not even with -q.
  if (result.run.degraded) fmt::print(stderr, "mopt: {}\n", result.run.verdict_summary);
  return report_gates(result.gates);
}

// ------------------------------------------------------------------ compare, run, bench

int run_compare_command(const std::string& original_path, const std::string& candidate_path, const DataFlags& f,
                        const GateFlags& gate_flags, const std::string& report_path, bool json, bool per_layer) {
  auto original = io::load_model(original_path);
  io::LoadInfo info;
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
  eval::Outputs reference = eval::run_samples(*original, samples, f.threads, feedback);
  eval::Outputs outputs = eval::run_samples(*candidate, samples, f.threads, feedback);
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
  nlohmann::json j = {{"schema_version", report::kSchemaVersion},
                      {"command", "compare"},
                      {"original", original_path},
                      {"optimized", candidate_path},
                      {"accuracy", eval::to_json(c)},
                      {"gates", eval::to_json(gates)}};
  if (layers) j["accuracy"]["layers"] = eval::to_json(*layers);
  if (!report_path.empty()) report::write_json(j, report_path);
  if (json) fmt::print("{}\n", report::dump_json(j));
  else if (log::level() >= log::Level::Normal) {
    fmt::print("{}", eval::summary(c));
    if (layers) fmt::print("{}", eval::summary(*layers, 20));
    fmt::print("{}\n", eval::summary(verdict, c.data));
    for (const auto& g : gates) fmt::print("  gate {:<18} {}: {}\n", g.gate, g.passed ? "passed" : "FAILED", g.message);
  }
  return report_gates(gates);
}

std::string preview(const exec::Array& a) {
  std::vector<double> v = a.first_doubles(7);  // not the whole tensor: outputs can be gigabytes
  std::vector<std::string> parts;
  for (size_t i = 0; i < v.size() && i < 6; ++i) parts.push_back(fmt::format("{:.6g}", v[i]));
  return fmt::format("[{}{}]", fmt::join(parts, ", "), v.size() > 6 ? ", ..." : "");
}

int run_run_command(const std::string& model_path, const DataFlags& f, const std::string& save_dir, bool json) {
  auto model = io::load_model(model_path);
  driver::AccuracyRequest request = accuracy_request(f);
  eval::DataSource source;
  std::vector<std::string> warnings;
  std::vector<data::Feeds> samples = driver::load_or_generate_samples(*model, request, &source, &warnings);
  for (const auto& w : warnings) log::warn("{}", w);
  const std::string& description = source.description;
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
  nlohmann::json j = {{"model", model_path}, {"data", eval::to_json(source)}, {"samples", samples.size()}, {"seconds", outputs.seconds}};
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

int run_bench_command(const std::string& model_path, const DataFlags& f, int warmup, int runs, bool json, bool profile) {
  auto model = io::load_model(model_path);
  if (!f.feedback.empty()) usage_error("bench times one sample; --feedback does not apply (use run or compare for sequences)");
  driver::AccuracyRequest request = accuracy_request(f);
  request.random_samples = 1;
  eval::DataSource source;
  std::vector<std::string> warnings;
  std::vector<data::Feeds> samples = driver::load_or_generate_samples(*model, request, &source, &warnings);
  for (const auto& w : warnings) log::warn("{}", w);
  const std::string& description = source.description;
  exec::Executor executor(*model, exec::ExecutorOptions{f.threads, profile, nullptr});
  for (int i = 0; i < warmup; ++i) executor.run(samples[0]);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    executor.run(samples[0]);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (log::level() >= log::Level::Normal) log::progress("run {}/{}", i + 1, runs);
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size())))]; };
  double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  nlohmann::json j = {{"model", model_path}, {"data", eval::to_json(source)}, {"runtime", kBenchRuntime}, {"warmup", warmup}, {"runs", runs},
                      {"threads", f.threads}, {"latency_ms", {{"min", sorted.front()}, {"p50", pct(50)}, {"p90", pct(90)},
                      {"p99", pct(99)}, {"max", sorted.back()}, {"mean", mean}}}};
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

int run_inspect_command(const std::string& input, bool json) {
  io::LoadInfo info;
  auto model = io::load_model(input, &info);
  report::ModelStats stats = report::collect_stats(*model, 10);
  ir::CheckResult check = ir::run_onnx_checker(*model);
  const char* status = check.status == ir::CheckResult::Status::Passed   ? "passed"
                       : check.status == ir::CheckResult::Status::Failed ? "failed"
                                                                         : "not-judged";
  if (json) {
    nlohmann::json j = report::to_json(stats);
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

int run_passes_command(bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& p : pass::registered_passes()) {
      nlohmann::json options = nlohmann::json::array();
      for (const auto& o : p.option_specs()) {
        nlohmann::json option = {{"name", o.name}, {"default", o.default_value}, {"help", o.help}, {"choices", o.choices}};
        if (!o.applies_when.empty()) option["applies_when"] = o.applies_when;
        if (o.min) option["min"] = *o.min;
        if (o.max) option["max"] = *o.max;
        options.push_back(option);
      }
      j.push_back({{"name", p.name}, {"summary", p.summary}, {"options", options}});
    }
    j.push_back({{"name", "fuse"}, {"summary", "Preset group (a fixpoint) of the fusion and cleanup passes"},
                 {"expands_to", pass::kFuseGroup}, {"options", nlohmann::json::array({{{"name", "max-iterations"},
                 {"default", std::to_string(pass::kDefaultFixpointIterations)}, {"help", "rounds before giving up with a warning"},
                 {"choices", nlohmann::json::array()}}})}});
    fmt::print("{}\n", report::dump_json(j));
    return kExitOk;
  }
  for (const auto& p : pass::registered_passes()) {
    fmt::print("{}\n    {}\n", p.name, p.summary);
    for (const auto& o : p.option_specs()) {
      std::string notes = o.choices.empty() ? "" : fmt::format(" ({})", fmt::join(o.choices, "|"));
      if (o.min || o.max) notes += fmt::format(" [{}, {}]", o.min ? fmt::format("{}", *o.min) : "", o.max ? fmt::format("{}", *o.max) : "");
      if (!o.applies_when.empty()) notes += fmt::format(" [with {}]", o.applies_when);
      fmt::print("    {}={}  {}{}\n", o.name, o.default_value, o.help, notes);
    }
  }
  fmt::print("fixpoint(max-iterations={}, PASS, ...)\n    Repeat the passes inside until none changes the model\n",
             pass::kDefaultFixpointIterations);
  fmt::print("fuse(max-iterations={})\n    Preset group: {}\n", pass::kDefaultFixpointIterations, pass::kFuseGroup);
  return kExitOk;
}

// The flags every model-rewriting command shares: output, accuracy data and gates.
struct PipelineCommandFlags {
  OptimizeFlags output;
  DataFlags data;
  GateFlags gates;
};

// A command that rewrites a model: its own flags (`add_options`) come between the output flags and the
// shared accuracy, gate and log flags.
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mopt: make ONNX models smaller and faster, and report what it cost.", "mopt"};
  app.set_version_flag("--version", std::string("mopt ") + MOPT_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 error (bad model, I/O), 2 usage error, 3 a quality gate failed.\n"
      "Run `mopt <command> --help` for a command's options and examples.");

  exec::set_max_tensor_bytes(default_max_tensor_bytes());
  CommonFlags common;
  PipelineCommandFlags optimize_cmd;
  OptimizeFlags& optimize_flags = optimize_cmd.output;
  auto* optimize = add_pipeline_command(
      app, "optimize", "Run a pipeline of passes over a model and write it with a report", ".opt.onnx", optimize_cmd, common,
      [&](CLI::App* cmd) {
        cmd->add_option("--passes", optimize_flags.passes,
                        fmt::format("Pipeline text (default: {}); see `mopt passes`", kDefaultOptimizePipeline));
        cmd->add_option("--pipeline", optimize_flags.pipeline_file, "Pipeline from a YAML or JSON file");
        cmd->add_flag("--print-pipeline", optimize_flags.print_pipeline, "Print the normalized pipeline and exit");
      });
  optimize->footer(
      "Examples:\n"
      "  mopt optimize model.onnx                       # writes model.opt.onnx and model.opt.onnx.report.json\n"
      "  mopt optimize model.onnx --accuracy data/ --labels y.npy --max-accuracy-drop 0.5\n"
      "  mopt optimize model.onnx -o small.onnx --passes 'eliminate-nops,eliminate-dead-code'\n"
      "  mopt optimize model.onnx --passes 'fixpoint(eliminate-nops,eliminate-dead-code),shape-inference'\n"
      "  mopt optimize model.onnx --pipeline pipeline.yaml --verify-each\n"
      "  mopt optimize big.onnx --external-data 1K      # tensors >= 1 KiB go to big.opt.onnx.data");

  PipelineCommandFlags quantize_cmd;
  PassCommandFlags quantize_options(quantize_layout());
  auto* quantize = add_pipeline_command(app, "quantize", "Quantize a model to int8 (dynamic or static) or its MatMul weights to 4/8 bits",
                                    ".int8.onnx", quantize_cmd, common, [&](CLI::App* cmd) {
                                      add_pass_command_flags(cmd, quantize_options, true);
                                      cmd->add_flag("--weight-only", quantize_options.weight_only,
                                                    "Same as --mode weight-only: MatMul weights in 4/8-bit blocks (MatMulNBits)");
                                    });
  quantize->footer(
      "Modes: dynamic (default without --data): MatMul/Gemm weights int8, activations quantized at run time.\n"
      "       static (with --data): calibrated activations, QDQ or QOperator form; Conv, MatMul, Gemm, pooling, reshapes.\n"
      "       weight-only: MatMul weights in blocks of 4 or 8 bits, ONNX Runtime's MatMulNBits.\n"
      "--max-accuracy-drop is also the target of the accuracy-aware fallback: the most sensitive layers stay\n"
      "float until the drop is within it (needs --labels or a classifier-like output).\n"
      "Examples:\n"
      "  mopt quantize model.onnx                                   # dynamic; writes model.int8.onnx + report\n"
      "  mopt quantize model.onnx --data calib.npy --per-channel     # static QDQ, minmax ranges\n"
      "  mopt quantize model.onnx --data calib/ --calibration entropy --format qoperator\n"
      "  mopt quantize model.onnx --data calib.npy --accuracy test.npy --labels y.npy --max-accuracy-drop 1\n"
      "  mopt quantize llm.onnx --weight-only --bits 4 --block-size 32  # writes llm.int4.onnx");

  PipelineCommandFlags fuse_cmd;
  FuseFlags fuse_options;
  auto* fuse = add_pipeline_command(app, "fuse", "Fold constants, fuse operators and clean up the graph, to a fixed point",
                                    ".fused.onnx", fuse_cmd, common, [&](CLI::App* cmd) { add_fuse_flags(cmd, fuse_options); });
  fuse->footer(
      "Runs the `fuse` pass group (see --print-pipeline) until nothing changes: constant folding, shape\n"
      "simplification, no-op and duplicate removal, BatchNorm/Mul/Add/Pad folding into Conv, MatMul+Add -> Gemm,\n"
      "LayerNormalization and Gelu patterns, then dead-code elimination. Every rewrite checks before it changes\n"
      "anything; --explain says why a candidate was left alone.\n"
      "Examples:\n"
      "  mopt fuse model.onnx                                   # writes model.fused.onnx + report\n"
      "  mopt fuse model.onnx --verify-numerics --accuracy data/  # undo any pass that moves the outputs\n"
      "  mopt fuse model.onnx --skip fold-input-normalization --max-folded-bytes 64K\n"
      "  mopt optimize model.onnx --passes 'fuse,quantize'      # the group inside a larger pipeline");

  PipelineCommandFlags prune_cmd;
  PassCommandFlags prune_options({"prune", {}, {}, {}});
  auto* prune = add_pipeline_command(app, "prune", "Zero Conv/MatMul/Gemm weights by magnitude or in an N:M pattern",
                                    ".pruned.onnx", prune_cmd, common, [&](CLI::App* cmd) { add_pass_command_flags(cmd, prune_options, true); });
  prune->footer(
      "Zeros keep the file's dense size: unstructured sparsity pays off after compression (the report's zstd_bytes)\n"
      "or on sparse kernels (2:4 on sparse tensor cores). --method channels removes whole filters and the inputs\n"
      "that read them, so the model gets smaller and faster; without fine-tuning it costs accuracy: measure it.\n"
      "Examples:\n"
      "  mopt prune model.onnx --sparsity 0.5                       # global magnitude; writes model.pruned.onnx\n"
      "  mopt prune model.onnx --sparsity 0.5 --scope layer --skip-first --skip-last\n"
      "  mopt prune model.onnx --method nm --n 2 --m 4\n"
      "  mopt prune model.onnx --method channels --sparsity 0.25 --exclude-nodes stem_conv\n"
      "  mopt prune model.onnx --sparsity 0.6 --accuracy x.npy --labels y.npy --max-accuracy-drop 2   # CI gate");

  PipelineCommandFlags clip_cmd;
  PassCommandFlags clip_options({"clip", {}, {}, {}});
  auto* clip = add_pipeline_command(app, "clip", "Clamp weight outliers (range, percentile or sigma) before quantization",
                                    ".clipped.onnx", clip_cmd, common, [&](CLI::App* cmd) { add_pass_command_flags(cmd, clip_options, true); });
  clip->footer(
      "Weights: at most one of --range, --percentile, --sigma; activations: --data; float16: --fp16-range (any mix, at\n"
      "least one). The report lists per tensor the bounds and how many values moved. Measured: squeezenet static int8 cosine vs float 0.9957 alone, 0.99995 after --percentile 99.9;\n"
      "ppocrv4_det 0.941 alone, 0.904 after it: measure on your model (the accuracy flags below).\n"
      "Examples:\n"
      "  mopt clip model.onnx --percentile 99.9                  # writes model.clipped.onnx\n"
      "  mopt clip model.onnx --sigma 4 --per-channel\n"
      "  mopt clip model.onnx --data calib/ --activation-percentile 99.99   # bounded Relus, tightened Clips\n"
      "  mopt clip model.onnx --range -0.5:0.5 -o clipped.onnx && mopt quantize clipped.onnx --data calib/");

  PipelineCommandFlags convert_cmd;
  PassCommandFlags convert_options(convert_layout());
  auto* convert = add_pipeline_command(app, "convert", "Convert to float16/bfloat16, another opset or IR version, or static input shapes",
                                    ".fp16.onnx", convert_cmd, common, [&](CLI::App* cmd) { add_pass_command_flags(cmd, convert_options, false); });
  convert->get_option("--shape")->description("Make an input's shape static: NAME=1,3,224,224 (repeatable; random data follows it)");
  convert->get_option("--dim")->description("Give a symbolic dimension a value everywhere: NAME=8 (repeatable)");
  convert->footer(
      "float16/bfloat16: operators whose ONNX schema admits the type convert; Resize, TopK, Range, ... (--op-block-list)\n"
      "stay float32; Casts go only where a value crosses between the two, and at inputs/outputs (--keep-io-types).\n"
      "Weights in initializers and Constant nodes, and If/Loop/Scan bodies, are converted too. A node whose weights\n"
      "exceed the float16 range stays float32 (--out-of-range clamp clamps them). The report counts all of it.\n"
      "Output name: <model>.fp16.onnx, .bf16.onnx, .opsetN.onnx or .converted.onnx.\n"
      "Examples:\n"
      "  mopt convert model.onnx --to fp16                         # writes model.fp16.onnx + report\n"
      "  mopt convert model.onnx --to fp16 --auto-mixed --accuracy data/ --min-cosine 0.9995\n"
      "  mopt convert model.onnx --to fp16 --op-block-list default,Softmax --no-keep-io-types\n"
      "  mopt convert old.onnx --opset 13                          # writes old.opset13.onnx\n"
      "  mopt convert model.onnx --batch 1 --shape mask=1,128 -o static.onnx\n"
      "  mopt convert big.onnx --to fp16 --external-data 1M        # tensors >= 1 MiB in big.fp16.onnx.data\n"
      "  mopt convert big.onnx --ir-version 8 --external-data inline -o small.onnx");

  std::string inspect_input;
  bool inspect_json = false;
  auto* inspect = app.add_subcommand("inspect", "Describe a model: opsets, inputs, outputs, operators, parameters");
  inspect->add_option("model", inspect_input, "Input .onnx model")->required();
  inspect->add_flag("--json", inspect_json, "Machine-readable output");
  add_log_flags(inspect, common);
  inspect->footer(
      "Examples:\n"
      "  mopt inspect model.onnx\n"
      "  mopt inspect model.onnx --json | jq .op_histogram");

  std::string compare_original, compare_candidate, compare_report;
  bool compare_json = false, compare_per_layer = false;
  DataFlags compare_data;
  GateFlags compare_gates;
  auto* compare = app.add_subcommand("compare", "Run two models on the same data and report how their outputs differ");
  compare->add_option("original", compare_original, "Original .onnx model")->required();
  compare->add_option("optimized", compare_candidate, "Optimized .onnx model")->required();
  add_data_flags(compare, compare_data, "--data", "random", false, 4);
  add_gate_flags(compare, compare_gates);
  compare->add_option("--report", compare_report, "Also write the JSON report to this file");
  compare->add_flag("--json", compare_json, "Print the JSON report");
  compare->add_flag("--per-layer", compare_per_layer,
                    "Also compare every intermediate value of the original with its counterpart (through QDQ pairs and "
                    "fused nodes), worst first, by original node name");
  add_log_flags(compare, common);
  compare->footer(
      "Examples:\n"
      "  mopt compare model.onnx model.opt.onnx                        # 4 random samples\n"
      "  mopt compare model.onnx model.int8.onnx --data x_test.npy --labels y_test.npy\n"
      "  mopt compare a.onnx b.onnx --data inputs/ --min-cosine 0.999 --max-accuracy-drop 1   # CI gate, exit 3\n"
      "  mopt compare model.onnx model.int8.onnx --data calib/ --per-layer   # which layers lose the most");

  std::string run_model, run_save;
  bool run_json = false;
  DataFlags run_data;
  auto* run = app.add_subcommand("run", "Run a model with the reference executor and show or save its outputs");
  run->add_option("model", run_model, "Input .onnx model")->required();
  add_data_flags(run, run_data, "--data", "random", false, 1);
  run->add_option("--save-outputs", run_save, "Write each output as DIR/<name>.npy (sample_NNNN/ subfolders for several samples)");
  run->add_flag("--json", run_json, "Machine-readable output");
  add_log_flags(run, common);
  run->footer(
      "Examples:\n"
      "  mopt run model.onnx                                  # one random sample\n"
      "  mopt run model.onnx --data inputs/ --save-outputs out/\n"
      "  mopt run model.onnx --data x_test.npy --labels y_test.npy");

  std::string bench_model;
  int bench_warmup = 3, bench_runs = 20;
  bool bench_json = false;
  DataFlags bench_data;
  auto* bench = app.add_subcommand("bench", "Measure the reference executor's latency on a model");
  bench->add_option("model", bench_model, "Input .onnx model")->required();
  add_data_flags(bench, bench_data, "--data", "random", false, 1);
  bench->add_option("--warmup", bench_warmup, "Untimed runs first (default: 3)")->check(CLI::Range(0, 100000));
  bench->add_option("--runs", bench_runs, "Timed runs (default: 20)")->check(CLI::Range(1, 1000000));
  bench->add_flag("--json", bench_json, "Machine-readable output");
  bool bench_profile = false;
  bench->add_flag("--profile", bench_profile, "Also report time per operator type");
  add_log_flags(bench, common);
  bench->footer(
      "Examples:\n"
      "  mopt bench model.onnx --threads 2\n"
      "  mopt bench model.onnx --dim batch=8 --runs 100 --json");

  bool passes_json = false;
  auto* passes = app.add_subcommand("passes", "List every pass with its options");
  passes->add_flag("--json", passes_json, "Machine-readable output");
  passes->footer("Examples:\n  mopt passes\n  mopt passes --json");

  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (argc > 1 && argv[1][0] != '-' && std::find(names.begin(), names.end(), argv[1]) == names.end()) {
    fmt::print(stderr, "mopt: error: unknown command '{}' (commands: {}; see mopt --help)\n", argv[1], fmt::join(names, ", "));
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  apply_log_flags(common);
  try {
    if (optimize->parsed()) {
      return print_or_run(optimize_flags.print_pipeline, {"optimize", ".opt.onnx", optimize_pipeline(optimize_flags)},
                          optimize_flags, optimize_cmd.data, optimize_cmd.gates);
    }
    if (fuse->parsed()) {
      return print_or_run(fuse_options.print_pipeline, {"fuse", ".fused.onnx", fuse_pipeline(fuse_options)}, fuse_cmd.output,
                          fuse_cmd.data, fuse_cmd.gates);
    }
    if (prune->parsed()) {
      return print_or_run(prune_options.print_pipeline,
                          {"prune", ".pruned.onnx", around_fuse(prune_options.pass.element(), !prune_options.no_fuse), "prune"},
                          prune_cmd.output, prune_cmd.data, prune_cmd.gates);
    }
    if (clip->parsed()) {
      return print_or_run(clip_options.print_pipeline,
                          {"clip", ".clipped.onnx", around_fuse(clip_options.pass.element(), !clip_options.no_fuse), "clip",
                           clip_options.pass.value("data")},
                          clip_cmd.output,
                          clip_cmd.data, clip_cmd.gates);
    }
    if (convert->parsed()) {
      Job job{"convert", convert_suffix(convert_options), convert_pipeline(convert_options, convert_cmd.data, convert_cmd.gates),
              "convert"};
      if (convert_options.pass.value("auto-mixed") == "true") job.decisions.push_back("--auto-mixed");
      if (convert_options.pass.given("batch")) job.batch = std::stoll(convert_options.pass.value("batch"));
      return print_or_run(convert_options.print_pipeline, std::move(job), convert_cmd.output, convert_cmd.data, convert_cmd.gates);
    }
    if (quantize->parsed()) {
      const PassCommandFlags& q = quantize_options;
      return print_or_run(q.print_pipeline,
                          {"quantize", quantize_suffix(q), quantize_pipeline(q, quantize_cmd.gates), "quantize", q.pass.value("data")},
                          quantize_cmd.output, quantize_cmd.data, quantize_cmd.gates);
    }
    if (compare->parsed()) return run_compare_command(compare_original, compare_candidate, compare_data, compare_gates, compare_report, compare_json,
                                                     compare_per_layer);
    if (run->parsed()) return run_run_command(run_model, run_data, run_save, run_json);
    if (bench->parsed()) return run_bench_command(bench_model, bench_data, bench_warmup, bench_runs, bench_json, bench_profile);
    if (inspect->parsed()) return run_inspect_command(inspect_input, inspect_json);
    if (passes->parsed()) return run_passes_command(passes_json);
  } catch (const Error& e) {
    print_error(e.what());
    return e.kind() == ErrorKind::Usage ? kExitUsage : kExitError;
  } catch (const std::bad_alloc&) {
    print_error("out of memory: the model or its data needs more memory than this machine can give");
    return kExitError;
  } catch (const std::length_error&) {
    print_error("a size in the model or its data is too large to allocate");
    return kExitError;
  } catch (const std::exception& e) {
    // Library texts ("stoll", "[json.exception...]") are not for users; say where to look instead.
    print_error(fmt::format("internal error ({}); please report it with the model", e.what()));
    return kExitError;
  }
  return kExitUsage;
}
