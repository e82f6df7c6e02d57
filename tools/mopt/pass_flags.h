// Command-line flags generated from a pass's option table (pass::OptionSpec): `mopt prune --sparsity 0.3` is
// prune(sparsity=0.3), with the help text, default, choices and range the pass declares. A command lists
// only how its flags differ from the table (a renamed flag, options it sets itself); a new option in a
// pass's table is a new flag of its command with no CLI code.
#pragma once
#include <CLI/CLI.hpp>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pass/pipeline.h"

namespace mopt::cli {

struct PassFlagLayout {
  std::string pass;                              // the registered pass or preset the flags configure
  std::map<std::string, std::string> renamed;    // option -> flag name (without "--"), where they differ
  std::set<std::string> omitted;                 // options the command derives from its other flags
  std::map<std::string, std::string> help;       // option -> help text, where the command's meaning differs
};

class PassFlags {
 public:
  explicit PassFlags(PassFlagLayout layout);
  PassFlags(const PassFlags&) = delete;
  PassFlags& operator=(const PassFlags&) = delete;

  // Adds one flag per option of the pass (a switch for a boolean, with --no-NAME when it defaults to true).
  void add_to(CLI::App* cmd);
  // Whether the user gave the option's flag.
  bool given(const std::string& option) const;
  // The option's value as pipeline text: the flag's, or the table's default.
  std::string value(const std::string& option) const;
  // The pass (or a preset's member passes) with every given flag, then `derived` (options the command sets
  // from its other flags), checked as the pipeline parser checks them (pass::make_elements).
  std::vector<pass::PipelineElement> elements(const std::vector<std::pair<std::string, std::string>>& derived = {}) const;

 private:
  struct Slot {
    const pass::OptionSpec* spec = nullptr;
    CLI::Option* option = nullptr;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;
  };
  std::string text(const Slot& slot) const;
  PassFlagLayout layout_;
  const std::vector<pass::OptionSpec>* specs_ = nullptr;
  std::map<std::string, Slot> slots_;  // by option name; std::map keeps the addresses CLI11 writes to
};

}  // namespace mopt::cli
