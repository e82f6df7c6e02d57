// Kernels: one function per ONNX operator (and opset range), registered in a table the executor and the
// conformance test consult. A kernel reads its node's attributes and input Arrays from a KernelContext
// and sets its outputs. An operator without a kernel for the model's opset is refused up front with a
// message naming op, domain and version: the executor never guesses.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec/array.h"
#include "ir/ir.h"

namespace mopt::exec {

class GraphRunner;
struct Env;

class KernelContext {
 public:
  KernelContext(const ir::Node& node, int64_t opset, std::vector<const Array*> inputs, GraphRunner& runner)
      : node_(node), opset_(opset), inputs_(std::move(inputs)), outputs_(node.outputs().size()), runner_(runner) {}

  const ir::Node& node() const { return node_; }
  int64_t opset() const { return opset_; }
  GraphRunner& runner() { return runner_; }
  // The values visible where this node runs (for If/Loop bodies that capture outer values).
  const Env* scope() const { return scope_; }
  void set_scope(const Env* scope) { scope_ = scope; }
  // Whether input i is a model constant: an initializer no feed overrides, or a Constant node's output. Its
  // buffer and contents are the same on every run of this runner, so a kernel may keep what it derives from
  // it (a weight in another layout) in the node's state.
  bool constant_input(size_t i) const { return i < 64 && (constant_inputs_ >> i & 1) != 0; }
  // What the kernel keeps for this node between runs of the runner (empty at first); null where the runner
  // keeps nothing (a single node run by run_node).
  std::shared_ptr<void>* state() const { return state_; }
  void set_persistence(uint64_t constant_inputs, std::shared_ptr<void>* state) {
    constant_inputs_ = constant_inputs;
    state_ = state;
  }

  size_t input_count() const { return inputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  const Array& input(size_t i) const;  // throws if the input is absent
  const Array* optional_input(size_t i) const { return has_input(i) ? inputs_[i] : nullptr; }
  // An input that must hold exactly one element (a count, an axis, a condition), checked before use.
  const Array& scalar_input(size_t i, const char* what) const;
  // Storage for an output of `dtype` and `shape`: `source`'s own buffer when `source` is input 0, has that
  // type and shape, and the executor lets this node overwrite it (input 0 dies here and no other array
  // shares its buffer: set_input0_reusable); otherwise a new, uninitialized array, in `source`'s layout when
  // it has `source`'s shape. For elementwise kernels that write position i only from position i of their
  // inputs: they then run in place, on memory that is in cache, instead of also filling new memory.
  Array output_buffer(const Array& source, int32_t dtype, const Shape& shape) const;
  void set_input0_reusable(bool reusable) { input0_reusable_ = reusable; }
  // Input i in the plain layout: itself, or a reordered copy kept until the kernel returns. For kernels
  // that read channels-last inputs (KernelDef::channels_last) on their paths that do not.
  const Array& plain_input(size_t i);
  // Whether output i may be left channels-last: every reader of it reads that layout, so no reorder is
  // saved by writing it plain (set by the executor; false where it has not planned the readers).
  bool channels_last_allowed(size_t i) const { return i < 64 && (channels_last_outputs_ >> i & 1) != 0; }
  void set_channels_last_outputs(uint64_t outputs) { channels_last_outputs_ = outputs; }
  size_t output_count() const { return outputs_.size(); }
  bool wants_output(size_t i) const { return i < outputs_.size() && node_.output(i) != nullptr; }
  void set_output(size_t i, Array value);
  std::vector<Array>& outputs() { return outputs_; }

  bool has_attr(const std::string& name) const { return node_.attribute(name) != nullptr; }
  int64_t attr_int(const std::string& name, int64_t fallback) const;
  float attr_float(const std::string& name, float fallback) const;
  std::string attr_string(const std::string& name, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;  // empty when absent
  std::vector<float> attr_floats(const std::string& name) const;
  std::vector<std::string> attr_strings(const std::string& name) const;
  const ir::Graph* attr_graph(const std::string& name) const;

  // "Conv 'conv1'": how errors name the node.
  std::string describe() const;
  [[noreturn]] void error(const std::string& message) const;

 private:
  const ir::Node& node_;
  int64_t opset_;
  std::vector<const Array*> inputs_;
  std::vector<Array> outputs_;
  GraphRunner& runner_;
  const Env* scope_ = nullptr;
  uint64_t constant_inputs_ = 0;  // bit i: constant_input(i)
  uint64_t channels_last_outputs_ = 0;  // bit i: channels_last_allowed(i)
  std::deque<Array> plain_copies_;  // plain_input's copies
  bool input0_reusable_ = false;
  std::shared_ptr<void>* state_ = nullptr;
};

using KernelFn = std::function<void(KernelContext&)>;

struct KernelDef {
  std::string domain;  // "" for ai.onnx
  std::string op_type;
  int64_t since;  // first opset version this kernel implements
  int64_t until;  // last opset version it implements
  KernelFn fn;
  // float16 inputs are converted to float32 before the kernel and float32 outputs back after. Kernels
  // that move data without arithmetic (Reshape, Concat, ...) handle float16 bits themselves.
  bool float16_via_float32 = true;
  // The kernel reads channels-last inputs itself (Array::layout) and lays out its outputs as it sees fit;
  // the executor reorders channels-last inputs to plain for every other kernel.
  bool channels_last = false;
};

class KernelRegistry {
 public:
  static const KernelRegistry& instance();
  void add(KernelDef def);
  const KernelDef* find(const std::string& domain, const std::string& op_type, int64_t opset) const;
  // Why an op is not supported: unknown op vs. unsupported version. Empty when it is supported.
  std::string why_unsupported(const std::string& domain, const std::string& op_type, int64_t opset) const;
  // Every (domain, op) with the opset ranges covered, for `mopt ops` style listings and the tests.
  std::vector<const KernelDef*> all() const;

 private:
  std::vector<KernelDef> defs_;
};

// Registration functions, one per kernel file (explicit calls: a static library drops self-registering
// objects nobody references).
void register_elementwise_kernels(KernelRegistry& registry);
void register_tensor_kernels(KernelRegistry& registry);
void register_reduce_kernels(KernelRegistry& registry);
void register_nn_kernels(KernelRegistry& registry);
void register_rnn_kernels(KernelRegistry& registry);
void register_quant_kernels(KernelRegistry& registry);
void register_control_kernels(KernelRegistry& registry);

// Outputs written over their input 0 (KernelContext::output_buffer) in this process, so a test can show
// the in-place path was taken.
int64_t in_place_outputs();

// Helpers shared by kernels.
int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank);
Shape broadcast_shapes(const KernelContext& ctx, const std::vector<const Shape*>& shapes);
// MatMul with numpy batch broadcasting, and Conv using the node's attributes; shared with the
// quantized kernels, which run them on zero-point-corrected integers held exactly in double.
Array matmul_forward(const KernelContext& ctx, const Array& a, const Array& b);
Array conv_forward(KernelContext& ctx, const Array& x, const Array& w, const Array* bias);

}  // namespace mopt::exec
