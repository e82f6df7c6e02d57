// Worker processes for a batch: fork + execve with everything prepared before the fork (the child only
// calls async-signal-safe functions), reaped by polling waitpid so time limits need no extra thread.
#include "batch/runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "util/error.h"

extern char** environ;

namespace mopt::batch {
namespace {

std::atomic<int> g_interrupts{0};
std::atomic<bool> g_terminate{false};

extern "C" void on_batch_signal(int sig) {
  if (sig == SIGTERM) g_terminate = true;
  if (g_interrupts.fetch_add(1) >= 1) g_terminate = true;
}

using Clock = std::chrono::steady_clock;

struct Running {
  size_t index;
  Clock::time_point started;
  bool terminated = false;  // SIGTERM sent (time limit or abandon)
  bool timed_out = false;
  Clock::time_point terminated_at;
};

pid_t spawn(const Task& task) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const auto& [name, value] : task.env) replaced = replaced || entry.rfind(name + "=", 0) == 0;
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : task.env) env_strings.push_back(name + "=" + value);
  std::vector<char*> argv, envp;
  for (const std::string& a : task.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int log = ::open(task.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) fail("cannot write worker log '{}': {}", task.log_path, std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    fail("cannot start a worker process: {}", std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);                       // its own group: a terminal's Ctrl-C reaches the batch, which decides
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);    // and it goes when the batch is killed
    if (::getppid() != parent) ::_exit(127);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    const char* message = "mopt: error: cannot start the worker process\n";
    (void)!::write(2, message, std::strlen(message));
    ::_exit(127);
  }
  ::close(log);
  ::setpgid(pid, pid);  // also from here, so the group exists before any signal is sent to it
  return pid;
}

}  // namespace

std::string signal_name(int signal) {
  const char* name = sigabbrev_np(signal);
  return name ? fmt::format("SIG{}", name) : fmt::format("signal {}", signal);
}

bool run_tasks(const std::vector<Task>& tasks, const RunLimits& limits, const std::function<void(size_t)>& on_start,
               const std::function<void(size_t, const Exit&)>& on_finish) {
  g_interrupts = 0;
  g_terminate = false;
  struct sigaction action {}, old_int {}, old_term {};
  action.sa_handler = on_batch_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  struct Restore {
    struct sigaction i, t;
    ~Restore() {
      ::sigaction(SIGINT, &i, nullptr);
      ::sigaction(SIGTERM, &t, nullptr);
    }
  } restore{old_int, old_term};

  // SIGCHLD is blocked here and waited for (sigtimedwait), so a finished worker is seen at once rather than
  // at the next poll; the workers unblock it before exec.
  sigset_t child_signal, previous_mask;
  sigemptyset(&child_signal);
  sigaddset(&child_signal, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &child_signal, &previous_mask);
  struct RestoreMask {
    sigset_t mask;
    ~RestoreMask() { ::sigprocmask(SIG_SETMASK, &mask, nullptr); }
  } restore_mask{previous_mask};

  std::vector<size_t> pending;
  for (size_t i = 0; i < tasks.size(); ++i) pending.push_back(i);
  std::map<pid_t, Running> running;
  uint64_t memory_in_use = 0;
  const int jobs = std::max(1, limits.jobs);
  bool announced = false;
  auto stop_all = [&] {
    for (auto& [pid, r] : running) {
      if (!r.terminated) {
        ::kill(-pid, SIGTERM);
        r.terminated = true;
        r.terminated_at = Clock::now();
      }
    }
  };
  while (!running.empty() || (!pending.empty() && g_interrupts == 0 && !g_terminate)) {
    if (g_terminate) stop_all();
    if (g_interrupts > 0 && !announced && !g_terminate) {
      announced = true;
      fmt::print(stderr, "mopt: interrupted: finishing {} running model(s); interrupt again to abandon them\n", running.size());
    }
    // Start what fits: in worklist order, the first pending model within the memory budget (one always runs).
    while (g_interrupts == 0 && !g_terminate && static_cast<int>(running.size()) < jobs && !pending.empty()) {
      auto next = pending.begin();
      if (limits.max_memory > 0) {
        next = std::find_if(pending.begin(), pending.end(),
                            [&](size_t i) { return running.empty() || memory_in_use + tasks[i].memory <= limits.max_memory; });
        if (next == pending.end()) break;
      }
      const size_t index = *next;
      pending.erase(next);
      on_start(index);
      const pid_t pid = spawn(tasks[index]);
      running[pid] = Running{index, Clock::now(), false, false, {}};
      memory_in_use += tasks[index].memory;
    }
    // Reap.
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0 && running.count(pid)) {
      const Running r = running[pid];
      running.erase(pid);
      memory_in_use -= tasks[r.index].memory;
      ::kill(-pid, SIGKILL);  // anything the worker left behind in its group
      if (r.terminated && !r.timed_out) continue;  // abandoned: not finished
      Exit exit;
      exit.seconds = std::chrono::duration<double>(Clock::now() - r.started).count();
      exit.timed_out = r.timed_out;
      if (WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
      on_finish(r.index, exit);
      continue;
    }
    if (pid < 0 && errno == ECHILD && !running.empty()) running.clear();  // nothing left to wait for
    // Time limits: SIGTERM first (the worker removes its temporary files), SIGKILL 5 s later.
    const auto now = Clock::now();
    for (auto& [p, r] : running) {
      if (!r.terminated && limits.timeout_seconds > 0 &&
          std::chrono::duration<double>(now - r.started).count() > limits.timeout_seconds) {
        ::kill(-p, SIGTERM);
        r.terminated = r.timed_out = true;
        r.terminated_at = now;
      } else if (r.terminated && now - r.terminated_at > std::chrono::seconds(5)) {
        ::kill(-p, SIGKILL);
      }
    }
    // Until a worker ends, a signal arrives or 50 ms pass (time limits and escalation are checked then).
    const timespec pause{0, 50 * 1000 * 1000};
    ::sigtimedwait(&child_signal, nullptr, &pause);
  }
  return g_interrupts == 0 && !g_terminate;
}

}  // namespace mopt::batch
