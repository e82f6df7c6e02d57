// Logging to stderr with a process-wide verbosity. Results go to stdout or files, never through here.
#pragma once
#include <fmt/format.h>
#include <cstdio>
#include <string>

namespace mopt::log {

enum class Level { Quiet = 0, Normal = 1, Verbose = 2 };

Level level();
void set_level(Level level);
bool stderr_is_terminal();

// Colour on the terminal: auto (only on a terminal, and not when NO_COLOR is set or TERM is dumb), always
// or never (--color WHEN). Files, pipes and CI logs get plain text.
enum class ColorMode { Auto, Always, Never };
void set_color(ColorMode mode);
bool colored(std::FILE* stream);  // stdout or stderr
enum class Paint { Error, Warning, Good, Bold };
// `text` in the paint's colour when `stream` is coloured, else as it is.
std::string paint(const std::string& text, Paint paint, std::FILE* stream);

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
  if (level() >= Level::Normal)
    fmt::print(stderr, "{} {}\n", paint("warning:", Paint::Warning, stderr), fmt::format(format, std::forward<Args>(args)...));
}

// A status line for long work, shown only on a terminal (never in CI logs or pipes).
template <typename... Args>
void progress(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal && stderr_is_terminal())
    fmt::print(stderr, "mopt: {}...\n", fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mopt::log
