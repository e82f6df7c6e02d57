// Graph execution: a per-graph plan (node order and when to free each intermediate), kernel lookup,
// float16 computed through float32 (rounded per operator, or held in float32 as ONNX Runtime's CPU provider
// does), and error context naming the failing node.
#include "exec/executor.h"

#include <onnx/defs/schema.h>

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>

#include "exec/kernel.h"
#include "exec/parallel.h"
#include "ir/validate.h"
#include "util/error.h"

namespace mopt::exec {

const Array* Env::find(const ir::Value* value) const {
  for (const Env* e = this; e; e = e->parent) {
    auto it = e->values.find(value);
    if (it != e->values.end()) return &it->second;
  }
  return nullptr;
}

int64_t node_opset(const ir::Model& model, const ir::Node& node) {
  int64_t v = model.opset(node.domain());
  // Models that omit the default-domain import are treated as opset 1, as the spec says for IR < 3.
  return v == 0 && node.is_default_domain() ? 1 : v;
}

static std::atomic<int> g_threads{1};
static std::atomic<double> g_run_time_limit{0};
void set_run_time_limit(double seconds) { g_run_time_limit.store(seconds > 0 ? seconds : 0); }
int thread_count() { return g_threads.load(std::memory_order_relaxed); }

void set_thread_count(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  openblas_set_num_threads(1);  // GEMMs are split over the executor's threads instead (gemm.h)
  g_threads.store(n, std::memory_order_relaxed);
}

namespace {

thread_local std::optional<std::chrono::steady_clock::time_point> t_deadline;

void check_deadline() {
  if (t_deadline && std::chrono::steady_clock::now() > *t_deadline)
    fail("the executor stopped after {} s (--max-eval-seconds): the model runs too long on this data (a Loop with a huge "
         "trip count?)", g_run_time_limit.load());
}

std::string describe(const ir::Node& node) { return ir::label(node); }

// Input indices that the operator's schema gives one type variable ("T" for Gemm's A, B and C).
std::vector<std::vector<size_t>> same_type_groups(const ir::Node& node, int64_t opset) {
  const onnx::OpSchema* schema =
      onnx::OpSchemaRegistry::Schema(node.op_type(), static_cast<int>(opset), node.is_default_domain() ? "" : node.domain());
  if (schema == nullptr || schema->inputs().empty()) return {};
  const auto& formals = schema->inputs();
  std::map<std::string, std::vector<size_t>> by_type;
  for (size_t i = 0; i < node.inputs().size(); ++i) {
    if (node.input(i) == nullptr) continue;
    if (i >= formals.size() && (formals.back().GetOption() != onnx::OpSchema::Variadic || !formals.back().GetIsHomogeneous())) break;
    by_type[formals[std::min(i, formals.size() - 1)].GetTypeStr()].push_back(i);
  }
  std::vector<std::vector<size_t>> out;
  for (auto& [type, indices] : by_type) {
    if (indices.size() > 1) out.push_back(std::move(indices));
  }
  return out;
}

// Inputs of nodes nested in `node`'s subgraphs that are owned by `graph` (captured values).
void collect_captures(const ir::Node& node, const ir::Graph& graph, std::vector<const ir::Value*>& out) {
  for (const ir::Graph* sub : node.subgraphs()) {
    for (const ir::Node* inner : sub->nodes()) {
      for (const ir::Value* v : inner->inputs()) {
        if (v && v->owner() == &graph) out.push_back(v);
      }
      collect_captures(*inner, graph, out);
    }
    for (const ir::Value* v : sub->outputs()) {
      if (v && v->owner() == &graph) out.push_back(v);
    }
  }
}

// `v`'s value, found channels-last, in the plain layout for a kernel that reads only that: a value of this
// graph is replaced by its plain copy, so that its other readers reuse it; one of an enclosing graph gets a
// copy in `copies` for this node.
const Array* plain_value(const ir::Value* v, Env& env, std::deque<Array>& copies) {
  if (auto it = env.values.find(v); it != env.values.end()) {
    it->second = it->second.in_layout(Layout::kPlain);
    return &it->second;
  }
  return &copies.emplace_back(env.find(v)->in_layout(Layout::kPlain));
}

}  // namespace

struct GraphRunner::Plan {
  std::vector<const ir::Node*> nodes;
  std::vector<const KernelDef*> kernels;
  std::vector<int64_t> opsets;
  // Per node: groups of input indices the schema binds to one type variable; kernels read them as one type.
  std::vector<std::vector<std::vector<size_t>>> same_type;
  std::vector<std::vector<const ir::Value*>> release_after;  // per node
  // Per node: its input 0 is read by nobody after it (a value of this graph, read once by this node, not a
  // graph input or output, an initializer or a Constant's output), so its kernel may write its output over
  // that input's buffer when no other array shares it (KernelContext::output_buffer).
  std::vector<bool> input0_dies;
  // Per node: its kernel reads channels-last inputs (KernelDef::channels_last; a node with subgraphs never
  // does), and the outputs it may leave channels-last (bit o), those whose every reader reads that layout.
  std::vector<bool> reads_channels_last;
  std::vector<uint64_t> channels_last_outputs;
  // Per node: a Constant node's outputs, computed once when the graph is planned (empty for other nodes).
  std::vector<std::vector<Array>> constant_outputs;
  std::unordered_set<const ir::Value*> constant_values;  // the outputs of those Constant nodes
};

GraphRunner::GraphRunner(const ir::Model& model, ExecutorOptions options) : model_(model), options_(options) {
  if (options_.threads >= 0) set_thread_count(options_.threads);
  model.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Value* v : g.initializers()) {
      const ir::Tensor& tensor = *v->initializer();
      if (tensor.has_raw() && tensor.raw().unbuilt()) produced_initializers_.emplace(v, &tensor);
      else initializers_.emplace(v, held(Array::from_tensor(tensor)));
    }
  });
}

GraphRunner::~GraphRunner() = default;

Array GraphRunner::held(Array a) const {
  if (options_.float16 == Float16Compute::kLikeOnnxRuntimeCpu && a.defined() && a.dtype() == ir::dtype::kFloat16)
    return cast(a, ir::dtype::kFloat);  // exact: every float16 value is a float32 value
  return a;
}

Array GraphRunner::made_initializer(const ir::Tensor& tensor) const {
  if (options_.float16 != Float16Compute::kLikeOnnxRuntimeCpu || tensor.dtype() != ir::dtype::kFloat16 || tensor.raw().size() % 2 != 0)
    return held(Array::from_tensor(tensor));
  // Held as float32: converted block by block as the float16 payload is made, without a float16 copy.
  Array made = Array::uninitialized(ir::dtype::kFloat, tensor.dims());
  if (static_cast<size_t>(made.numel()) * 2 != tensor.raw().size())
    fail("tensor '{}' holds {} bytes but its shape {} needs {}", tensor.name(), tensor.raw().size(), shape_string(made.shape()), made.numel() * 2);
  float* out = made.data<float>();
  const size_t count = static_cast<size_t>(made.numel());
  size_t written = 0;
  std::vector<uint16_t> values;  // a block's whole values, aligned
  std::byte carry[2];
  bool carried = false;  // a block ended inside a value: its first byte
  tensor.raw().stream([&](std::span<const std::byte> block) {
    if (carried && !block.empty()) {
      carry[1] = block[0];
      block = block.subspan(1);
      carried = false;
      uint16_t bits;
      std::memcpy(&bits, carry, 2);
      if (written == count) throw std::logic_error("a produced payload is longer than its size");
      out[written++] = half_to_float(bits);
    }
    const size_t whole = block.size() / 2;
    if (whole > count - written) throw std::logic_error("a produced payload is longer than its size");
    if (whole > 0) {  // a block of one byte has none (memcpy of an empty vector's null data is undefined)
      values.resize(whole);
      std::memcpy(values.data(), block.data(), whole * 2);
      half_to_floats(values, {out + written, whole});
      written += whole;
    }
    if (block.size() % 2 != 0) {
      carry[0] = block.back();
      carried = true;
    }
  });
  return made;
}

const GraphRunner::Plan& GraphRunner::plan_for(const ir::Graph& graph) {
  auto it = plans_.find(&graph);
  if (it != plans_.end()) return *it->second;
  auto plan = std::make_unique<Plan>();
  const KernelRegistry& registry = KernelRegistry::instance();
  std::unordered_map<const ir::Value*, size_t> last_reader;
  std::vector<const ir::Node*> nodes;
  for (const ir::Node* n : graph.nodes()) nodes.push_back(n);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node& n = *nodes[i];
    int64_t opset = node_opset(model_, n);
    const KernelDef* def = registry.find(n.domain(), n.op_type(), opset);
    if (!def) fail("{}: {}", describe(n), registry.why_unsupported(n.domain(), n.op_type(), opset));
    plan->kernels.push_back(def);
    plan->opsets.push_back(opset);
    plan->same_type.push_back(same_type_groups(n, opset));
    std::vector<const ir::Value*> reads;
    for (const ir::Value* v : n.inputs()) {
      if (v && v->owner() == &graph) reads.push_back(v);
    }
    collect_captures(n, graph, reads);
    for (const ir::Value* v : reads) last_reader[v] = i;
    // A Constant node gives the same value on every run: computed here, once, not per run (ppocrv4_det holds
    // its weights in 342 Constant nodes, copied out of the model on every run before).
    std::vector<Array> constant;
    if (n.op_type() == "Constant" && n.is_default_domain() && n.subgraphs().empty()) {
      Env none;
      const bool profile = std::exchange(options_.profile, false);  // not a cost of any run
      constant = run_kernel(*def, n, opset, {}, &none);
      options_.profile = profile;
      for (const ir::Value* v : n.outputs()) {
        if (v) plan->constant_values.insert(v);
      }
    }
    plan->constant_outputs.push_back(std::move(constant));
  }
  plan->release_after.resize(nodes.size());
  std::unordered_set<const ir::Value*> outputs(graph.outputs().begin(), graph.outputs().end());
  for (auto& [value, index] : last_reader) {
    if (outputs.count(value) || value->initializer() || value->is_graph_input()) continue;
    plan->release_after[index].push_back(value);
  }
  // Node outputs nobody reads are released right after their producer.
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const ir::Value* v : nodes[i]->outputs()) {
      if (v && !last_reader.count(v) && !outputs.count(v)) plan->release_after[i].push_back(v);
    }
  }
  // A value may stay channels-last when every reader of it in this graph reads that layout: not a graph
  // output, not captured by a subgraph, read at least once. Not where an observer reads every value (the
  // calibration and per-layer comparisons): each would need a plain copy, and oneDNN's reorders around a
  // convolution cost less than copies of every activation.
  std::unordered_map<const ir::Value*, bool> all_read_channels_last;
  for (size_t i = 0; i < nodes.size(); ++i) {
    plan->reads_channels_last.push_back(plan->kernels[i]->channels_last && nodes[i]->subgraphs().empty());
    for (const ir::Value* v : nodes[i]->inputs()) {
      if (v) all_read_channels_last.emplace(v, true).first->second &= plan->reads_channels_last[i];
    }
    std::vector<const ir::Value*> captured;
    collect_captures(*nodes[i], graph, captured);
    for (const ir::Value* v : captured) all_read_channels_last[v] = false;
  }
  plan->channels_last_outputs.assign(nodes.size(), 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (size_t o = 0; o < nodes[i]->outputs().size() && o < 64; ++o) {
      const ir::Value* v = nodes[i]->output(o);
      auto read = v ? all_read_channels_last.find(v) : all_read_channels_last.end();
      if (read != all_read_channels_last.end() && read->second && !outputs.count(v) && !options_.observe)
        plan->channels_last_outputs[i] |= uint64_t{1} << o;
    }
  }
  plan->input0_dies.resize(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node& n = *nodes[i];
    const ir::Value* v = n.inputs().empty() ? nullptr : n.input(0);
    if (!v || v->owner() != &graph || !n.subgraphs().empty() || last_reader.at(v) != i || outputs.count(v) || v->initializer() ||
        v->is_graph_input() || plan->constant_values.count(v))
      continue;
    plan->input0_dies[i] = std::count(n.inputs().begin(), n.inputs().end(), v) == 1;
  }
  plan->nodes = std::move(nodes);
  return *plans_.emplace(&graph, std::move(plan)).first->second;
}

std::vector<Array> GraphRunner::run_kernel(const KernelDef& def, const ir::Node& node, int64_t opset,
                                           std::vector<const Array*> inputs, const Env* scope, const KernelCall& call) {
  uint64_t constant_inputs = call.constant_inputs;
  std::vector<Array> converted;  // float16/bfloat16 inputs as float32
  converted.reserve(inputs.size());
  int32_t half_type = 0;  // the 16-bit float type of the inputs, whose float32 results are rounded back to it
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Array*& a = inputs[i];
    if (a && def.float16_via_float32 && is_16bit_float(a->dtype())) {
      half_type = a->dtype();
      converted.push_back(cast(*a, ir::dtype::kFloat));
      a = &converted.back();
      if (i < 64) constant_inputs &= ~(uint64_t{1} << i);  // a copy made for this call
    }
  }
  if (options_.float16 == Float16Compute::kLikeOnnxRuntimeCpu && node.op_type() == "Cast" && node.is_default_domain() &&
      inputs[0] && node.attribute_int("to").value_or(0) == ir::dtype::kFloat16) {
    // ONNX Runtime removes a Cast to float16 together with the Cast back to float32 it inserts before the
    // next (float32) kernel, so the value is never rounded; a float16 graph output is rounded at the end.
    std::vector<Array> outs;
    outs.push_back(cast(*inputs[0], ir::dtype::kFloat));
    return outs;
  }
  KernelContext ctx(node, opset, std::move(inputs), *this);
  ctx.set_scope(scope);
  ctx.set_persistence(constant_inputs, call.state);
  ctx.set_input0_reusable(call.input0_reusable);
  ctx.set_channels_last_outputs(def.channels_last ? call.channels_last_outputs : 0);
  try {
    if (options_.profile && node.subgraphs().empty()) {
      auto t0 = std::chrono::steady_clock::now();
      def.fn(ctx);
      profile_.seconds[node.op_type()] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++profile_.calls[node.op_type()];
    } else {
      def.fn(ctx);
    }
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", describe(node), e.what()), e.kind());
  }
  std::vector<Array>& outs = ctx.outputs();
  for (size_t o = 0; o < node.outputs().size(); ++o) {
    if (!node.output(o)) continue;
    if (!outs[o].defined()) fail("{}: output {} was not produced", describe(node), o);
    if (outs[o].channels_last() && !def.channels_last)
      throw std::logic_error(describe(node) + ": a kernel not registered as channels-last wrote a channels-last output");
    if (half_type && outs[o].dtype() == ir::dtype::kFloat) outs[o] = cast(outs[o], half_type);
    outs[o] = held(std::move(outs[o]));
  }
  return std::move(outs);
}

std::vector<Array> run_node(const ir::Model& model, const ir::Node& node, const std::vector<const Array*>& inputs) {
  const int64_t opset = node_opset(model, node);
  ir::validate_node(node, opset);
  const KernelDef* def = KernelRegistry::instance().find(node.domain(), node.op_type(), opset);
  if (!def) fail("{}: {}", describe(node), KernelRegistry::instance().why_unsupported(node.domain(), node.op_type(), opset));
  static const ir::Model empty;  // no initializers: the runner only hosts the kernel call
  ExecutorOptions options;  // one node, its outputs in the types the node declares (as folding stores them)
  options.threads = -1;
  options.float16 = Float16Compute::kRoundEachOperator;
  GraphRunner runner(empty, options);
  Env scope;
  return runner.run_kernel(*def, node, opset, inputs, &scope);
}

std::vector<Array> GraphRunner::run_graph(const ir::Graph& graph, const std::vector<Array>& inputs, const Env* outer) {
  check_deadline();
  const Plan& plan = plan_for(graph);
  Env env;
  env.parent = outer;
  for (size_t i = 0; i < graph.inputs().size() && i < inputs.size(); ++i) {
    if (inputs[i].defined()) env.values[graph.inputs()[i]] = held(inputs[i]);
  }
  struct Found {
    const Array* array;
    bool constant;  // a model constant (KernelContext::constant_input)
  };
  std::deque<Array> made;  // produced initializers made for one node (produced_initializers_)
  auto lookup = [&](const ir::Value* v) -> Found {
    if (const Array* a = env.find(v)) return {a, plan.constant_values.count(v) > 0};
    if (auto it = initializers_.find(v); it != initializers_.end()) return {&it->second, true};
    // Not a constant for the kernels: its buffer differs from run to run.
    if (auto it = produced_initializers_.find(v); it != produced_initializers_.end()) return {&made.emplace_back(made_initializer(*it->second)), false};
    return {nullptr, false};
  };

  std::deque<Array> plain_copies;  // plain copies of channels-last values of enclosing graphs, for one node
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    check_deadline();
    const ir::Node& node = *plan.nodes[i];
    std::vector<const Array*> in;
    uint64_t constant_inputs = 0;
    for (const ir::Value* v : node.inputs()) {
      const Found found = v ? lookup(v) : Found{nullptr, false};
      if (v && !found.array) fail("{}: input '{}' has no value (is it fed?)", describe(node), v->name());
      if (found.constant && in.size() < 64) constant_inputs |= uint64_t{1} << in.size();
      in.push_back(found.array);
    }
    for (const std::vector<size_t>& group : plan.same_type[i]) {
      for (size_t k : group) {
        if (in[k]->dtype() != in[group[0]]->dtype())
          fail("{}: inputs {} and {} must have the same type, got {} and {}", describe(node), group[0], k,
               ir::dtype::name(in[group[0]]->dtype()), ir::dtype::name(in[k]->dtype()));
      }
    }
    if (!plan.reads_channels_last[i]) {
      for (size_t k = 0; k < in.size(); ++k) {
        if (in[k] && in[k]->channels_last()) in[k] = plain_value(node.input(k), env, plain_copies);
      }
    }
    std::vector<Array> outs =
        plan.constant_outputs[i].empty()
            ? run_kernel(*plan.kernels[i], node, plan.opsets[i], std::move(in), &env,
                         {constant_inputs, &node_state_[&node], plan.input0_dies[i], plan.channels_last_outputs[i]})
            : plan.constant_outputs[i];  // shares the buffers
    plain_copies.clear();
    made.clear();
    for (size_t o = 0; o < node.outputs().size(); ++o) {
      const ir::Value* v = node.output(o);
      if (!v) continue;
      Array& stored = env.values[v] = std::move(outs[o]);
      if (!outer && options_.observe) options_.observe(*v, stored.in_layout(Layout::kPlain));  // a no-op: nothing is channels-last when observed (plan_for)
    }
    for (const ir::Value* v : plan.release_after[i]) env.values.erase(v);
  }

  std::vector<Array> results;
  for (const ir::Value* v : graph.outputs()) {
    const Array* a = lookup(v).array;
    if (!a) fail("graph output '{}' has no value", v->name());
    results.push_back(a->in_layout(Layout::kPlain));
  }
  return results;
}

std::vector<std::string> unsupported_operators(const ir::Model& model) {
  const KernelRegistry& registry = KernelRegistry::instance();
  std::set<std::string> out;
  model.for_each_graph([&](const ir::Graph& g) {
    for (const ir::Node* n : g.nodes()) {
      std::string why = registry.why_unsupported(n->domain(), n->op_type(), node_opset(model, *n));
      if (!why.empty()) out.insert(why);
    }
  });
  return {out.begin(), out.end()};
}

Executor::Executor(const ir::Model& model, ExecutorOptions options) : model_(model), runner_(model, options) {
  ir::validate_model(model);  // no kernel sees a node the validation layer has not passed
  std::vector<std::string> missing = unsupported_operators(model);
  for (const ir::Value* v : model.graph().inputs()) {
    const onnx::TypeProto& type = v->info().type();
    if (!type.has_tensor_type()) {
      missing.push_back(fmt::format("not supported: input '{}' is not a tensor (sequence, map or optional)", v->name()));
    } else if (element_size(type.tensor_type().elem_type()) == 0) {
      missing.push_back(fmt::format("not supported: input '{}' of type {}", v->name(), ir::dtype::name(type.tensor_type().elem_type())));
    }
  }
  if (!missing.empty()) fail("the executor cannot run this model: {}", fmt::join(missing, "; "));
}

std::vector<Array> Executor::run(const std::map<std::string, Array>& feeds) {
  const ir::Graph& graph = model_.graph();
  std::vector<Array> inputs;
  std::set<std::string> used;
  for (const ir::Value* v : graph.inputs()) {
    auto it = feeds.find(v->name());
    if (it == feeds.end()) {
      if (v->initializer()) {
        inputs.push_back(Array());  // falls back to the initializer
        continue;
      }
      fail("no data for model input '{}'", v->name());
    }
    used.insert(v->name());
    const Array& a = it->second;
    const onnx::TypeProto& type = v->info().type();
    if (type.has_tensor_type()) {
      const auto& tt = type.tensor_type();
      if (tt.elem_type() != 0 && tt.elem_type() != a.dtype()) {
        fail("input '{}' expects {} data, got {}", v->name(), ir::dtype::name(tt.elem_type()),
             ir::dtype::name(a.dtype()));
      }
      if (tt.has_shape()) {
        const auto& dims = tt.shape().dim();
        bool ok = dims.size() == static_cast<int>(a.rank());
        for (int d = 0; ok && d < dims.size(); ++d) {
          if (dims[d].has_dim_value() && dims[d].dim_value() != a.dim(d)) ok = false;
        }
        if (!ok) {
          std::vector<std::string> want;
          for (const auto& d : dims) want.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : "?");
          fail("input '{}' expects shape [{}], got {}", v->name(), fmt::join(want, ","), shape_string(a.shape()));
        }
      }
    }
    inputs.push_back(a);
  }
  for (const auto& [name, array] : feeds) {
    if (!used.count(name)) fail("data given for '{}', which is not an input of the model", name);
  }
  struct Deadline {  // the time limit counts from here; nested runs (fold-constants inside a pass) keep the outer one
    bool owner = !t_deadline.has_value();
    Deadline() {
      if (owner && g_run_time_limit.load() > 0)
        t_deadline = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(g_run_time_limit.load()));
    }
    ~Deadline() {
      if (owner) t_deadline.reset();
    }
  } deadline;
  std::vector<Array> outputs = runner_.run_graph(graph, inputs, nullptr);
  for (size_t i = 0; i < outputs.size(); ++i) {  // float16 outputs held as float32 are rounded as declared
    const onnx::TypeProto& type = graph.outputs()[i]->info().type();
    if (type.has_tensor_type() && type.tensor_type().elem_type() == ir::dtype::kFloat16 &&
        outputs[i].dtype() == ir::dtype::kFloat)
      outputs[i] = cast(outputs[i], ir::dtype::kFloat16);
  }
  return outputs;
}

}  // namespace mopt::exec
