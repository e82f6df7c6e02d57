// The man page and shell completions, generated from the command-line declarations; see docs.cpp.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

namespace mopt::cli {

std::string bash_completion(const CLI::App& app);
std::string zsh_completion(const CLI::App& app);
std::string man_page(const CLI::App& app, const std::string& version);

}  // namespace mopt::cli
