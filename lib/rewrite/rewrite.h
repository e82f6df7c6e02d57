// Small graph-building helpers that rewrites share (quantization, fusions): attributes on new nodes,
// constant initializers with fresh names, node positions, and removing weights a rewrite left unused.
#pragma once
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "exec/array.h"
#include "ir/ir.h"

namespace mopt::rewrite {

// How reports name a node: its name, or "<op> -> <first output>" when it has none.
std::string describe(const ir::Node& node);
// Gives every unnamed main-graph node a unique name (op type based), so nodes can be reported and
// excluded by name. Returns how many were named.
int64_t name_unnamed_nodes(ir::Model& model);

// Setting an attribute replaces any of the same name.
void set_int_attr(ir::Node& node, const std::string& name, int64_t value);
void set_float_attr(ir::Node& node, const std::string& name, float value);
void set_string_attr(ir::Node& node, const std::string& name, const std::string& value);
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

// ---- matching helpers for rewrites ----
// The value's only reader is one node input, and it is not a graph output: a rewrite may absorb it.
bool has_single_use(const ir::Value& value);
// The node consuming `value` when it has a single use (see above), else nullptr.
ir::Node* sole_consumer(const ir::Value& value);
// The value's constant payload as an executor Array (borrowed), or nullopt when it is not a constant or
// its dtype is one the executor does not hold (strings).
std::optional<exec::Array> constant_array(const ir::Value* value);
// The values of an integer constant (shapes, axes, pads), or nullopt.
std::optional<std::vector<int64_t>> constant_ints(const ir::Value* value);
// The rank of a constant or of a value whose type records a shape (dimensions may be symbolic).
std::optional<size_t> rank_of(const ir::Value& value);
// Random operators (RandomNormal, ..., Multinomial, Bernoulli): never folded or merged.
bool is_random(const ir::Node& node);
// Whether `value` is a constant of exactly this float32 value everywhere (any shape).
bool is_constant_float(const ir::Value* value, float expected);
int64_t attr_int(const ir::Node& node, const std::string& name, int64_t fallback);
std::vector<int64_t> attr_ints(const ir::Node& node, const std::string& name);
std::string attr_string(const ir::Node& node, const std::string& name, const std::string& fallback);
void set_ints_attr(ir::Node& node, const std::string& name, const std::vector<int64_t>& values);
void remove_attr(ir::Node& node, const std::string& name);
// Adds an initializer holding a copy of `array`; returns its value.
ir::Value* add_constant(ir::Graph& graph, const std::string& base, const exec::Array& array);
// The same, taking over the array's buffer instead of copying it (Array::into_tensor).
ir::Value* add_constant(ir::Graph& graph, const std::string& base, exec::Array&& array);
// The element type recorded for a value (input, output or value_info), or 0 when unknown.
int32_t elem_type(const ir::Value& value);
// The static shape recorded for a value, or nullopt when its rank or any dimension is unknown.
std::optional<std::vector<int64_t>> static_shape(const ir::Value& value);
// Replaces every use of `node`'s output `index` with `replacement` and erases `node` if it became dead.
// Returns false (nothing changed) when the output is a graph output that cannot be renamed.
bool bypass(ir::Graph& graph, ir::Node& node, ir::Value* replacement, size_t index = 0);
// For a fusion whose producer now computes what its consumer did (Conv absorbing a BatchNormalization):
// moves every use of `from` (the consumer's output) to `to` (the producer's) and gives `to` the name of
// `from`, so that a name keeps meaning one tensor and comparisons by name (per-layer error) match like
// with like; `to`'s old name goes with the values it held. False (nothing changed) as replace_all_uses.
bool take_over(ir::Graph& graph, ir::Value* from, ir::Value* to);

// Imports `domain` at `version` if the model does not import it yet.
void ensure_opset_import(ir::Model& model, const std::string& domain, int64_t version);

}  // namespace mopt::rewrite
