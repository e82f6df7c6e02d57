// Presets: one name for a short sequence of passes, each doing one transformation.
//
//   convert(to=fp16, opset=13)   is   convert-opset(opset=13), convert-precision(to=fp16)
//   clip(data=calib/, sigma=3)   is   clip-weights(sigma=3), clip-activations(data=calib/)
//
// A preset's options are its members' options (each declared once, in the member's file); each option
// goes to the member that declares it, and a member runs when one of its trigger options is given. A
// trigger the member does not declare is a switch of the preset (a Bool, e.g. clip's fp16-range=true).
// The parser expands a preset where it stands, so printed pipelines list the member passes.
#pragma once
#include <string>
#include <vector>

#include "pass/pipeline.h"

namespace mopt::pass {

struct PresetMember {
  std::string pass;
  std::vector<std::string> triggers;
};

struct PresetInfo {
  std::string name, summary;
  std::vector<PresetMember> members;  // in the order they run
  std::vector<OptionSpec> switches;   // Bool options of the preset itself
  std::vector<OptionSpec> specs;      // the members' options in member order, then the switches
};

const std::vector<PresetInfo>& registered_presets();
const PresetInfo* find_preset(const std::string& name);

// The member passes the preset's options select, each with its options, validated as the parser validates a
// pass; throws a usage error (after `where`) for an option whose member is not selected, or when none is.
std::vector<PipelineElement> expand_preset(const PresetInfo& preset, const Options& options, const std::string& where = "");

}  // namespace mopt::pass
