// Pipelines: what passes run, in what order, with what options.
//
//   text:  eliminate-identity,fixpoint(max-iterations=8,eliminate-dead-code,shape-inference)
//   YAML or JSON file:
//     passes:
//       - eliminate-identity
//       - fixpoint: {max-iterations: 8, passes: [eliminate-dead-code, shape-inference]}
//       - shape-inference: {data-propagation: true}
//
// `fixpoint(...)` is the one built-in group: it repeats its passes until none changes the model or the
// iteration cap is reached (a warning then). print() gives the normalized text, which parses back to
// the same pipeline. Errors are usage errors that name the offending token and its column.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "pass/pass.h"

namespace mopt::pass {

struct PipelineElement {
  std::string name;               // a registered pass, or "fixpoint"
  Options options;                // for passes
  std::vector<PipelineElement> children;  // for fixpoint
  int64_t max_iterations = 0;     // for fixpoint
  bool is_group() const { return name == "fixpoint"; }
};

struct Pipeline {
  std::vector<PipelineElement> elements;
};

constexpr int64_t kDefaultFixpointIterations = 10;

Pipeline parse_pipeline(const std::string& text);
Pipeline load_pipeline_file(const std::filesystem::path& path);
std::string print_pipeline(const Pipeline& pipeline);
std::string print_element(const PipelineElement& element);

}  // namespace mopt::pass
