// Pipelines: what passes run, in what order, with what options.
//
//   text:  eliminate-nops,fixpoint(max-iterations=8,eliminate-dead-code,shape-inference)
//   YAML or JSON file:
//     passes:
//       - eliminate-nops
//       - fixpoint: {max-iterations: 8, passes: [eliminate-dead-code, shape-inference]}
//       - shape-inference: {data-propagation: true}
//
// `fixpoint(...)` is the one built-in group (`fuse` is a preset fixpoint, see kFuseGroup): it repeats its passes until none changes the model or the
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

// Checks a pass element the way it will run: every set option applies (OptionSpec::applies_when) and the
// pass accepts the combination (it is constructed once). Throws a usage error naming the pass, after
// `where` (the parser's "pipeline column N: " or "FILE line N: "). The parser calls it for every element,
// so a bad option anywhere fails before any pass runs.
void validate_element(const PipelineElement& element, const std::string& where = "");

// The option table of a pass or preset (preset.h); nullptr for other names.
const std::vector<OptionSpec>* option_specs_of(const std::string& name);

// What `name(k=v,...)` parses to, checked as the parser checks it: the pass, or the preset's member passes.
std::vector<PipelineElement> make_elements(const std::string& name, const std::vector<std::pair<std::string, std::string>>& options);

constexpr int64_t kDefaultFixpointIterations = 10;

// The `fuse` preset: graph cleanup and fusions repeated to a fixed point. `fuse` in a pipeline (text or
// file) expands to this group; `fuse(max-iterations=N)` changes its cap. Shape inference runs first in
// each round because simplify-shapes and fuse-matmul-add read shapes; IR < 4 models are upgraded
// first, since their weights are graph inputs that no rewrite may treat as constant. The order is chosen
// so that one round finishes what it starts and the group converges in few rounds (at most 3 on the
// shared models and bert_like, tests/test_fuse.cpp): shape inference propagates shape values
// (Shape -> Gather -> Concat) itself, and simplify-shapes runs before fold-constants, which then folds the
// constant chains simplify-shapes exposed in the same round.
constexpr const char* kFuseGroup =
    "fixpoint(max-iterations=10, upgrade-ir-version, shape-inference(data-propagation=true), simplify-shapes, "
    "fold-constants, eliminate-nops, "
    "eliminate-common-subexpressions, fuse-consecutive, fold-batchnorm, fold-channel-ops-into-conv, "
    "fuse-matmul-add, fuse-pad-into-conv, fuse-layernorm, fuse-gelu, fold-input-normalization, eliminate-dead-code)";

Pipeline parse_pipeline(const std::string& text);
Pipeline load_pipeline_file(const std::filesystem::path& path);
std::string print_pipeline(const Pipeline& pipeline);
std::string print_element(const PipelineElement& element);

}  // namespace mopt::pass
