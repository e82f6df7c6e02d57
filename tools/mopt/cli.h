// What mopt's commands share: exit codes, the error line, the flags of every model-rewriting command
// (output, accuracy data, gates, logging) and the one way such a command runs (run_pipeline_command).
// main.cpp is the table of commands; commands.cpp holds the commands that only read models.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "driver/optimize.h"
#include "eval/accuracy.h"
#include "pass/pipeline.h"

namespace mopt::cli {

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitGate = 3;

// What one run of the tool leaves for a caller other than the shell (the C++ API, the Python module): the
// error line, and for a model-rewriting command the files it wrote and the gates that failed.
struct Outcome {
  bool print_errors = true;  // also print the error line on stderr, as the shell tool does
  std::vector<std::string> command_line;  // the command line being run (set by run_tool; for the reports)
  std::string error;         // the one-line message of a failed run
  std::string output, report;  // the files written (report: empty when none was)
  std::string document;        // compare's JSON report (a model-rewriting command's report is its file)
  std::vector<std::string> failed_gates;  // "accuracy-drop: 59.17 pp > 1.00 pp"
  // The kind of a failed run: "usage", "failure", "unchanged" (the command's pass changed nothing),
  // "out-of-memory" or "internal"; empty on success and gate failures.
  std::string error_kind;
  // Check the flags and work out the output path (in `output`), but load and write nothing: how
  // `mopt batch` checks every model's command line before any work.
  bool dry_run = false;
  // The mopt executable, for commands that start workers (batch); empty where mopt runs as a library.
  std::string tool_path;
};

// Writes what `outcome` holds, with the exit code, as JSON to `path` (the file a batch worker leaves for
// the batch: MOPT_OUTCOME_FILE).
void write_outcome_file(const Outcome& outcome, int exit_code, const std::string& path);

// The one-line error message: control characters escaped (a model's names cannot forge lines or drive the
// terminal) and at most 1000 characters.
std::string error_line(const std::string& message);
// Keeps the message in `outcome` and, unless told otherwise, prints it on stderr as "mopt: error: ...".
void record_error(Outcome& outcome, const std::string& message);

// "mopt 0.1.0 (commit 1a2b3c4; built with ONNX 1.12.0, protobuf 3.21.12)": what a bug report needs.
std::string version_text();

// Runs the tool as the shell does: args[0] is the program name, args[1] the command. The exit code.
int run_tool(const std::vector<std::string>& args, Outcome& outcome);

// A command's flags as (name, value) pairs, resolved against the command's own declarations: the name
// without "--" (dashes or underscores), a switch "true" or "false" (false selects --no-NAME where the
// command has it), a repeatable flag once per value. An unknown name is a usage error.
using FlagValues = std::vector<std::pair<std::string, std::string>>;
int run_tool(const std::string& command, const std::vector<std::string>& positional, const FlagValues& flags,
             Outcome& outcome);

struct CommonFlags {
  bool quiet = false;
  bool verbose = false;
  std::string color = "auto";
};

void add_log_flags(CLI::App* cmd, CommonFlags& flags);
void apply_log_flags(const CommonFlags& flags);

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
                    int default_samples);
driver::AccuracyRequest accuracy_request(const DataFlags& f);
eval::Feedback feedback_of(const ir::Model& model, const DataFlags& f);

// Half the physical memory: the executor's default limit per tensor, so a malformed shape fails with a
// message instead of the kernel's out-of-memory killer.
uint64_t default_max_tensor_bytes();

// "1024", "64K", "1M", "2G" -> bytes; nullopt for ""; a usage error naming `flag` otherwise.
std::optional<uint64_t> parse_size(const std::string& text, const char* flag);

struct GateFlags {
  double max_accuracy_drop = -1, min_cosine = -2;
  std::string max_size;
  bool fail_on_degraded = false;
};

void add_gate_flags(CLI::App* cmd, GateFlags& f);
eval::Gates gates_of(const GateFlags& f);
// The flags that decide on the accuracy data: refused on random data the user did not ask for.
std::vector<std::string> accuracy_decisions(const GateFlags& f);
// Prints each failed gate and keeps it in `outcome`; kExitGate when one failed.
int report_gates(const std::vector<eval::GateResult>& gates, Outcome& outcome);

struct OptimizeFlags {
  std::string input, output, output_dir, report, markdown, html, passes, pipeline_file;
  std::string external_data;  // "" = keep the input's layout
  bool in_place = false, print_pipeline = false, verify_each = false, explain = false, no_compressed_size = false,
       verify_numerics = false, allow_unchanged = false, no_per_layer = false;
  double numerics_tolerance = 1e-4;
};

void add_model_output_flags(CLI::App* cmd, OptimizeFlags& f, const std::string& suffix);

// What a model-rewriting command runs, beyond its flags.
struct Job {
  Job(std::string command_, std::string suffix_, pass::Pipeline pipeline_, std::vector<std::string> required_change_ = {},
      std::string calibration_ = "")
      : command(std::move(command_)), suffix(std::move(suffix_)), pipeline(std::move(pipeline_)),
        required_change(std::move(required_change_)), calibration(std::move(calibration_)) {}
  std::string command, suffix;
  pass::Pipeline pipeline;
  std::vector<std::string> required_change;  // the passes the command exists to run: one must change the model
  std::string calibration;             // calibration data, measured on when --accuracy is not given
  std::vector<std::string> decisions;  // the command's own flags that decide on the data (--auto-mixed)
  std::optional<int64_t> batch;        // random data for a model whose batch dimension convert makes static
};

// Runs the job, writes the model and report, prints the summary; the exit code.
int run_pipeline_command(Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags,
                         Outcome& outcome);
// Prints the pipeline (--print-pipeline) or runs it.
int print_or_run(bool print_only, Job job, const OptimizeFlags& f, const DataFlags& data_flags, const GateFlags& gate_flags,
                 Outcome& outcome);

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
                               const std::function<void(CLI::App*)>& add_options);

// The commands that only read models (commands.cpp).
int run_compare_command(const std::string& original_path, const std::string& candidate_path, const DataFlags& f,
                        const GateFlags& gate_flags, const std::string& report_path, const std::string& html_path, bool json, bool per_layer,
                        Outcome& outcome);
int run_run_command(const std::string& model_path, const DataFlags& f, const std::string& save_dir, bool json,
                    const std::vector<std::string>& command_line);
int run_bench_command(const std::string& model_path, const DataFlags& f, int warmup, int runs, bool json, bool profile,
                      const std::vector<std::string>& command_line);
int run_inspect_command(const std::string& input, bool json, const std::vector<std::string>& command_line);
// mopt report: a saved report rendered as Markdown (stdout or --markdown) or HTML (--html).
int run_report_command(const std::string& document, const std::string& html, const std::string& markdown);
int run_passes_command(bool json, bool markdown, const std::vector<std::string>& command_line);

}  // namespace mopt::cli
