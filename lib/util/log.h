// Logging to stderr with a process-wide verbosity, and progress of long work (Phase). Results go to
// stdout or files, never through here.
#pragma once
#include <fmt/format.h>
#include <chrono>
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

// Columns of the terminal `stream` writes to; 0 when it is not a terminal (files, pipes, CI logs).
int terminal_width(std::FILE* stream);
// Columns `text` takes on a terminal: UTF-8 code points, colour escapes not counted.
size_t display_width(const std::string& text);
// `text` fitted to `width` columns: each longer line wrapped at spaces, its continuation indented two more
// than the line; a word wider than the room left keeps its head and tail around "…". Width 0 changes nothing.
std::string fit(const std::string& text, size_t width);
// fit() to the terminal `stream` writes to: on a terminal lines fit its width; elsewhere they stay whole,
// so logs and pipes can be searched.
std::string fit(const std::string& text, std::FILE* stream);

// Writes one or more finished lines to stderr (a newline is added), fitted to the terminal, after
// clearing a progress line that is showing; the progress line is drawn again below them.
void line(const std::string& text);

template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal) line(fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void verbose(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Verbose) line(fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  if (level() >= Level::Normal) line(paint("warning:", Paint::Warning, stderr) + " " + fmt::format(format, std::forward<Args>(args)...));
}

// Phases are shown only when the program asks (the command-line tool does; a library user's stderr stays
// quiet) and not with -q.
void set_show_phases(bool show);

// A phase of long work (loading, calibrating, an accuracy run, the fallback search), from construction to
// destruction; phases nest (calibration inside the passes).
// - On a terminal (not TERM=dumb): one status line redrawn in place, "mopt: passes › calibrating [#####-----] 12/40 samples
//   3 s, 4 s left", cleared when the outermost phase ends (with -v each finished phase keeps a line).
// - Elsewhere: a line when an outermost phase ends, with its time ("mopt: calibrating: 40 samples, 3.21 s");
//   nested ones too with -v; and a line every 10 s while any phase runs, so a CI log shows signs of life.
// - A phase ended by an exception prints nothing: the error says what happened.
class Phase {
 public:
  explicit Phase(std::string name, size_t total = 0, std::string unit = "");
  ~Phase();
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;
  // `done` of `total` steps are finished.
  void set_done(size_t done);
  void advance() { set_done(done_ + 1); }
  // A short note after the count ("2 failed", "7 layers in float"); redrawn with the line.
  void set_note(std::string note);
  // Ends the phase before its scope does (the destructor then does nothing).
  void end();

 private:
  friend struct PhaseAccess;
  std::string name_, unit_, note_;
  size_t total_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point start_;
  Phase* parent_ = nullptr;
  int exceptions_ = 0;
  bool ended_ = false;
};

}  // namespace mopt::log
