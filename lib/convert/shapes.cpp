// Shape inference onto the IR and static input shapes; see shapes.h.
#include "convert/shapes.h"

#include <onnx/shape_inference/implementation.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <stdexcept>

#include "ir/validate.h"
#include "ir/verify.h"
#include "util/error.h"

namespace mopt::convert {
namespace {

// Fills unknown dimensions of `existing` from `inferred` when both have the same rank and element type.
bool refine(onnx::TypeProto& existing, const onnx::TypeProto& inferred) {
  if (!existing.has_tensor_type() || !inferred.has_tensor_type() || !inferred.tensor_type().has_shape()) return false;
  auto& tt = *existing.mutable_tensor_type();
  const auto& it = inferred.tensor_type();
  if (tt.elem_type() != it.elem_type()) return false;
  if (!tt.has_shape()) {
    *tt.mutable_shape() = it.shape();
    return true;
  }
  if (tt.shape().dim_size() != it.shape().dim_size()) return false;
  bool changed = false;
  for (int d = 0; d < tt.shape().dim_size(); ++d) {
    auto* dim = tt.mutable_shape()->mutable_dim(d);
    const auto& from = it.shape().dim(d);
    if (!dim->has_dim_value() && from.has_dim_value()) {
      dim->set_dim_value(from.dim_value());  // clears a dim_param
      changed = true;
    }
  }
  return changed;
}

// Walks the IR graph and the inferred proto graph side by side (export keeps node order).
void apply(ir::Graph& graph, const onnx::GraphProto& inferred, InferenceResult& result) {
  auto take = [&](const onnx::ValueInfoProto& vi) {
    ir::Value* v = graph.find_local(vi.name());
    if (v == nullptr || !vi.has_type()) return;
    if (!v->has_type()) {
      graph.set_value_type(v, vi.type());
      ++result.values_typed;
      return;
    }
    onnx::TypeProto type = v->info().type();
    if (refine(type, vi.type())) {
      graph.set_value_type(v, type);
      ++result.values_refined;
    }
  };
  for (const auto& vi : inferred.value_info()) take(vi);
  for (const auto& vi : inferred.output()) take(vi);
  const auto nodes = graph.nodes();
  for (size_t i = 0; i < nodes.size() && i < static_cast<size_t>(inferred.node_size()); ++i) {
    const auto& node_proto = inferred.node(static_cast<int>(i));
    const auto subgraphs = nodes[i]->subgraphs();
    size_t k = 0;
    for (const auto& attr : node_proto.attribute()) {
      if (attr.has_g() && k < subgraphs.size()) apply(*subgraphs[k++], attr.g(), result);
      for (const auto& g : attr.graphs()) {
        if (k < subgraphs.size()) apply(*subgraphs[k++], g, result);
      }
    }
  }
}

// Replaces symbolic dimensions that have a value in every recorded type of `graph` and its subgraphs.
void substitute(ir::Graph& graph, const std::map<std::string, int64_t>& values) {
  for (ir::Value* v : graph.values()) {
    if (!v->has_type() || !v->info().type().has_tensor_type() || !v->info().type().tensor_type().has_shape()) continue;
    onnx::TypeProto type = v->info().type();
    bool changed = false;
    for (auto& dim : *type.mutable_tensor_type()->mutable_shape()->mutable_dim()) {
      if (!dim.has_dim_param()) continue;
      auto it = values.find(dim.dim_param());
      if (it == values.end()) continue;
      dim.set_dim_value(it->second);
      changed = true;
    }
    if (changed) graph.set_value_type(v, type);
  }
  for (ir::Node* n : graph.nodes()) {
    for (ir::Graph* g : n->subgraphs()) substitute(*g, values);
  }
}

// ONNX 1.12's data propagation dereferences null types on malformed graphs the rest of its inference
// accepts (fuzz findings: a Shape after an Unsqueeze axis beyond a scalar's rank, a Gather index beyond a
// shape's length). It runs in a child process, which sends the inferred model back through a pipe, so a
// crash there cannot take mopt down. True with `proto` inferred; false when the child died or could not
// start (the caller then infers without data propagation); throws ONNX's message when inference failed.
bool infer_isolated(onnx::ModelProto& proto, const onnx::ShapeInferenceOptions& options) {
  int fds[2];
  if (pipe(fds) != 0) return false;  // no pipe or no process to spare: plain inference, which is safe
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {  // the child: infer, send 'O' + the model or 'E' + the message, and leave without cleanup
    close(fds[0]);
    // A crash here is the expected failure this child exists for: it ends quietly, without the host's
    // crash handlers (a test framework's, Python's faulthandler, a sanitizer's report) or a core file.
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, [](int) { _exit(3); });
    std::string reply;
    try {
      onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), options);
      proto.mutable_graph()->clear_initializer();  // the parent reads types, not weights: a smaller reply
      proto.mutable_graph()->clear_sparse_initializer();
      reply.assign(1, 'O');
      reply.append(proto.SerializeAsString());
    } catch (const std::exception& e) {
      reply.assign(1, 'E');
      reply.append(e.what());
    }
    for (size_t done = 0; done < reply.size();) {
      const ssize_t n = write(fds[1], reply.data() + done, reply.size() - done);
      if (n <= 0) _exit(1);
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string reply;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || reply.empty()) return false;
  if (reply[0] == 'E') throw std::runtime_error(reply.substr(1));
  onnx::ModelProto inferred;
  if (!inferred.ParseFromArray(reply.data() + 1, static_cast<int>(reply.size() - 1))) return false;
  proto = std::move(inferred);
  return true;
}

}  // namespace

InferenceResult infer_shapes(ir::Model& model, bool strict, bool data_propagation) {
  ir::validate_model(model);  // ONNX 1.12's inference crashes on some malformed nodes
  InferenceResult result;
  onnx::ModelProto proto = ir::export_for_analysis(model, 1 << 20, 4096);
  const onnx::ShapeInferenceOptions options(/*check_type=*/false, /*strict_mode=*/strict ? 1 : 0, data_propagation);
  try {
    if (!data_propagation || !infer_isolated(proto, options)) {
      onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(),
                                         onnx::ShapeInferenceOptions(false, strict ? 1 : 0, false));
    }
  } catch (const std::exception& e) {
    const std::string message = one_line(e.what());
    if (strict) fail("shape inference failed: {}", message);
    result.stopped = message;
    return result;
  }
  apply(model.graph(), proto.graph(), result);
  return result;
}

int64_t make_static(ir::Model& model, const StaticShapes& shapes) {
  ir::Graph& graph = model.graph();
  std::map<std::string, int64_t> values = shapes.given.dims;
  auto learn = [&](const std::string& param, int64_t value, const std::string& where) {
    auto [it, inserted] = values.emplace(param, value);
    if (!inserted && it->second != value) {
      usage_error("symbolic dimension '{}' would be both {} and {} ({})", param, it->second, value, where);
    }
  };
  for (const auto& given : shapes.given.shapes) {
    const std::string& name = given.first;  // a plain reference: clang 14 cannot capture structured bindings
    const auto& in = graph.inputs();
    auto it = std::find_if(in.begin(), in.end(), [&](const ir::Value* v) { return v->name() == name && !v->initializer(); });
    if (it == in.end()) usage_error("--shape {}: the model has no input named '{}'", name, name);
  }
  for (const auto& [param, value] : shapes.given.dims) {
    if (value < 1) usage_error("--dim {}={}: dimensions must be at least 1", param, value);
  }
  int64_t changed = 0;
  for (ir::Value* input : std::vector<ir::Value*>(graph.inputs())) {
    if (input->initializer() || !input->info().type().has_tensor_type()) continue;
    onnx::TypeProto type = input->info().type();
    auto* tensor = type.mutable_tensor_type();
    auto given = shapes.given.shapes.find(input->name());
    if (given != shapes.given.shapes.end()) {
      const std::vector<int64_t>& dims = given->second;
      if (tensor->has_shape() && tensor->shape().dim_size() != static_cast<int>(dims.size())) {
        usage_error("--shape {}: the input has rank {}, got {} dimensions", input->name(), tensor->shape().dim_size(), dims.size());
      }
      if (!tensor->has_shape()) {
        for (size_t d = 0; d < dims.size(); ++d) tensor->mutable_shape()->add_dim();
      }
      for (size_t d = 0; d < dims.size(); ++d) {
        auto* dim = tensor->mutable_shape()->mutable_dim(static_cast<int>(d));
        if (dims[d] < 1) usage_error("--shape {}: dimension {} must be at least 1, got {}", input->name(), d, dims[d]);
        if (dim->has_dim_value()) {
          if (dim->dim_value() != dims[d]) {
            usage_error("--shape {}: dimension {} is fixed at {} in the model", input->name(), d, dim->dim_value());
          }
          continue;
        }
        if (dim->has_dim_param()) learn(dim->dim_param(), dims[d], "--shape " + input->name());
        dim->set_dim_value(dims[d]);
        ++changed;
      }
    } else if (shapes.batch && tensor->has_shape() && tensor->shape().dim_size() > 0) {
      auto* dim = tensor->mutable_shape()->mutable_dim(0);
      if (!dim->has_dim_value()) {
        if (dim->has_dim_param()) learn(dim->dim_param(), *shapes.batch, "--batch");
        dim->set_dim_value(*shapes.batch);
        ++changed;
      }
    }
    graph.set_value_type(input, type);
  }
  for (const auto& [param, value] : values) {
    if (value < 1) usage_error("dimension '{}' must be at least 1, got {}", param, value);
  }
  // Inputs whose dims are named get their values through the substitution, counted here.
  for (const ir::Value* input : graph.inputs()) {
    if (!input->info().type().tensor_type().has_shape()) continue;
    for (const auto& dim : input->info().type().tensor_type().shape().dim()) {
      if (dim.has_dim_param() && values.count(dim.dim_param())) ++changed;
    }
  }
  substitute(graph, values);
  return changed;
}

}  // namespace mopt::convert
