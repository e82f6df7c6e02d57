// mopt: the command-line tool. Each command parses its flags, builds a pipeline or request and calls
// the library; the work itself lives in lib/. Exit codes: 0 success, 1 error, 2 usage error,
// 3 reserved for a failed quality gate.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>

#include "driver/optimize.h"
#include "io/model_io.h"
#include "ir/verify.h"
#include "pass/pipeline.h"
#include "report/stats.h"
#include "util/error.h"
#include "util/log.h"

namespace {

using namespace mopt;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2;

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

// ------------------------------------------------------------------ optimize

struct OptimizeFlags {
  std::string input, output, report, passes, pipeline_file;
  std::string external_data;  // "" = keep the input's layout
  bool in_place = false, print_pipeline = false, verify_each = false, explain = false, no_compressed_size = false;
};

const char* kDefaultOptimizePipeline = "eliminate-identity,eliminate-dead-code";

void add_model_output_flags(CLI::App* cmd, OptimizeFlags& f, const std::string& suffix) {
  cmd->add_option("model", f.input, "Input .onnx model")->required();
  cmd->add_option("-o,--output", f.output, fmt::format("Output model (default: <model>{} beside the input)", suffix));
  cmd->add_option("--report", f.report, "Report path (default: <output>.report.json)");
  cmd->add_flag("--in-place", f.in_place, "Overwrite the input model (atomically)");
  cmd->add_option("--external-data", f.external_data,
                  "Store tensors of at least this many bytes in <output>.data (models over 2 GB need it); "
                  "default: keep the input's layout");
  cmd->add_flag("--verify-each", f.verify_each, "Check IR invariants and the ONNX checker after every pass");
  cmd->add_flag("--explain", f.explain, "Say why each considered rewrite was not applied");
  cmd->add_flag("--no-compressed-size", f.no_compressed_size, "Skip measuring the zstd-compressed sizes");
}

std::optional<uint64_t> parse_threshold(const std::string& text) {
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
    return v * multiplier;
  } catch (const std::exception&) {
    usage_error("--external-data takes a size in bytes (like 1024, 64K or 1M), not '{}'", text);
  }
}

int run_optimize_command(const OptimizeFlags& f) {
  pass::Pipeline pipeline;
  if (!f.passes.empty() && !f.pipeline_file.empty()) usage_error("give --passes or --pipeline, not both");
  if (!f.pipeline_file.empty()) pipeline = pass::load_pipeline_file(f.pipeline_file);
  else pipeline = pass::parse_pipeline(f.passes.empty() ? kDefaultOptimizePipeline : f.passes);
  if (f.print_pipeline) {
    fmt::print("{}\n", pass::print_pipeline(pipeline));
    return kExitOk;
  }
  if (f.in_place && !f.output.empty()) usage_error("give -o/--output or --in-place, not both");
  driver::OptimizeRequest request;
  request.input = f.input;
  request.output = f.output;
  request.report = f.report;
  request.in_place = f.in_place;
  request.pipeline = std::move(pipeline);
  request.manager.verify_each = f.verify_each;
  request.manager.explain = f.explain;
  request.external_data_threshold = parse_threshold(f.external_data);
  request.compressed_size = !f.no_compressed_size;
  driver::OptimizeResult result = driver::run_optimize(request);
  for (const auto& w : result.run.pipeline_result.warnings) log::warn("{}", w);
  if (log::level() >= log::Level::Normal) {
    fmt::print("{}", report::summary_table(result.run));
    fmt::print("wrote {} ({:.2f} s)\nreport {}\n", result.output.string(), result.run.total_seconds, result.report.string());
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
    fmt::print("{}\n", j.dump(2));
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
      for (const auto& o : p.option_specs())
        options.push_back({{"name", o.name}, {"default", o.default_value}, {"help", o.help}, {"choices", o.choices}});
      j.push_back({{"name", p.name}, {"summary", p.summary}, {"options", options}});
    }
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  for (const auto& p : pass::registered_passes()) {
    fmt::print("{}\n    {}\n", p.name, p.summary);
    for (const auto& o : p.option_specs())
      fmt::print("    {}={}  {}{}\n", o.name, o.default_value, o.help,
                 o.choices.empty() ? "" : fmt::format(" ({})", fmt::join(o.choices, "|")));
  }
  fmt::print("fixpoint(max-iterations={}, PASS, ...)\n    Repeat the passes inside until none changes the model\n",
             pass::kDefaultFixpointIterations);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mopt: make ONNX models smaller and faster, and report what it cost.", "mopt"};
  app.set_version_flag("--version", std::string("mopt ") + MOPT_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 error (bad model, I/O), 2 usage error, 3 a quality gate failed.\n"
      "Run `mopt <command> --help` for a command's options and examples.");

  CommonFlags common;
  OptimizeFlags optimize_flags;
  auto* optimize = app.add_subcommand("optimize", "Run a pipeline of passes over a model and write it with a report");
  add_model_output_flags(optimize, optimize_flags, ".opt.onnx");
  optimize->add_option("--passes", optimize_flags.passes,
                       fmt::format("Pipeline text (default: {}); see `mopt passes`", kDefaultOptimizePipeline));
  optimize->add_option("--pipeline", optimize_flags.pipeline_file, "Pipeline from a YAML or JSON file");
  optimize->add_flag("--print-pipeline", optimize_flags.print_pipeline, "Print the normalized pipeline and exit");
  add_log_flags(optimize, common);
  optimize->footer(
      "Examples:\n"
      "  mopt optimize model.onnx                       # writes model.opt.onnx and model.opt.onnx.report.json\n"
      "  mopt optimize model.onnx -o small.onnx --passes 'eliminate-identity,eliminate-dead-code'\n"
      "  mopt optimize model.onnx --passes 'fixpoint(eliminate-identity,eliminate-dead-code),shape-inference'\n"
      "  mopt optimize model.onnx --pipeline pipeline.yaml --verify-each\n"
      "  mopt optimize big.onnx --external-data 1K      # tensors >= 1 KiB go to big.opt.onnx.data");

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
    if (optimize->parsed()) return run_optimize_command(optimize_flags);
    if (inspect->parsed()) return run_inspect_command(inspect_input, inspect_json);
    if (passes->parsed()) return run_passes_command(passes_json);
  } catch (const Error& e) {
    fmt::print(stderr, "mopt: error: {}\n", e.what());
    return e.kind() == ErrorKind::Usage ? kExitUsage : kExitError;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "mopt: error: out of memory\n");
    return kExitError;
  } catch (const std::exception& e) {
    fmt::print(stderr, "mopt: error: {}\n", e.what());
    return kExitError;
  }
  return kExitUsage;
}
