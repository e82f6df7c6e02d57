// Process-wide log level, colour, fitting lines to the terminal and the progress of phases; see log.h.
#include "util/log.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <vector>

namespace mopt::log {
namespace {
Level g_level = Level::Normal;
ColorMode g_color = ColorMode::Auto;
bool g_show_phases = false;

using Clock = std::chrono::steady_clock;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr auto kHeartbeatInterval = std::chrono::seconds(10);

// The phases running, innermost last, and what is on the terminal. Lines may come from worker threads.
std::mutex g_mutex;
Phase* g_innermost = nullptr;
bool g_status_drawn = false;
Clock::time_point g_last_draw, g_last_heartbeat;

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Byte offsets where each code point of `word` starts, and the end.
std::vector<size_t> code_point_starts(const std::string& word) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < word.size(); ++i) {
    if (!is_continuation(static_cast<unsigned char>(word[i]))) starts.push_back(i);
  }
  starts.push_back(word.size());
  return starts;
}

// `word` in `room` columns: head, "…", tail. Painted words (escapes) are short labels, kept as they are.
std::string elide(const std::string& word, size_t room) {
  if (word.find('\033') != std::string::npos || room == 0) return word;
  const std::vector<size_t> at = code_point_starts(word);
  const size_t points = at.size() - 1;
  if (points <= room) return word;
  const size_t head = (room - 1) / 2, tail = room - 1 - head;
  return word.substr(0, at[head]) + "\u2026" + word.substr(at[points - tail]);
}

std::string fit_line(const std::string& text, size_t width) {
  if (display_width(text) <= width) return text;
  size_t pos = text.find_first_not_of(' ');
  if (pos == std::string::npos) return text;
  const size_t continuation = std::min(pos + 2, width / 2);
  std::string out, current = text.substr(0, pos);
  size_t current_width = pos;
  bool line_empty = true;
  while (pos < text.size()) {
    const size_t word_start = text.find_first_not_of(' ', pos);
    if (word_start == std::string::npos) break;
    std::string gap = text.substr(pos, word_start - pos);
    const size_t word_end = std::min(text.find(' ', word_start), text.size());
    std::string word = text.substr(word_start, word_end - word_start);
    pos = word_end;
    if (line_empty) gap.clear();
    const size_t room_here = width > current_width + gap.size() ? width - current_width - gap.size() : 0;
    // A word too wide for any line is shortened where it stands (a table cell keeps its row) when there is room.
    const bool fits_nowhere = display_width(word) > width - continuation;
    if (!line_empty && display_width(word) > room_here && !(fits_nowhere && room_here >= 16)) {
      out += current + "\n";
      current = std::string(continuation, ' ');
      current_width = continuation;
      gap.clear();
    }
    const size_t room = width > current_width + gap.size() ? width - current_width - gap.size() : 1;
    if (display_width(word) > room) word = elide(word, room);
    current += gap + word;
    current_width += gap.size() + display_width(word);
    line_empty = false;
  }
  return out + current;
}

std::string format_seconds(double s) {
  if (s < 60) return fmt::format("{:.{}f} s", s, s < 10 ? 2 : 1);
  return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
}

bool phases_shown() { return g_show_phases && g_level >= Level::Normal; }

// A status line redrawn in place needs a terminal that understands "erase line" (not TERM=dumb).
bool status_line_allowed() {
  const char* term = std::getenv("TERM");
  return stderr_is_terminal() && !(term && std::strcmp(term, "dumb") == 0);
}

}  // namespace

// The phase state the status line and the finished lines are built from (friend of Phase).
struct PhaseAccess {
  static std::string path(const Phase& p) {
    return p.parent_ ? path(*p.parent_) + " \u203a " + p.name_ : p.name_;
  }
  static double seconds(const Phase& p) { return std::chrono::duration<double>(Clock::now() - p.start_).count(); }
  static std::string count(const Phase& p) {
    if (p.total_ == 0) return p.done_ ? fmt::format("{}{}", p.done_, p.unit_.empty() ? "" : " " + p.unit_) : "";
    return fmt::format("{}/{}{}", p.done_, p.total_, p.unit_.empty() ? "" : " " + p.unit_);
  }

  // "mopt: passes › calibrating [#####-----] 12/40 samples, 3.0 s, 4 s left, note", fitted to `width`.
  static std::string status(const Phase& p, size_t width) {
    std::string right;
    const double elapsed = seconds(p);
    if (p.total_ > 0) {
      const size_t bar = width >= 100 ? 24 : width >= 60 ? 12 : 0;
      const size_t filled = bar * std::min(p.done_, p.total_) / p.total_;
      if (bar) right += " [" + std::string(filled, '#') + std::string(bar - filled, '-') + "]";
    }
    const std::string counted = count(p);
    if (!counted.empty()) right += " " + counted;
    right += ", " + format_seconds(elapsed);
    if (p.total_ > 0 && p.done_ > 0 && p.done_ < p.total_)
      right += ", " + format_seconds(elapsed / static_cast<double>(p.done_) * static_cast<double>(p.total_ - p.done_)) + " left";
    if (!p.note_.empty()) right += ", " + p.note_;
    std::string left = "mopt: " + path(p);
    const size_t right_width = display_width(right);
    if (width > 0 && display_width(left) + right_width >= width) {
      if (right_width + 10 >= width) return elide(left + right, width - 1);
      left = elide(left, width - 1 - right_width);
    }
    return left + right;
  }

  static std::string finished(const Phase& p) {
    const std::string counted = count(p);
    return fmt::format("mopt: {}: {}{}{}", path(p), counted.empty() ? "" : counted + ", ", format_seconds(seconds(p)),
                       p.note_.empty() ? "" : ", " + p.note_);
  }
};

namespace {

void clear_status() {
  if (g_status_drawn) std::fputs("\r\033[K", stderr);
  g_status_drawn = false;
}

void draw_status() {
  if (!g_innermost) return;
  const int width = terminal_width(stderr);
  std::fputs(("\r\033[K" + PhaseAccess::status(*g_innermost, static_cast<size_t>(width))).c_str(), stderr);
  std::fflush(stderr);
  g_status_drawn = true;
  g_last_draw = Clock::now();
}

void write_line(const std::string& text) {
  std::fputs((fit(text, stderr) + "\n").c_str(), stderr);
}

// Off a terminal, a line every kHeartbeatInterval while a phase runs.
void heartbeat() {
  if (!g_innermost || Clock::now() - g_last_heartbeat < kHeartbeatInterval) return;
  g_last_heartbeat = Clock::now();
  write_line(PhaseAccess::finished(*g_innermost) + " so far");
  std::fflush(stderr);
}

}  // namespace

Level level() { return g_level; }
void set_level(Level l) { g_level = l; }
bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void set_color(ColorMode mode) { g_color = mode; }

bool colored(std::FILE* stream) {
  if (g_color != ColorMode::Auto) return g_color == ColorMode::Always;
  const char* no_color = std::getenv("NO_COLOR");  // https://no-color.org: set and not empty
  const char* term = std::getenv("TERM");
  return isatty(fileno(stream)) == 1 && !(no_color && *no_color) && !(term && std::strcmp(term, "dumb") == 0);
}

std::string paint(const std::string& text, Paint paint, std::FILE* stream) {
  if (!colored(stream)) return text;
  const char* code = paint == Paint::Error ? "1;31" : paint == Paint::Warning ? "33" : paint == Paint::Good ? "32" : "1";
  return fmt::format("\033[{}m{}\033[0m", code, text);
}

int terminal_width(std::FILE* stream) {
  const int fd = fileno(stream);
  if (fd < 0 || isatty(fd) != 1) return 0;
  winsize size{};
  if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  const char* columns = std::getenv("COLUMNS");  // a terminal that does not say its size
  const int from_env = columns ? std::atoi(columns) : 0;
  return from_env >= 20 && from_env <= 1000 ? from_env : 80;
}

size_t display_width(const std::string& text) {
  size_t width = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\033' && i + 1 < text.size() && text[i + 1] == '[') {  // a colour: ESC [ ... letter
      i += 2;
      while (i < text.size() && !(text[i] >= '@' && text[i] <= '~')) ++i;
      continue;
    }
    if (!is_continuation(static_cast<unsigned char>(text[i]))) ++width;
  }
  return width;
}

std::string fit(const std::string& text, size_t width) {
  if (width == 0) return text;
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t end = text.find('\n', start);
    out += fit_line(text.substr(start, end == std::string::npos ? std::string::npos : end - start), width);
    if (end == std::string::npos) return out;
    out += '\n';
    start = end + 1;
  }
}

std::string fit(const std::string& text, std::FILE* stream) { return fit(text, static_cast<size_t>(terminal_width(stream))); }

void line(const std::string& text) {
  std::lock_guard lock(g_mutex);
  const bool redraw = g_status_drawn;
  clear_status();
  write_line(text);
  if (redraw) draw_status();
  std::fflush(stderr);
}

void set_show_phases(bool show) { g_show_phases = show; }

Phase::Phase(std::string name, size_t total, std::string unit)
    : name_(std::move(name)), unit_(std::move(unit)), total_(total), start_(Clock::now()),
      exceptions_(std::uncaught_exceptions()) {
  if (!phases_shown()) return;
  std::lock_guard lock(g_mutex);
  parent_ = g_innermost;
  g_innermost = this;
  if (!parent_) g_last_heartbeat = Clock::now();
  if (status_line_allowed()) draw_status();
}

Phase::~Phase() { end(); }

void Phase::end() {
  if (ended_) return;
  ended_ = true;
  if (!phases_shown() || g_innermost != this) return;
  std::lock_guard lock(g_mutex);
  g_innermost = parent_;
  const bool failed = std::uncaught_exceptions() > exceptions_;
  if (status_line_allowed()) {
    clear_status();
    if (!failed && g_level >= Level::Verbose) write_line(PhaseAccess::finished(*this));
    if (parent_) draw_status();
  } else if (!failed && (!parent_ || g_level >= Level::Verbose)) {
    write_line(PhaseAccess::finished(*this));
  }
  std::fflush(stderr);
}

void Phase::set_done(size_t done) {
  done_ = done;
  if (!phases_shown() || g_innermost != this) return;
  std::lock_guard lock(g_mutex);
  if (!status_line_allowed()) heartbeat();
  else if (Clock::now() - g_last_draw >= kRedrawInterval || done_ == total_) draw_status();
}

void Phase::set_note(std::string note) {
  note_ = std::move(note);
  if (phases_shown() && g_innermost == this && status_line_allowed()) {
    std::lock_guard lock(g_mutex);
    draw_status();
  }
}

}  // namespace mopt::log
