// The kernel table and the attribute/input accessors kernels use.
#include "exec/kernel.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "ir/validate.h"
#include "util/error.h"

namespace mopt::exec {

const Array& KernelContext::input(size_t i) const {
  if (!has_input(i)) error(fmt::format("input {} is required", i));
  return *inputs_[i];
}

namespace {
std::atomic<int64_t> g_in_place_outputs{0};
}

Array KernelContext::output_buffer(const Array& source, int32_t dtype, const Shape& shape) const {
  if (input0_reusable_ && !inputs_.empty() && inputs_[0] == &source && source.dtype() == dtype && source.shape() == shape &&
      source.sole_owner()) {
    g_in_place_outputs.fetch_add(1, std::memory_order_relaxed);
    return source;  // shares the buffer: the kernel writes over its input
  }
  Array fresh = Array::uninitialized(dtype, shape);
  return shape == source.shape() ? fresh.with_layout(source.layout()) : fresh;
}

const Array& KernelContext::plain_input(size_t i) {
  const Array& in = input(i);
  if (!in.channels_last()) return in;
  return plain_copies_.emplace_back(in.in_layout(Layout::kPlain));
}

int64_t in_place_outputs() { return g_in_place_outputs.load(); }

void KernelContext::set_output(size_t i, Array value) {
  if (i >= outputs_.size()) return;  // an optional output the model does not ask for
  outputs_[i] = std::move(value);
}

int64_t KernelContext::attr_int(const std::string& name, int64_t fallback) const {
  const ir::Attribute* a = node_.attribute(name);
  return a ? a->proto.i() : fallback;
}

float KernelContext::attr_float(const std::string& name, float fallback) const {
  const ir::Attribute* a = node_.attribute(name);
  return a ? a->proto.f() : fallback;
}

std::string KernelContext::attr_string(const std::string& name, const std::string& fallback) const {
  const ir::Attribute* a = node_.attribute(name);
  return a ? a->proto.s() : fallback;
}

std::vector<int64_t> KernelContext::attr_ints(const std::string& name) const {
  const ir::Attribute* a = node_.attribute(name);
  if (!a) return {};
  return {a->proto.ints().begin(), a->proto.ints().end()};
}

std::vector<float> KernelContext::attr_floats(const std::string& name) const {
  const ir::Attribute* a = node_.attribute(name);
  if (!a) return {};
  return {a->proto.floats().begin(), a->proto.floats().end()};
}

std::vector<std::string> KernelContext::attr_strings(const std::string& name) const {
  const ir::Attribute* a = node_.attribute(name);
  if (!a) return {};
  return {a->proto.strings().begin(), a->proto.strings().end()};
}

const ir::Graph* KernelContext::attr_graph(const std::string& name) const {
  const ir::Attribute* a = node_.attribute(name);
  if (!a || !a->graph) error(fmt::format("missing graph attribute '{}'", name));
  return a->graph.get();
}

std::string KernelContext::describe() const { return ir::label(node_); }

void KernelContext::error(const std::string& message) const { throw Error(message); }

void KernelRegistry::add(KernelDef def) { defs_.push_back(std::move(def)); }

static bool same_domain(const std::string& a, const std::string& b) {
  auto norm = [](const std::string& d) { return d == "ai.onnx" ? std::string() : d; };
  return norm(a) == norm(b);
}

const KernelDef* KernelRegistry::find(const std::string& domain, const std::string& op_type, int64_t opset) const {
  for (const KernelDef& d : defs_) {
    if (d.op_type == op_type && same_domain(d.domain, domain) && opset >= d.since && opset <= d.until) return &d;
  }
  return nullptr;
}

std::string KernelRegistry::why_unsupported(const std::string& domain, const std::string& op_type,
                                            int64_t opset) const {
  if (find(domain, op_type, opset)) return "";
  std::vector<std::string> ranges;
  for (const KernelDef& d : defs_) {
    if (d.op_type == op_type && same_domain(d.domain, domain)) ranges.push_back(fmt::format("{}-{}", d.since, d.until));
  }
  std::string where = domain.empty() ? "ai.onnx" : domain;
  if (ranges.empty()) return fmt::format("not supported: operator {} (domain {}, opset {})", op_type, where, opset);
  return fmt::format("not supported: operator {} (domain {}) at opset {}; implemented for opsets {}", op_type, where,
                     opset, fmt::join(ranges, ", "));
}

std::vector<const KernelDef*> KernelRegistry::all() const {
  std::vector<const KernelDef*> out;
  for (const KernelDef& d : defs_) out.push_back(&d);
  return out;
}

const KernelRegistry& KernelRegistry::instance() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    register_elementwise_kernels(r);
    register_tensor_kernels(r);
    register_reduce_kernels(r);
    register_nn_kernels(r);
    register_rnn_kernels(r);
    register_quant_kernels(r);
    register_control_kernels(r);
    return r;
  }();
  return registry;
}

const Array& KernelContext::scalar_input(size_t i, const char* what) const {
  const Array& a = input(i);
  if (a.numel() != 1) error(fmt::format("{} must hold one value, not {}", what, a.numel()));
  return a;
}

int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    ctx.error(fmt::format("axis {} is out of range for rank {}", axis, rank));
  }
  return a;
}

Shape broadcast_shapes(const KernelContext& ctx, const std::vector<const Shape*>& shapes) {
  size_t rank = 0;
  for (const Shape* s : shapes) rank = std::max(rank, s->size());
  Shape out(rank, 1);
  for (const Shape* s : shapes) {
    size_t offset = rank - s->size();
    for (size_t i = 0; i < s->size(); ++i) {
      int64_t d = (*s)[i];
      int64_t& o = out[offset + i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::vector<std::string> all;
      for (const Shape* x : shapes) all.push_back(shape_string(*x));
      ctx.error(fmt::format("shapes {} cannot be broadcast together", fmt::join(all, " and ")));
    }
  }
  return out;
}

}  // namespace mopt::exec
