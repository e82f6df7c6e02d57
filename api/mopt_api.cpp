// libmopt: the C++ API of include/mopt/mopt.h over the tool's own commands (tools/mopt/app.cpp) and the
// core library, so that a call and the command line give the same pipeline, checks and report.
#include "mopt/mopt.h"

#include <fmt/format.h>

#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "cli.h"
#include "io/model_io.h"
#include "pass/pipeline.h"
#include "report/report.h"
#include "report/stats.h"
#include "util/error.h"

namespace mopt::api {

namespace {

// The tool's log level and executor limits are process-wide: one command at a time.
std::mutex& command_mutex() {
  static std::mutex mutex;
  return mutex;
}

[[noreturn]] void rethrow(const mopt::Error& e) { throw Error(cli::error_line(e.what()), e.kind() == ErrorKind::Usage ? 2 : 1); }

template <typename F>
auto translated(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const mopt::Error& e) {
    rethrow(e);
  } catch (const std::bad_alloc&) {
    throw Error("out of memory: the model or its data needs more memory than this machine can give", 1);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot read the report the command wrote", path), 1);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Result run_command(const std::string& command, const std::vector<std::string>& positional, const Options& options) {
  for (const auto& [name, value] : options) {
    if ((name == "output" || name == "o") && value == "-") throw Error("the API writes the model to a file: give an output path, not '-'", 2);
  }
  std::lock_guard<std::mutex> lock(command_mutex());
  cli::Outcome outcome;
  outcome.print_errors = false;
  Result result;
  result.exit_code = cli::run_tool(command, positional, options, outcome);
  if (result.exit_code == cli::kExitError || result.exit_code == cli::kExitUsage) throw Error(outcome.error, result.exit_code);
  result.output = outcome.output;
  result.report_path = outcome.report;
  result.failed_gates = outcome.failed_gates;
  result.report_json = !outcome.document.empty() ? outcome.document : outcome.report.empty() ? "" : read_file(outcome.report);
  return result;
}

}  // namespace

std::string version() { return cli::version_text(); }

Error::Error(const std::string& message, int exit_code) : std::runtime_error(message), exit_code_(exit_code) {}

Result run(const std::string& command, const std::string& input, const Options& options) {
  static const std::set<std::string> kCommands = {"optimize", "quantize", "fuse", "prune", "clip", "convert"};
  if (!kCommands.count(command))
    throw Error(fmt::format("run() takes a model-rewriting command (optimize, quantize, fuse, prune, clip, convert), not '{}'", command), 2);
  return run_command(command, {input}, options);
}

Result compare(const std::string& original, const std::string& candidate, const Options& options) {
  return run_command("compare", {original, candidate}, options);
}

// ------------------------------------------------------------------ Model

struct Model::State {
  std::unique_ptr<ir::Model> model;
  io::LoadInfo info;
  report::RunReport report;
  std::vector<std::string> pipelines;
};

Model::Model(std::unique_ptr<State> state) : state_(std::move(state)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& path) {
  return translated([&] {
    auto state = std::make_unique<State>();
    state->model = io::load_model(path, &state->info);
    state->report.command = "api";
    state->report.input = {path, state->info.file_bytes, state->info.external_bytes, std::nullopt, 0};
    state->report.before = report::collect_stats(*state->model);
    state->report.accuracy_skipped = "not measured: mopt::api::Model does not run the model (mopt::api::run and the tool do)";
    return Model(std::move(state));
  });
}

void Model::run(const std::string& pipeline_text) {
  translated([&] {
    const pass::Pipeline pipeline = pass::parse_pipeline(pipeline_text);
    // A pass that fails leaves the model as it was before this call (the snapshot shares the weights).
    std::unique_ptr<ir::Model> snapshot = io::clone_model(*state_->model);
    pass::PipelineResult result;
    try {
      result = pass::run_pipeline(pipeline, *state_->model);
    } catch (...) {
      state_->model = std::move(snapshot);
      throw;
    }
    pass::PipelineResult& all = state_->report.pipeline_result;
    if (state_->pipelines.empty()) all.input_check = result.input_check;
    all.output_check = result.output_check;
    all.passes.insert(all.passes.end(), result.passes.begin(), result.passes.end());
    all.warnings.insert(all.warnings.end(), result.warnings.begin(), result.warnings.end());
    all.seconds += result.seconds;
    state_->pipelines.push_back(pass::print_pipeline(pipeline));
  });
}

void Model::save(const std::string& path, unsigned long long external_data_threshold) {
  translated([&] {
    io::SaveOptions options;
    if (external_data_threshold > 0) options.external_data_threshold = external_data_threshold;
    else if (state_->info.external_bytes > 0) options.external_data_threshold = 1024;  // keep the input's layout
    const io::SaveInfo saved = io::save_model(*state_->model, path, options);
    state_->report.output = {path, saved.file_bytes, saved.external_bytes, std::nullopt, 0};
  });
}

std::string Model::report_json() const {
  return translated([&] {
    report::RunReport report = state_->report;
    report.pipeline = fmt::format("{}", fmt::join(state_->pipelines, ","));
    report.after = report::collect_stats(*state_->model);
    return report::dump_json(report::to_json(report));
  });
}

}  // namespace mopt::api
