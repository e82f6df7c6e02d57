// Logging to stderr with a process-wide verbosity. Results go to stdout or files, never through here.
#pragma once
#include <fmt/format.h>
#include <cstdio>

namespace mopt::log {

enum class Level { Quiet = 0, Normal = 1, Verbose = 2 };

Level level();
void set_level(Level level);
bool stderr_is_terminal();

template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal) fmt::print(stderr, "{}\n", fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void verbose(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Verbose) fmt::print(stderr, "{}\n", fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal) fmt::print(stderr, "warning: {}\n", fmt::format(format, std::forward<Args>(args)...));
}

// A status line for long work, shown only on a terminal (never in CI logs or pipes).
template <typename... Args>
void progress(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal && stderr_is_terminal())
    fmt::print(stderr, "mopt: {}...\n", fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mopt::log
