// mopt, the command-line tool: the commands are in app.cpp (shared with the C++ API and the Python module).
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.h"

int main(int argc, char** argv) {
  mopt::cli::Outcome outcome;
  std::error_code ec;
  outcome.tool_path = std::filesystem::read_symlink("/proc/self/exe", ec).string();  // mopt batch's workers run it
  const int code = mopt::cli::run_tool(std::vector<std::string>(argv, argv + argc), outcome);
  // A batch worker leaves its outcome (error kind, failed gates) for the batch that started it.
  if (const char* path = std::getenv("MOPT_OUTCOME_FILE"); path && *path) mopt::cli::write_outcome_file(outcome, code, path);
  return code;
}
