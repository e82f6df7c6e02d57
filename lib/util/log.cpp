// Process-wide log level; see log.h.
#include "util/log.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace mopt::log {
namespace {
Level g_level = Level::Normal;
ColorMode g_color = ColorMode::Auto;
}
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
}  // namespace mopt::log
