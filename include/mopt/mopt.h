// mopt's C++ API (libmopt, `find_package(mopt)` -> mopt::mopt): the tool's commands as functions, and a
// model to load, run passes on, write and report on. Only standard C++ types cross this header.
//
//   mopt::api::Result r = mopt::api::run("quantize", "model.onnx", {{"data", "calib/"}, {"per-channel", "true"}});
//   // r.output == "model.int8.onnx"; r.report_json is the report the tool writes beside it.
//
//   mopt::api::Model m = mopt::api::Model::load("model.onnx");
//   m.run("fuse,quantize(mode=dynamic)");
//   m.save("model.int8.onnx");
//   std::string report = m.report_json();
//
// Errors are mopt::api::Error with the tool's one-line message. Calls are serialized inside the library
// (the tool's log level and limits are process-wide); Model objects are independent of each other.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mopt::api {

// "mopt 0.1.0 (commit 1a2b3c4; built with ONNX 1.12.0, protobuf 3.21.12)", as `mopt --version` prints it.
std::string version();

// The one-line message the tool prints after "mopt: error: ", and the tool's exit code for it: 1 for a bad
// model, data or file; 2 for a usage error (an unknown command or option, a bad value).
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, int exit_code);
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

// A command's options by the tool's flag names, without "--" (dashes or underscores): {"data", "calib/"},
// {"bits", "4"}. A switch takes "true" or "false"; a repeatable flag (shape, dim) is given once per value.
// `mopt COMMAND --help` lists them; an unknown name is an Error with exit code 2.
using Options = std::vector<std::pair<std::string, std::string>>;

struct Result {
  int exit_code = 0;                      // 0, or 3 when a quality gate failed (the model and report are written)
  std::string output;                     // the model written ("output" option, or the command's default name)
  std::string report_path;                // the JSON report written beside it
  std::string report_json;                // that report's text (README "Report"; compare: its JSON report)
  std::vector<std::string> failed_gates;  // one line per failed gate: "accuracy-drop: ..."
  bool gates_passed() const { return failed_gates.empty(); }
};

// Runs `mopt COMMAND INPUT --option value ...` for a model-rewriting command (optimize, quantize, fuse,
// prune, clip, convert): the same pipeline, accuracy check, gates, atomic writes and report as the tool.
// Logs and the terminal summary go to stderr and stdout as in the tool; {"quiet", "true"} silences them.
Result run(const std::string& command, const std::string& input, const Options& options = {});

// `mopt compare ORIGINAL CANDIDATE`: both models on the same data; report_json is the comparison (also
// written to the "report" option's path when given).
Result compare(const std::string& original, const std::string& candidate, const Options& options = {});

// A model held in memory, for pipelines run step by step. Passes are checked as in the tool (the graph is
// valid after each); accuracy is not measured here (run() measures it).
class Model {
 public:
  static Model load(const std::string& path);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  // Runs pipeline text as `mopt optimize --passes` takes it (see `mopt passes`), e.g. "fuse,eliminate-dead-code".
  void run(const std::string& pipeline);
  // Writes the model atomically. external_data_threshold: tensors of at least that many bytes go to
  // <path>.data (models over 2 GB need it); 0 keeps the loaded model's layout.
  void save(const std::string& path, unsigned long long external_data_threshold = 0);
  // The report of everything since load, in the tool's report format: sizes (of the last save), model
  // statistics before and now, every pass run with its counters, warnings; accuracy null with the reason.
  std::string report_json() const;

 private:
  struct State;
  explicit Model(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace mopt::api
