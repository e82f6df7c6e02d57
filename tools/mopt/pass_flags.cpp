// Flags from a pass's option table; see pass_flags.h.
#include "pass_flags.h"

#include <fmt/format.h>

#include "util/error.h"

namespace mopt::cli {

using Type = pass::OptionSpec::Type;

namespace {
// A lower bound only (CLI::Range would print the type's largest value as the upper one).
CLI::Validator at_least(double min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        return end != text.c_str() && *end == '\0' && v >= min ? "" : fmt::format("Value {} is below {}", text, min);
      },
      fmt::format(">= {}", min));
}
}  // namespace

PassFlags::PassFlags(PassFlagLayout layout) : layout_(std::move(layout)), specs_(pass::option_specs_of(layout_.pass)) {
  if (specs_ == nullptr) fail("internal error: no pass '{}' for its command's flags", layout_.pass);
  for (const pass::OptionSpec& spec : *specs_) {
    if (!layout_.omitted.count(spec.name)) slots_[spec.name].spec = &spec;
  }
}

void PassFlags::add_to(CLI::App* cmd) {
  for (const pass::OptionSpec& spec : *specs_) {
    auto it = slots_.find(spec.name);
    if (it == slots_.end()) continue;
    Slot& slot = it->second;
    const auto renamed = layout_.renamed.find(spec.name);
    const std::string name = renamed == layout_.renamed.end() ? spec.name : renamed->second;
    const auto custom = layout_.help.find(spec.name);
    std::string help = custom != layout_.help.end() ? custom->second : spec.help;
    // Capitalized like the other flags' help, except after a scope prefix ("nm: ...", "magnitude: ...").
    const size_t first_word = help.find_first_of(" :");
    if (!help.empty() && (first_word == std::string::npos || help[first_word] != ':'))
      help[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(help[0])));
    // A default outside the option's range means "unset" (opset=0): not worth printing.
    const double numeric_default = spec.type == Type::Int || spec.type == Type::Float ? std::stod(spec.default_value) : 0;
    const bool unset_default = (spec.min && numeric_default < *spec.min) || (spec.max && numeric_default > *spec.max);
    const bool show_default =
        custom == layout_.help.end() && !spec.default_value.empty() && spec.type != Type::Bool && !unset_default;
    if (show_default) help += fmt::format(" (default: {})", spec.default_value);
    switch (spec.type) {
      case Type::Bool:
        slot.b = spec.default_value == "true";
        slot.option = cmd->add_flag(slot.b ? fmt::format("--{0},!--no-{0}", name) : "--" + name, slot.b,
                                    slot.b ? help + " (default: on)" : help);
        break;
      case Type::Int:
        slot.i = std::stoll(spec.default_value);
        slot.option = cmd->add_option("--" + name, slot.i, help);
        if (spec.min && spec.max) slot.option->check(CLI::Range(static_cast<int64_t>(*spec.min), static_cast<int64_t>(*spec.max)));
        else if (spec.min) slot.option->check(at_least(*spec.min));
        break;
      case Type::Float:
        slot.f = std::stod(spec.default_value);
        slot.option = cmd->add_option("--" + name, slot.f, help);
        if (spec.min && spec.max) slot.option->check(CLI::Range(*spec.min, *spec.max));
        else if (spec.min) slot.option->check(at_least(*spec.min));
        break;
      case Type::String:
        slot.s = spec.default_value;
        slot.option = cmd->add_option("--" + name, slot.s, help);
        break;
      case Type::Choice:
        slot.s = spec.default_value;
        slot.option = cmd->add_option("--" + name, slot.s, help)->check(CLI::IsMember(spec.choices));
        break;
    }
  }
}

bool PassFlags::given(const std::string& option) const {
  auto it = slots_.find(option);
  return it != slots_.end() && it->second.option != nullptr && it->second.option->count() > 0;
}

std::string PassFlags::text(const Slot& slot) const {
  switch (slot.spec->type) {
    case Type::Bool: return slot.b ? "true" : "false";
    case Type::Int: return std::to_string(slot.i);
    case Type::Float: return fmt::format("{}", slot.f);
    case Type::String:
    case Type::Choice: return slot.s;
  }
  return slot.s;
}

std::string PassFlags::value(const std::string& option) const {
  auto it = slots_.find(option);
  if (it == slots_.end()) fail("internal error: '{}' is not a flag of {}", option, layout_.pass);
  return given(option) ? text(it->second) : it->second.spec->default_value;
}

std::vector<pass::PipelineElement> PassFlags::elements(const std::vector<std::pair<std::string, std::string>>& derived) const {
  std::vector<std::pair<std::string, std::string>> options;
  for (const pass::OptionSpec& spec : *specs_) {  // in table order, as the pipeline prints them
    for (const auto& [name, value] : derived) {
      if (name == spec.name) options.emplace_back(name, value);
    }
    if (given(spec.name)) options.emplace_back(spec.name, text(slots_.at(spec.name)));
  }
  return pass::make_elements(layout_.pass, options);
}

}  // namespace mopt::cli
