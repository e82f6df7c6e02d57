// Small graph-building helpers the quantization rewrites share: attributes on new nodes, constant
// initializers with fresh names, node positions, and removing weights a rewrite left unused.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/ir.h"

namespace mopt::quant {

// How reports name a node: its name, or "<op> -> <first output>" when it has none.
std::string describe(const ir::Node& node);

void set_int_attr(ir::Node& node, const std::string& name, int64_t value);
void set_float_attr(ir::Node& node, const std::string& name, float value);
// Copies every attribute of `from` onto `to` (non-graph attributes only).
void copy_attributes(const ir::Node& from, ir::Node& to);

// Adds an initializer whose name is derived from `base` (made unique); returns its value.
ir::Value* add_constant(ir::Graph& graph, const std::string& base, ir::Tensor tensor);

// Position of each live node of `graph` (for "insert before the first consumer").
std::unordered_map<const ir::Node*, size_t> node_positions(const ir::Graph& graph);
// The earliest consumer of `value` in graph order, or nullptr when it has none.
ir::Node* first_consumer(const ir::Value& value, const std::unordered_map<const ir::Node*, size_t>& positions);

// Removes the float weights in `candidates` that no node reads any more: unused initializers, and
// Constant nodes whose output became unused.
void remove_unused_weights(ir::Graph& graph, const std::vector<ir::Value*>& candidates);

// Imports `domain` at `version` if the model does not import it yet.
void ensure_opset_import(ir::Model& model, const std::string& domain, int64_t version);

}  // namespace mopt::quant
