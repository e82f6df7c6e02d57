// Runs a batch's worker processes: at most `jobs` at a time, within a memory budget, each with a time
// limit, each in its own process group (a crash, an out-of-memory kill or a hang in one model never takes
// the batch down). The first SIGINT stops starting new workers and lets the running ones finish; a second
// SIGINT, or SIGTERM, stops them (they remove their temporary files) and abandons their models.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mopt::batch {

struct Task {
  std::vector<std::string> argv;  // argv[0]: the executable
  std::vector<std::pair<std::string, std::string>> env;  // added to the environment
  std::string log_path;  // the worker's stdout and stderr
  uint64_t memory = 0;   // estimated peak bytes
};

struct Exit {
  int exit_code = -1;   // -1 when a signal ended it
  int signal = 0;
  bool timed_out = false;
  double seconds = 0;
};

struct RunLimits {
  int jobs = 1;
  uint64_t max_memory = 0;  // 0: no budget
  double timeout_seconds = 0;  // 0: none
};

// Calls on_finish(index, exit) on the calling thread as each task ends. Returns false when a signal
// interrupted the batch (the tasks without an on_finish call were not finished).
bool run_tasks(const std::vector<Task>& tasks, const RunLimits& limits, const std::function<void(size_t)>& on_start,
               const std::function<void(size_t, const Exit&)>& on_finish);

// "SIGSEGV", "SIGKILL", ... for messages.
std::string signal_name(int signal);

}  // namespace mopt::batch
