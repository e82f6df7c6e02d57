// The reference executor: runs an IR model on the CPU with ONNX semantics, for accuracy checks,
// calibration and constant folding. Every node is checked against the kernel table before anything
// runs, so an unsupported operator is reported up front (op, domain, opset) rather than half-way.
//
// Memory: each intermediate is released as soon as its last reader (including nodes inside If/Loop
// bodies that capture it) has run; initializers are borrowed from the loaded model, not copied.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "exec/array.h"
#include "ir/ir.h"

namespace mopt::exec {

struct KernelDef;

// How float16 tensors are computed. Every kernel computes in float32 either way; the modes differ in where
// float16 rounding happens.
enum class Float16Compute {
  // As ONNX Runtime's CPU provider runs a float16 model: it has float16 kernels for few operators, so it wraps
  // the others in Casts to and from float32 and then removes each float16->float32 Cast pair between two of
  // them. Float16 tensors therefore stay float32 between operators; rounding happens where float16 data is
  // stored or asked for: initializers, fed inputs, explicit Casts to float16, and the graph's outputs.
  kLikeOnnxRuntimeCpu,
  // Every operator's float16 result is rounded to float16 (a runtime with float16 kernels, as GPUs have).
  kRoundEachOperator,
};

struct ExecutorOptions {
  int threads = 0;  // threads for the kernels; 0 = all cores, -1 = leave the current setting
  bool profile = false;  // accumulate time per operator type (Executor::profile())
  // Called with every value a node of the main graph computes, right after it is computed (calibration
  // and per-layer error reports read intermediate values through it). Under kLikeOnnxRuntimeCpu, float16
  // values are observed as the float32 arrays they are held in.
  std::function<void(const ir::Value&, const Array&)> observe;
  Float16Compute float16 = Float16Compute::kLikeOnnxRuntimeCpu;  // bfloat16 is always rounded per operator
};

// Time spent per operator type, summed over runs.
struct OpProfile {
  std::map<std::string, double> seconds;
  std::map<std::string, int64_t> calls;
};

// Values visible while running one graph: its own, then those of enclosing graphs.
struct Env {
  const Env* parent = nullptr;
  std::unordered_map<const ir::Value*, Array> values;
  const Array* find(const ir::Value* value) const;
};

// What a planned graph tells a kernel beyond its inputs (see KernelContext).
struct KernelCall {
  uint64_t constant_inputs = 0;  // bit i: input i is a model constant
  std::shared_ptr<void>* state = nullptr;
  bool input0_reusable = false;
  uint64_t channels_last_outputs = 0;  // bit i: output i may be left channels-last
};

class GraphRunner {
 public:
  GraphRunner(const ir::Model& model, ExecutorOptions options);
  ~GraphRunner();
  // Runs `graph` with `inputs` bound to its inputs in order; `outer` resolves captured values.
  std::vector<Array> run_graph(const ir::Graph& graph, const std::vector<Array>& inputs, const Env* outer);
  const ir::Model& model() const { return model_; }
  const OpProfile& profile() const { return profile_; }
  // Runs one node's kernel on `inputs` (nullptr for absent optional inputs); `scope` resolves values
  // its subgraphs capture. Returns its outputs (undefined for outputs the node does not name).
  std::vector<Array> run_kernel(const KernelDef& def, const ir::Node& node, int64_t opset,
                                std::vector<const Array*> inputs, const Env* scope, const KernelCall& call = {});

 private:
  struct Plan;
  OpProfile profile_;
  const Plan& plan_for(const ir::Graph& graph);
  // `a` as this runner holds it: float16 as float32 under Float16Compute::kLikeOnnxRuntimeCpu.
  Array held(Array a) const;
  // A produced initializer (produced_initializers_) made for one node, as held() would hold it.
  Array made_initializer(const ir::Tensor& tensor) const;
  const ir::Model& model_;
  ExecutorOptions options_;
  std::unordered_map<const ir::Value*, Array> initializers_;
  // Initializers whose payloads are produced on demand and not built (pruned or converted weights): made for
  // each node that reads them and freed after it, so that running the optimized model beside the original
  // (the accuracy check) does not hold a second copy of every weight.
  std::unordered_map<const ir::Value*, const ir::Tensor*> produced_initializers_;
  std::unordered_map<const ir::Graph*, std::unique_ptr<Plan>> plans_;
  std::unordered_map<const ir::Node*, std::shared_ptr<void>> node_state_;  // KernelContext::state()
};

class Executor {
 public:
  // Throws mopt::Error listing every unsupported operator of the model (all graphs).
  explicit Executor(const ir::Model& model, ExecutorOptions options = {});
  ~Executor() { release_buffer_cache(); }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  // Runs the model. Feeds are matched by input name; every input without an initializer needs one.
  // Returns the graph outputs in order.
  std::vector<Array> run(const std::map<std::string, Array>& feeds);
  const ir::Model& model() const { return model_; }
  const OpProfile& profile() const { return runner_.profile(); }

 private:
  const ir::Model& model_;
  GraphRunner runner_;
};

// Runs a single node of `model` on the given inputs, as constant folding needs. Throws mopt::Error when
// no kernel supports it or the kernel rejects its inputs.
std::vector<Array> run_node(const ir::Model& model, const ir::Node& node, const std::vector<const Array*>& inputs);

// Operators of `model` the executor cannot run, as "op (domain, opset N): reason"; empty when all are.
std::vector<std::string> unsupported_operators(const ir::Model& model);
// The opset version a node is interpreted with (its domain's import in the model).
int64_t node_opset(const ir::Model& model, const ir::Node& node);
// Applies the thread count to the linear-algebra library.
void set_thread_count(int threads);

// The longest one Executor::run may take, in seconds (0: no limit; the CLI's --max-eval-seconds). A run
// past it stops with an Error between nodes (Loop bodies included), so a malformed Loop cannot hang a
// command. Process-wide, like the thread count.
void set_run_time_limit(double seconds);

}  // namespace mopt::exec
