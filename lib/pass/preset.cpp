// The preset table and its expansion; see preset.h.
#include "pass/preset.h"

#include <algorithm>

#include "util/error.h"

namespace mopt::pass {
namespace {

PresetInfo make_preset(std::string name, std::string summary, std::vector<PresetMember> members,
                       std::vector<OptionSpec> switches = {}) {
  PresetInfo p{std::move(name), std::move(summary), std::move(members), std::move(switches), {}};
  for (const PresetMember& m : p.members) {
    const PassInfo* info = find_pass(m.pass);
    if (info == nullptr) fail("internal error: preset '{}' names unknown pass '{}'", p.name, m.pass);
    for (const OptionSpec& spec : info->option_specs()) p.specs.push_back(spec);
  }
  for (const OptionSpec& s : p.switches) p.specs.push_back(s);
  for (size_t i = 0; i < p.specs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (p.specs[i].name == p.specs[j].name) fail("internal error: preset '{}' has option '{}' twice", p.name, p.specs[i].name);
    }
  }
  return p;
}

bool declares(const PassInfo& info, const std::string& option) {
  const auto& specs = info.option_specs();
  return std::any_of(specs.begin(), specs.end(), [&](const OptionSpec& s) { return s.name == option; });
}

std::string trigger_text(const PassInfo& info, const std::string& trigger) {
  return declares(info, trigger) ? trigger + "=" : trigger + "=true";
}

}  // namespace

const std::vector<PresetInfo>& registered_presets() {
  using T = OptionSpec::Type;
  static const std::vector<PresetInfo> presets = {
      make_preset("convert",
                  "Convert the opset, the IR version, dynamic input dimensions to static ones, value names, or float32 "
                  "to float16/bfloat16, in that order",
                  {{"convert-opset", {"opset"}},
                   {"set-ir-version", {"ir-version"}},
                   {"set-static-shapes", {"shapes", "dims", "batch"}},
                   {"rename-values", {"rename"}},
                   {"convert-precision", {"to"}}}),
      make_preset("clip", "Clamp weight outliers, bound activations on calibration data, or clamp weights into the float16 range",
                  {{"clip-weights", {"range", "percentile", "sigma"}},
                   {"clip-activations", {"data"}},
                   {"clip-fp16-range", {"fp16-range"}}},
                  {{"fp16-range", T::Bool, "false", "clamp every float32 initializer into the float16 range (+-65504)"}}),
  };
  return presets;
}

const PresetInfo* find_preset(const std::string& name) {
  for (const PresetInfo& p : registered_presets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<PipelineElement> expand_preset(const PresetInfo& preset, const Options& options, const std::string& where) {
  std::vector<PipelineElement> elements;
  std::vector<std::string> all_triggers;
  for (const PresetMember& m : preset.members) {
    const PassInfo* info = find_pass(m.pass);
    bool selected = false;
    for (const std::string& t : m.triggers) {
      all_triggers.push_back(trigger_text(*info, t));
      selected = selected || (options.is_set(t) && (declares(*info, t) || options.get_bool(t)));
    }
    PipelineElement e;
    e.name = m.pass;
    e.options = Options(&info->option_specs());
    for (const auto& [name, value] : options.explicit_values()) {
      if (!declares(*info, name)) continue;
      if (!selected) {
        std::vector<std::string> triggers;
        for (const std::string& t : m.triggers) triggers.push_back(trigger_text(*info, t));
        usage_error("{}option '{}' of '{}' applies only with {}", where, name, preset.name, fmt::join(triggers, " or "));
      }
      e.options.set(e.name, name, value);
    }
    if (!selected) continue;
    validate_element(e, where);
    elements.push_back(std::move(e));
  }
  if (elements.empty()) {
    const std::string last = all_triggers.back();
    all_triggers.pop_back();
    usage_error("{}{}: nothing to do; give {} or {}", where, preset.name, fmt::join(all_triggers, ", "), last);
  }
  return elements;
}

}  // namespace mopt::pass
