// Control flow: If runs one branch and Loop runs its body, both as subgraphs that see the enclosing
// graph's values through the runner's scope chain.
#include <fmt/format.h>

#include "exec/dispatch.h"
#include "exec/executor.h"
#include "exec/kernel.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;
namespace d = ir::dtype;

void if_kernel(KernelContext& ctx) {
  bool take_then = ctx.scalar_input(0, "the condition").to_doubles()[0] != 0;
  const ir::Graph* branch = ctx.attr_graph(take_then ? "then_branch" : "else_branch");
  std::vector<Array> outs = ctx.runner().run_graph(*branch, {}, ctx.scope());
  if (outs.size() != ctx.output_count()) ctx.error("branch output count differs from the node's");
  for (size_t i = 0; i < outs.size(); ++i) ctx.set_output(i, std::move(outs[i]));
}

// Stacks per-iteration arrays along a new leading axis.
Array stack(const KernelContext& ctx, const std::vector<Array>& parts) {
  if (parts.empty()) ctx.error("not supported: a Loop scan output with zero iterations (its shape is unknown)");
  Shape s = parts[0].shape();
  s.insert(s.begin(), static_cast<int64_t>(parts.size()));
  Array y(parts[0].dtype(), s);
  size_t chunk = parts[0].nbytes();
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].shape() != parts[0].shape()) ctx.error("scan output shapes differ between iterations");
    std::memcpy(y.bytes() + i * chunk, parts[i].bytes(), chunk);
  }
  return y;
}

void loop_kernel(KernelContext& ctx) {
  const ir::Graph* body = ctx.attr_graph("body");
  const Array* max_trip = ctx.has_input(0) ? &ctx.scalar_input(0, "the trip count") : nullptr;
  const Array* cond_in = ctx.has_input(1) ? &ctx.scalar_input(1, "the condition") : nullptr;
  int64_t trips = max_trip ? max_trip->to_int64s()[0] : std::numeric_limits<int64_t>::max();
  bool cond = cond_in ? cond_in->to_doubles()[0] != 0 : true;
  size_t carried = ctx.input_count() - 2;
  std::vector<Array> state;
  for (size_t i = 0; i < carried; ++i) state.push_back(ctx.input(2 + i));
  size_t scans = ctx.output_count() - carried;
  std::vector<std::vector<Array>> scan_parts(scans);
  if (!max_trip && !cond_in) ctx.error("not supported: a Loop with neither a trip count nor a condition");
  for (int64_t it = 0; it < trips && cond; ++it) {
    std::vector<Array> inputs{Array::scalar<int64_t>(d::kInt64, it), Array::scalar<bool>(d::kBool, cond)};
    inputs.insert(inputs.end(), state.begin(), state.end());
    std::vector<Array> outs = ctx.runner().run_graph(*body, inputs, ctx.scope());
    if (outs.size() != 1 + carried + scans) ctx.error("body output count does not match");
    if (outs[0].numel() != 1) ctx.error("the body's condition output must hold one value");
    cond = outs[0].to_doubles()[0] != 0;
    for (size_t i = 0; i < carried; ++i) state[i] = outs[1 + i];
    for (size_t i = 0; i < scans; ++i) scan_parts[i].push_back(outs[1 + carried + i]);
  }
  for (size_t i = 0; i < carried; ++i) ctx.set_output(i, state[i]);
  for (size_t i = 0; i < scans; ++i) ctx.set_output(carried + i, stack(ctx, scan_parts[i]));
}

}  // namespace

void register_control_kernels(KernelRegistry& r) {
  r.add({"", "If", 1, kLatest, if_kernel, false});
  r.add({"", "Loop", 1, kLatest, loop_kernel, false});
}

}  // namespace mopt::exec
