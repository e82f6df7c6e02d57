// A batch's manifest: an append-only JSONL file, one line per finished model (a Record) and one per
// start of a run (a Plan: which outputs that run or shard was given). Each line is written with one
// write() and fsync'd, so a killed run leaves every finished line whole; a torn or corrupted line is
// reported on reading and the rest is kept. The latest line for an output wins.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mopt::batch {

enum class Status { Ok, GateFailed, Error, Unchanged, Cached, Timeout };

std::string to_string(Status status);  // "ok", "gate-failed", "error", "unchanged", "cached", "timeout"
std::optional<Status> status_from(const std::string& text);
// What a later run may reuse (the cache) rather than redo: a model that finished as the command meant.
bool reusable(Status status);

struct Record {
  std::string input, output, report, command;
  std::vector<std::string> args;
  Status status = Status::Error;
  int exit_code = 0;
  std::string message;  // the error, the timeout, why it was unchanged or cached
  std::vector<std::string> failed_gates;
  std::string key;  // sha256 of what decides the output: mopt's version and commit, command, flags, input and data contents
  std::string input_sha256, output_sha256;  // output_sha256 empty when no model was written
  uint64_t input_bytes = 0, output_bytes = 0;
  nlohmann::json accuracy;  // {verdict, data, min_cosine, accuracy_drop_pp} from the model's report, or null
  double seconds = 0;
  std::string finished_at, mopt_version;
  int shard_index = 0, shard_count = 1;
};

nlohmann::json to_json(const Record& record);
Record record_from_json(const nlohmann::json& line);  // throws mopt::Error naming a missing or mistyped field

struct Plan {
  int shard_index = 0, shard_count = 1;
  uint64_t worklist_size = 0;       // models in the whole worklist, all shards
  std::string worklist_sha256;      // of the sorted worklist (inputs, commands, flags): shards must agree on it
  std::vector<std::string> outputs;  // the outputs this shard was given
  std::string started_at;
};

nlohmann::json to_json(const Plan& plan);
Plan plan_from_json(const nlohmann::json& line);

class ManifestWriter {
 public:
  explicit ManifestWriter(const std::filesystem::path& path);  // creates or appends; errors name the file
  ~ManifestWriter();
  ManifestWriter(const ManifestWriter&) = delete;
  ManifestWriter& operator=(const ManifestWriter&) = delete;
  void append(const nlohmann::json& line);  // one line, one write(), fsync

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

struct ManifestContents {
  std::vector<Plan> plans;
  std::vector<Record> records;        // in file order
  std::vector<std::string> problems;  // "manifest.jsonl line 7: not valid JSON (ignored)"
};

// Reads a manifest; a missing file reads as empty. Lines that are not valid records are skipped and named.
ManifestContents read_manifest(const std::filesystem::path& path);

}  // namespace mopt::batch
