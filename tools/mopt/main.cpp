// mopt, the command-line tool: the commands are in app.cpp (shared with the C++ API and the Python module).
#include <string>
#include <vector>

#include "cli.h"

int main(int argc, char** argv) {
  mopt::cli::Outcome outcome;
  return mopt::cli::run_tool(std::vector<std::string>(argv, argv + argc), outcome);
}
