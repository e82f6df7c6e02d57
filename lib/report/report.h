// The report every optimizing command writes (JSON, schema_version kSchemaVersion) and the short table printed on
// the terminal. Field reference: README.md "Report".
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "pass/manager.h"
#include "report/stats.h"
#include "util/sha256.h"

namespace mopt::report {

// 2: accuracy.data is an object (kind, description, note); cosine_similarity and snr_db are null when
// undefined (undefined_reason says why); accuracy.verdict; outputs[].new_nonfinite.
// 3: the header (tool with commit and library versions; invocation: command_line, started_at,
// exit_status); gates[] measured/limit are numbers in `unit` (null with unmeasured_reason); non-finite
// metrics are null, named in undefined_reason; labels.accuracy_drop_pp (points) replaces the fraction.
// 4: invocation.duration_seconds, invocation.inputs and invocation.outputs ([{path, bytes, sha256}] of the
// files read and written); the report's `size` section; passes --json is a document with the header and
// `passes` (it was a bare array).
// docs/schema/ holds the JSON Schema of every document.
constexpr int kSchemaVersion = 4;

// How a document came to be: the header every JSON document mopt writes starts with.
struct Invocation {
  Invocation() = default;
  explicit Invocation(std::vector<std::string> line, std::chrono::system_clock::time_point start = std::chrono::system_clock::now(),
                      int exit = 0)
      : command_line(std::move(line)), started(start), exit_status(exit) {}
  std::vector<std::string> command_line;  // as given (argv, or the API's equivalent)
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  int exit_status = 0;  // 0, or 3 when a quality gate failed (a document is never written on errors)
  std::vector<FileDigest> inputs;   // the files read: models (with external data) and data
  std::vector<FileDigest> outputs;  // the files written, other than the document itself
};

// {schema_version, tool: {name, version, commit, onnx, protobuf}, invocation: {command_line, started_at,
// duration_seconds (until this call), exit_status, inputs, outputs ([{path, bytes, sha256}])}}; other
// fields are added to it.
nlohmann::json header(const Invocation& invocation);

struct FileSizes {
  std::string path;
  uint64_t file_bytes = 0;
  uint64_t external_bytes = 0;
  std::optional<uint64_t> zstd_bytes;
  uint64_t zstd_sampled_bytes = 0;  // less than total() when zstd_bytes is an estimate from samples
  uint64_t total() const { return file_bytes + external_bytes; }
};

struct RunReport {
  Invocation invocation;
  std::string command;
  std::string pipeline;
  FileSizes input, output;
  ModelStats before, after;
  pass::PipelineResult pipeline_result;
  double load_seconds = 0, save_seconds = 0, total_seconds = 0;
  std::vector<std::string> warnings;  // pipeline warnings are included by to_json
  // Accuracy of the output against the input (eval::to_json(Comparison)); null when not measured, with
  // the reason in accuracy_skipped. Gate results (eval::to_json(gates)); empty when no gate was set.
  nlohmann::json size;  // where the output's bytes are (driver/explain_size.h); null when not computed
  nlohmann::json accuracy;
  std::string accuracy_skipped;
  std::string accuracy_summary;  // lines for the terminal
  std::string verdict_summary;   // "verdict: ..." for the terminal; empty when accuracy was not measured
  std::string layers_summary;    // the worst layers, for the terminal
  bool degraded = false;
  nlohmann::json gates = nlohmann::json::array();
};

// Reads the JSON document `path` that a mopt wrote and says what it is: "report" (an optimizing command's),
// "compare", "run", "bench", "inspect", "passes" or "batch". Throws mopt::Error naming the problem when it
// is not JSON, not mopt's, or of another schema version: an older one is recognised by its version, with
// what changed since and how to get a current one; a newer one asks for a newer mopt.
std::string read_document(const std::string& path, nlohmann::json* document);

// The text shown for an entry of size.largest_float_weights: the reason a pass kept it float, else why
// there is none (16-bit already, or not a weight the command converts).
std::string kept_float_reason(const nlohmann::json& weight);

nlohmann::json to_json(const RunReport& report);
std::string summary_table(const RunReport& report);
// JSON text with invalid UTF-8 in strings replaced, so serializing never fails.
std::string dump_json(const nlohmann::json& json);
// Writes JSON atomically (no partial report on failure).
void write_json(const nlohmann::json& json, const std::string& path);

}  // namespace mopt::report
