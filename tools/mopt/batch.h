// mopt batch: one optimizing command over many models, in worker processes, with a manifest that lets a
// killed run resume, a cache of finished work, shards for cluster array jobs and one report for all.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "batch/worklist.h"
#include "cli.h"

namespace mopt::cli {

constexpr int kExitInfrastructure = 4;  // the batch could not finish: interrupted, a worker could not start, I/O

struct BatchFlags {
  std::vector<std::string> work;  // COMMAND INPUT... (or merge PATH...)
  std::string output_dir, manifest, report, markdown, max_memory;
  int jobs = 1;
  double timeout = 0;
  bool resume = false, no_cache = false, dry_run = false;
  int shard_index = -1, shard_count = 0;
  std::vector<std::string> command_flags;  // the command's own flags, split off by split_batch_args
};

void add_batch_flags(CLI::App* cmd, BatchFlags& f);

// The commands a batch runs: those that write a model.
bool is_batch_command(const std::string& name);
std::string batch_command_list();  // "optimize, quantize, ..." for messages

// `mopt batch ...` holds the batch's flags and the command's. Returns the batch's part (to parse with its
// declarations) and keeps the command's in f.command_flags, each checked against `app`'s command.
std::vector<std::string> split_batch_args(CLI::App& app, CLI::App& batch, const std::vector<std::string>& args, BatchFlags& f);

// True when `args` (mopt COMMAND ...) gives an optimizing command more than one model: the batch runs it.
bool names_several_models(CLI::App& app, const std::vector<std::string>& args);

int run_batch_command(BatchFlags& f, const batch::ResolveFlags& resolve, Outcome& outcome);

}  // namespace mopt::cli
