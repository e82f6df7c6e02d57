// mopt's commands, as a table: each command parses its flags, builds a pipeline or request and calls the
// library; the work itself lives in lib/, the flags every command shares in cli.h, the commands that only
// read models in commands.cpp. main.cpp (the tool) and api/ (the C++ API, the Python module) run it.
// Exit codes: 0 success, 1 error, 2 usage error, 3 a quality gate failed (the model and report are still
// written).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <new>
#include <stdexcept>

#include <google/protobuf/stubs/common.h>
#include <onnx/common/version.h>

#include "batch.h"
#include "cli.h"
#include "docs.h"
#include "exec/executor.h"
#include "mopt_commit.h"  // generated at build time: MOPT_COMMIT
#include "pass/pipeline.h"
#include "pass_flags.h"
#include "util/error.h"
#include "util/log.h"

namespace {

using namespace mopt;
using namespace mopt::cli;

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
pass::Pipeline around_fuse(const std::vector<pass::PipelineElement>& elements, bool fuse) {
  pass::Pipeline pipeline = pass::parse_pipeline(fuse ? "fuse,eliminate-dead-code" : "eliminate-dead-code");
  pipeline.elements.insert(pipeline.elements.end() - 1, elements.begin(), elements.end());
  return pipeline;
}

std::vector<std::string> names_of(const std::vector<pass::PipelineElement>& elements) {
  std::vector<std::string> names;
  for (const auto& e : elements) names.push_back(e.name);
  return names;
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
          {"max-accuracy-drop", "min-cosine"},  // the gates --max-accuracy-drop and --min-cosine are also the fallback's targets
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
  if (gates.min_cosine > -2) derived.emplace_back("min-cosine", fmt::format("{}", gates.min_cosine));
  // Fusing first matters for speed: a BatchNormalization left between quantized Convs runs in float
  // between Q/DQ pairs (digits_cnn was 1.2-1.6x slower quantized than float in ONNX Runtime).
  return around_fuse(f.pass.elements(derived), !f.no_fuse);
}

std::string quantize_suffix(const PassCommandFlags& f) {
  const bool weight_only = f.weight_only || f.pass.value("mode") == "weight-only";
  return weight_only && f.pass.value("bits") == "4" ? ".int4.onnx" : ".int8.onnx";
}

cli::PassFlagLayout convert_layout() {
  // --shape and --dim (the data flags) fix the model's input dimensions; --min-cosine and --max-accuracy-drop
  // (the gates) are auto-mixed's targets.
  return {"convert", {}, {"shapes", "dims", "min-cosine", "max-accuracy-drop"}, {{"to", "Float precision: fp16 or bf16"}}};
}

// The passes convert runs (the preset's members its flags select); --fuse puts the fuse group before them.
std::vector<pass::PipelineElement> convert_elements(const PassCommandFlags& f, const DataFlags& data, const GateFlags& gates) {
  std::vector<std::pair<std::string, std::string>> derived;
  if (!data.shapes.empty()) derived.emplace_back("shapes", fmt::format("{}", fmt::join(data.shapes, ";")));
  if (!data.dims.empty()) derived.emplace_back("dims", fmt::format("{}", fmt::join(data.dims, ",")));
  if (f.pass.value("auto-mixed") == "true") {
    if (gates.max_accuracy_drop >= 0) derived.emplace_back("max-accuracy-drop", fmt::format("{}", gates.max_accuracy_drop));
    if (gates.min_cosine > -2) derived.emplace_back("min-cosine", fmt::format("{}", gates.min_cosine));
  }
  return f.pass.elements(derived);
}

std::string convert_suffix(const PassCommandFlags& f) {
  if (f.pass.given("to")) return "." + f.pass.value("to") + ".onnx";
  if (f.pass.given("opset")) return fmt::format(".opset{}.onnx", f.pass.value("opset"));
  return ".converted.onnx";
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

const char* kDefaultOptimizePipeline = "fuse";

pass::Pipeline optimize_pipeline(const OptimizeFlags& f) {
  if (!f.passes.empty() && !f.pipeline_file.empty()) usage_error("give --passes or --pipeline, not both");
  if (!f.pipeline_file.empty()) return pass::load_pipeline_file(f.pipeline_file);
  return pass::parse_pipeline(f.passes.empty() ? kDefaultOptimizePipeline : f.passes);
}

// The command line for `command` with `flags` resolved against its declarations (cli.h, run_tool).
std::vector<std::string> command_line(CLI::App& app, const std::string& command, const std::vector<std::string>& positional,
                                      const cli::FlagValues& flags) {
  CLI::App* sub = nullptr;
  for (CLI::App* candidate : app.get_subcommands({})) {
    if (candidate->get_name() == command) sub = candidate;
  }
  if (!sub || sub->get_group().empty()) usage_error("unknown command '{}' (see mopt --help)", command);
  std::vector<std::string> args = {"mopt", command};
  args.insert(args.end(), positional.begin(), positional.end());
  for (const auto& [given_name, value] : flags) {
    std::string name = given_name;
    std::replace(name.begin(), name.end(), '_', '-');
    const CLI::Option* option = name.empty() || name[0] == '-' ? nullptr : sub->get_option_no_throw("--" + name);
    if (!option || option->get_lnames().empty())
      usage_error("mopt {} has no option '{}' (see mopt {} --help)", command, given_name, command);
    if (option->get_expected_min() != 0) {
      args.push_back("--" + name);
      args.push_back(value);
      continue;
    }
    if (value == "true") {
      args.push_back("--" + name);
    } else if (value == "false") {
      // A switch that is off by default needs nothing; one that is on has its --no-NAME.
      if (sub->get_option_no_throw("--no-" + name)) args.push_back("--no-" + name);
    } else {
      usage_error("'{}' is a switch of mopt {}: give true or false, not '{}'", given_name, command, value);
    }
  }
  return args;
}

int run_app(const std::vector<std::string>& given_args, const std::string* command, const std::vector<std::string>* positional,
             const cli::FlagValues* flags, Outcome& outcome) {
  CLI::App app{"mopt: make ONNX models smaller and faster, and report what it cost.", "mopt"};
  app.set_version_flag("--version", version_text());
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
                                                    "Same as --mode weight-only: MatMul weights in 4/8-bit blocks (MatMulNBits, or blocked "
                                                    "DequantizeLinear with --format qdq), embedding (Gather) tables in int8 rows");
                                    });
  quantize->footer(
      "Modes: dynamic (default without --data): MatMul/Gemm weights int8, activations quantized at run time.\n"
      "       static (with --data): calibrated activations, QDQ or QOperator form; Conv, MatMul, Gemm, pooling, reshapes.\n"
      "       weight-only: MatMul weights in blocks of 4 or 8 bits, embedding tables in int8 rows; as ONNX Runtime's\n"
      "       MatMulNBits (default, --format qoperator) or ONNX's blocked DequantizeLinear (--format qdq: opset 21, int4).\n"
      "--max-accuracy-drop and --min-cosine are also targets of the accuracy-aware fallback: the most sensitive\n"
      "layers stay float until the drop is within it (needs --labels or a classifier-like output) and every\n"
      "output's cosine to the original reaches it (any model: detectors, regressors, recurrent state).\n"
      "Examples:\n"
      "  mopt quantize model.onnx                                   # dynamic; writes model.int8.onnx + report\n"
      "  mopt quantize model.onnx --data calib.npy --per-channel     # static QDQ, minmax ranges\n"
      "  mopt quantize model.onnx --data calib/ --calibration entropy --format qoperator\n"
      "  mopt quantize model.onnx --data calib.npy --accuracy test.npy --labels y.npy --max-accuracy-drop 1\n"
      "  mopt quantize detector.onnx --data calib/ --accuracy held_out/ --min-cosine 0.99\n"
      "  mopt quantize llm.onnx --weight-only --bits 4 --block-size 32  # writes llm.int4.onnx\n"
      "  mopt quantize llm.onnx --weight-only --format qdq           # portable int4: any opset-21 runtime");

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

  std::string report_document, report_html, report_markdown;
  auto* report_cmd = app.add_subcommand("report", "Render a saved report as Markdown or HTML, after checking it is a version this mopt reads");
  report_cmd->add_option("document", report_document, "A JSON report of an optimizing command or of compare")->required();
  report_cmd->add_option("--html", report_html, "Write the self-contained HTML page here");
  report_cmd->add_option("--markdown", report_markdown, "Write the Markdown summary here ($GITHUB_STEP_SUMMARY is appended to)");
  add_log_flags(report_cmd, common);
  report_cmd->footer(
      "With neither --html nor --markdown the Markdown summary goes to stdout. A document of another\n"
      "schema_version is named with its version and what changed since (exit 1).\n"
      "Examples:\n"
      "  mopt report model.int8.onnx.report.json\n"
      "  mopt report model.int8.onnx.report.json --html report.html\n"
      "  mopt report model.int8.onnx.report.json --markdown \"$GITHUB_STEP_SUMMARY\"");

  std::string compare_original, compare_candidate, compare_report, compare_html;
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
  compare->add_option("--html", compare_html, "Also write the report as one self-contained HTML page");
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

  bool passes_json = false, passes_markdown = false;
  auto* passes = app.add_subcommand("passes", "List every pass with its options");
  passes->add_flag("--json", passes_json, "Machine-readable output");
  passes->add_flag("--markdown", passes_markdown, "The table of passes, as in the README");
  passes->footer("Examples:\n  mopt passes\n  mopt passes --json | jq '.passes[].name'\n  mopt passes --markdown");

  std::string completion_shell;
  auto* completion = app.add_subcommand("completion", "Print the bash or zsh completion script for mopt");
  completion->add_option("shell", completion_shell, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  completion->footer(
      "Examples:\n"
      "  source <(mopt completion bash)\n"
      "  mopt completion zsh > \"${fpath[1]}/_mopt\"");
  BatchFlags batch_flags;
  auto* batch = app.add_subcommand("batch", "Run an optimizing command over many models: workers, manifest, resume, shards, one report");
  add_batch_flags(batch, batch_flags);
  add_log_flags(batch, common);
  batch->footer(
      "Each model runs in its own worker process (the single command with -O), so one crash never stops the rest.\n"
      "Outputs mirror the input folders below -O. The manifest (JSONL, one line per finished model) makes a killed\n"
      "run resumable (--resume) and finished work reusable (status cached). With Slurm, Kubernetes Indexed Jobs or\n"
      "AWS Batch array jobs each task takes its shard from the environment; `mopt batch merge` joins the shards.\n"
      "Exit codes: 0 all done, 3 only gates failed, 1 a model failed (or is missing), 2 usage error,\n"
      "4 the batch could not finish (interrupted, a worker could not start, I/O): retry with --resume.\n"
      "Examples:\n"
      "  mopt batch quantize models/ -O out/ --data calib/ -j 2\n"
      "  mopt batch convert 'zoo/*/model.onnx' -O fp16/ --to fp16 --min-cosine 0.999 --markdown summary.md\n"
      "  mopt batch jobs.yaml -O out/ --resume --timeout 600\n"
      "  sbatch --array=0-3 --wrap 'mopt batch quantize models/ -O out/'   # then: mopt batch merge out/");

  auto* manpage = app.add_subcommand("manpage", "Print the man page (roff)");
  manpage->group("");  // hidden: the build writes mopt.1 with it

  std::vector<std::string> args = given_args;
  try {
    if (command) args = command_line(app, *command, *positional, *flags);
    outcome.command_line = args;  // as given, for the reports
    // Several models for one optimizing command (mopt quantize a.onnx b.onnx -O out/) run as a batch.
    if (!command && names_several_models(app, args)) args.insert(args.begin() + 1, "batch");
    // A batch's line also holds its command's flags: they are split off and checked against that command.
    if (args.size() > 1 && args[1] == "batch") args = split_batch_args(app, *batch, args, batch_flags);
  } catch (const Error& e) {
    record_error(outcome, e.what());
    outcome.error_kind = "usage";
    return kExitUsage;
  }
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (args.size() > 1 && args[1][0] != '-' && std::find(names.begin(), names.end(), args[1]) == names.end()) {
    record_error(outcome, fmt::format("unknown command '{}' (commands: {}; see mopt --help)", args[1], fmt::join(names, ", ")));
    return kExitUsage;
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    if (!outcome.print_errors) {  // a caller that is not the shell gets the message (help included) as the error
      if (e.get_exit_code() == 0) return kExitOk;
      record_error(outcome, e.what());
      return kExitUsage;
    }
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  apply_log_flags(common);
  try {
    if (optimize->parsed()) {
      return print_or_run(optimize_flags.print_pipeline, {"optimize", ".opt.onnx", optimize_pipeline(optimize_flags)},
                          optimize_flags, optimize_cmd.data, optimize_cmd.gates, outcome);
    }
    if (fuse->parsed()) {
      return print_or_run(fuse_options.print_pipeline, {"fuse", ".fused.onnx", fuse_pipeline(fuse_options)}, fuse_cmd.output,
                          fuse_cmd.data, fuse_cmd.gates, outcome);
    }
    if (prune->parsed()) {
      const auto own = prune_options.pass.elements();
      return print_or_run(prune_options.print_pipeline, {"prune", ".pruned.onnx", around_fuse(own, !prune_options.no_fuse), names_of(own)},
                          prune_cmd.output, prune_cmd.data, prune_cmd.gates, outcome);
    }
    if (clip->parsed()) {
      const auto own = clip_options.pass.elements();
      return print_or_run(clip_options.print_pipeline,
                          {"clip", ".clipped.onnx", around_fuse(own, !clip_options.no_fuse), names_of(own), clip_options.pass.value("data")},
                          clip_cmd.output, clip_cmd.data, clip_cmd.gates, outcome);
    }
    if (convert->parsed()) {
      const auto own = convert_elements(convert_options, convert_cmd.data, convert_cmd.gates);
      pass::Pipeline pipeline = convert_options.fuse ? pass::parse_pipeline("fuse") : pass::Pipeline{};
      pipeline.elements.insert(pipeline.elements.end(), own.begin(), own.end());
      Job job{"convert", convert_suffix(convert_options), std::move(pipeline), names_of(own)};
      if (convert_options.pass.value("auto-mixed") == "true") job.decisions.push_back("--auto-mixed");
      if (convert_options.pass.given("batch")) job.batch = std::stoll(convert_options.pass.value("batch"));
      return print_or_run(convert_options.print_pipeline, std::move(job), convert_cmd.output, convert_cmd.data, convert_cmd.gates, outcome);
    }
    if (quantize->parsed()) {
      const PassCommandFlags& q = quantize_options;
      return print_or_run(q.print_pipeline,
                          {"quantize", quantize_suffix(q), quantize_pipeline(q, quantize_cmd.gates), {"quantize"}, q.pass.value("data")},
                          quantize_cmd.output, quantize_cmd.data, quantize_cmd.gates, outcome);
    }
    if (compare->parsed()) return run_compare_command(compare_original, compare_candidate, compare_data, compare_gates, compare_report, compare_html, compare_json,
                                                     compare_per_layer, outcome);
    if (run->parsed()) return run_run_command(run_model, run_data, run_save, run_json, outcome.command_line);
    if (bench->parsed()) return run_bench_command(bench_model, bench_data, bench_warmup, bench_runs, bench_json, bench_profile,
                                                  outcome.command_line);
    if (inspect->parsed()) return run_inspect_command(inspect_input, inspect_json, outcome.command_line);
    if (report_cmd->parsed()) return run_report_command(report_document, report_html, report_markdown);
    if (passes->parsed()) return run_passes_command(passes_json, passes_markdown, outcome.command_line);
    if (batch->parsed()) {
      const batch::ResolveFlags resolve = [&](const std::string& name, const batch::FlagValues& values) {
        if (!is_batch_command(name)) usage_error("mopt batch runs one of {}, not '{}'", batch_command_list(), name);
        const std::vector<std::string> line = command_line(app, name, {}, values);
        return std::vector<std::string>(line.begin() + 2, line.end());
      };
      return run_batch_command(batch_flags, resolve, outcome);
    }
    if (completion->parsed()) {
      fmt::print("{}", completion_shell == "bash" ? bash_completion(app) : zsh_completion(app));
      return kExitOk;
    }
    if (manpage->parsed()) {
      fmt::print("{}", man_page(app, MOPT_VERSION));
      return kExitOk;
    }
  } catch (const Error& e) {
    record_error(outcome, e.what());
    outcome.error_kind = e.kind() == ErrorKind::Usage ? "usage" : e.kind() == ErrorKind::Unchanged ? "unchanged" : "failure";
    return e.kind() == ErrorKind::Usage ? kExitUsage : kExitError;
  } catch (const std::bad_alloc&) {
    record_error(outcome, "out of memory: the model or its data needs more memory than this machine can give");
    outcome.error_kind = "out-of-memory";
    return kExitError;
  } catch (const std::length_error&) {
    record_error(outcome, "a size in the model or its data is too large to allocate");
    outcome.error_kind = "out-of-memory";
    return kExitError;
  } catch (const std::exception& e) {
    // Library texts ("stoll", "[json.exception...]") are not for users; say where to look instead.
    record_error(outcome, fmt::format("internal error ({}); please report it with the model", e.what()));
    outcome.error_kind = "internal";
    return kExitError;
  }
  return kExitUsage;
}

}  // namespace

namespace mopt::cli {

// "mopt 0.1.0 (commit 1a2b3c4; built with ONNX 1.12.0, protobuf 3.21.12)": what a bug report needs.
std::string version_text() {
  return fmt::format("mopt {} (commit {}; built with ONNX {}, protobuf {}.{}.{})", MOPT_VERSION, MOPT_COMMIT,
                     onnx::LAST_RELEASE_VERSION, GOOGLE_PROTOBUF_VERSION / 1000000, GOOGLE_PROTOBUF_VERSION / 1000 % 1000,
                     GOOGLE_PROTOBUF_VERSION % 1000);
}

void write_outcome_file(const Outcome& outcome, int exit_code, const std::string& path) {
  const nlohmann::json j = {{"exit_code", exit_code},
                            {"error", outcome.error},
                            {"error_kind", outcome.error_kind.empty() && exit_code == kExitUsage ? "usage" : outcome.error_kind},
                            {"output", outcome.output},
                            {"report", outcome.report},
                            {"failed_gates", outcome.failed_gates}};
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (!file) return;  // the batch then reads the worker's log instead
  fmt::print(file, "{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  std::fclose(file);
}

int run_tool(const std::vector<std::string>& args, Outcome& outcome) {
  return run_app(args, nullptr, nullptr, nullptr, outcome);
}

int run_tool(const std::string& command, const std::vector<std::string>& positional, const FlagValues& flags, Outcome& outcome) {
  return run_app({}, &command, &positional, &flags, outcome);
}

}  // namespace mopt::cli
