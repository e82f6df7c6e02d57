// Process-wide log level; see log.h.
#include "util/log.h"

#include <unistd.h>

namespace mopt::log {
namespace {
Level g_level = Level::Normal;
}
Level level() { return g_level; }
void set_level(Level l) { g_level = l; }
bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }
}  // namespace mopt::log
