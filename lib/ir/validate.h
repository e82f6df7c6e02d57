// The validation layer: every node is checked against what its operator's schema and mopt's kernels
// assume (attribute lengths and ranges, input counts, ranks where the model declares them) before the
// executor, a pass, or ONNX's checker, shape inference and version converter see it. ONNX 1.12's shape
// inference crashes on some of these (a rank-2 Conv input, stride 0), and kernels index attributes by the
// input's rank, so nothing downstream may trust a node this layer has not passed.
//
// A violation is one Error (kind Model) naming node, operator and attribute:
//   Conv 'conv1': pads has 2 values; a 2-D window needs 4
#pragma once
#include <string>

#include "ir/ir.h"

namespace mopt::ir {

// Throws mopt::Error for the first node (all graphs) that breaks a rule.
void validate_model(const Model& model);
// The same rules for one node (`opset` of its domain).
void validate_node(const Node& node, int64_t opset);

// "Conv 'name'" (or "Conv" when unnamed), with the name made printable.
std::string label(const Node& node);
// `text` with control characters, DEL and invalid UTF-8 written as \xNN, so a model's names cannot forge
// lines or drive the terminal.
std::string printable(const std::string& text);

}  // namespace mopt::ir
