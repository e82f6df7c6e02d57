// The worklist of a batch: models named by paths, globs, folders (searched recursively for *.onnx) or a
// job file (YAML, JSON or JSONL) whose entries may each name their own command and options; sorted, so
// every process that reads the same inputs sees the same list, and split into shards deterministically.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mopt::batch {

namespace fs = std::filesystem;

struct Item {
  std::string input;       // the model's path (as given, or below the folder given)
  std::string relative;    // where its output goes below the output folder: the folders are mirrored
  std::string command;     // quantize, convert, ...
  std::vector<std::string> args;  // the command's flags
  uint64_t bytes = 0;      // the model file and its external data files: what scheduling and sharding weigh
  std::string origin;      // for messages: "models/", "jobs.yaml entry 3 (line 12)"
};

// Flags (name without "--", value; a switch "true"/"false"; a list once per value) resolved against the
// command's declarations; throws a usage error for an unknown command or flag.
using FlagValues = std::vector<std::pair<std::string, std::string>>;
using ResolveFlags = std::function<std::vector<std::string>(const std::string& command, const FlagValues& flags)>;

// The model file and its <model>.data external data file, in bytes (0 when it cannot be read).
uint64_t model_bytes(const fs::path& model);

// Is `path` a job file (by its extension: .yaml, .yml, .json, .jsonl)?
bool is_job_file(const std::string& path);

// Expands each input (a model, a folder, a glob or a job file) into items. Models found by walking a
// folder skip `exclude` (the output folder, when it lies inside an input folder). Models of the same path,
// command and flags appear once. Errors name the input: a missing path, a glob that matches nothing, a
// folder without models, a job file entry with a bad field (entry and line named).
std::vector<Item> expand(const std::vector<std::string>& inputs, const std::string& command,
                         const std::vector<std::string>& args, const fs::path& exclude, const ResolveFlags& resolve);

// Sorted by input, then command and flags: the order every run and every shard agrees on.
void sort_items(std::vector<Item>& items);

// The shard of each item: the largest models first, each to the shard with the fewest bytes so far (the
// lowest index on ties). A function of the sorted worklist alone, so retries and other shards agree.
std::vector<int> assign_shards(const std::vector<Item>& items, int count);

}  // namespace mopt::batch
