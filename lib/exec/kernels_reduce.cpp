// Reductions (ReduceSum, ReduceMean, ... over any set of axes) and the normalizing ops over one axis
// (Softmax, LogSoftmax, Hardmax). Float sums accumulate in double.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "exec/broadcast.h"
#include "exec/dispatch.h"
#include "exec/kernel.h"
#include "exec/parallel.h"
#include "exec/vmath.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;

enum class Reduce { Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare };

void reduce_kernel(KernelContext& ctx, Reduce kind, int64_t axes_input_since) {
  const Array& x = ctx.input(0);
  std::vector<int64_t> axes;
  if (ctx.opset() >= axes_input_since) {
    if (const Array* a = ctx.optional_input(1)) axes = a->to_int64s();
  } else {
    axes = ctx.attr_ints("axes");
  }
  bool keep = ctx.attr_int("keepdims", 1) != 0;
  if (axes.empty() && ctx.attr_int("noop_with_empty_axes", 0) != 0) {
    ctx.set_output(0, x);
    return;
  }
  std::vector<bool> reduced(x.shape().size(), axes.empty());
  for (int64_t a : axes) reduced[static_cast<size_t>(normalize_axis(ctx, a, x.rank()))] = true;
  Shape kept, out;
  for (size_t i = 0; i < reduced.size(); ++i) {
    kept.push_back(reduced[i] ? 1 : x.shape()[i]);
    if (!reduced[i] || keep) out.push_back(kept.back());
  }
  int64_t count = 1;
  for (size_t i = 0; i < reduced.size(); ++i) {
    if (reduced[i]) count *= x.shape()[i];
  }
  visit<kNumbers>(x.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
    Acc init = 0;
    if (kind == Reduce::Max) init = std::numeric_limits<T>::lowest();
    if (kind == Reduce::Min) init = std::numeric_limits<T>::max();
    if (kind == Reduce::Prod) init = 1;
    if constexpr (std::is_floating_point_v<T>) {
      if (kind == Reduce::Max) init = -std::numeric_limits<double>::infinity();
      if (kind == Reduce::Min) init = std::numeric_limits<double>::infinity();
    }
    std::vector<Acc> acc(static_cast<size_t>(numel(kept)), init);
    // LogSumExp subtracts the maximum first for stability.
    std::vector<Acc> shift;
    if (kind == Reduce::LogSumExp) {
      shift.assign(acc.size(), std::is_floating_point_v<T> ? -std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::lowest());
      for_each_broadcast_row<1>(x.shape(), {&kept}, [&](int64_t o, int64_t n, const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st) {
        for (int64_t j = 0; j < n; ++j) {
          Acc& s = shift[static_cast<size_t>(off[0] + j * st[0])];
          s = std::max<Acc>(s, static_cast<Acc>(x.data<T>()[o + j]));
        }
      });
      for (Acc& s : shift) {
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isinf(s)) s = 0;
        }
      }
    }
    const T* in = x.data<T>();
    for_each_broadcast_row<1>(x.shape(), {&kept}, [&](int64_t o, int64_t n, const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st) {
      for (int64_t j = 0; j < n; ++j) {
        Acc v = static_cast<Acc>(in[o + j]);
        Acc& a = acc[static_cast<size_t>(off[0] + j * st[0])];
        switch (kind) {
          case Reduce::Sum: case Reduce::Mean: case Reduce::LogSum: a += v; break;
          case Reduce::Max: if (v > a || v != v) a = v; break;
          case Reduce::Min: if (v < a || v != v) a = v; break;
          case Reduce::Prod: a *= v; break;
          case Reduce::L1: a += v < 0 ? static_cast<Acc>(-v) : v; break;
          case Reduce::L2: case Reduce::SumSquare: a += v * v; break;
          case Reduce::LogSumExp:
            a += static_cast<Acc>(std::exp(static_cast<double>(v - shift[static_cast<size_t>(off[0] + j * st[0])])));
            break;
        }
      }
    });
    Array y(x.dtype(), out);
    for (size_t i = 0; i < acc.size(); ++i) {
      double v = static_cast<double>(acc[i]);
      switch (kind) {
        case Reduce::Mean: v = count ? v / static_cast<double>(count) : std::nan(""); break;
        case Reduce::L2: v = std::sqrt(v); break;
        case Reduce::LogSum: v = std::log(v); break;
        case Reduce::LogSumExp: v = std::log(v) + static_cast<double>(shift[i]); break;
        default: break;
      }
      if constexpr (std::is_floating_point_v<T>) {
        y.data<T>()[i] = static_cast<T>(v);
      } else {
        y.data<T>()[i] = (kind == Reduce::Mean || kind == Reduce::L2 || kind == Reduce::LogSum || kind == Reduce::LogSumExp)
                             ? static_cast<T>(v)
                             : acc[i];
      }
    }
    ctx.set_output(0, std::move(y));
  });
}

enum class Norm { Softmax, LogSoftmax, Hardmax };

// Softmax of one contiguous float row (the usual last-axis case): the exponentials by the vectorized
// loop, summed in double like the general path.
void softmax_row(const float* in, float* out, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = in[j] > m ? in[j] : m;
  for (int64_t j = 0; j < n; ++j) out[j] = in[j] - m;
  exp_floats(out, out, n);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(out[j]);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) out[j] *= inv;
}

void softmax_kernel(KernelContext& ctx, Norm kind) {
  const Array& x = ctx.input(0);
  bool legacy = ctx.opset() < 13;
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", legacy ? 1 : -1), x.rank());
  int64_t outer = 1, n = 1, inner = 1;
  if (legacy) {  // coerced to 2-D [outer, n] at axis
    for (int64_t a = 0; a < axis; ++a) outer *= x.dim(a);
    for (int64_t a = axis; a < x.rank(); ++a) n *= x.dim(a);
  } else {
    for (int64_t a = 0; a < axis; ++a) outer *= x.dim(a);
    n = x.dim(axis);
    for (int64_t a = axis + 1; a < x.rank(); ++a) inner *= x.dim(a);
  }
  Array y = Array::uninitialized(x.dtype(), x.shape());  // every element is written below
  visit<kFloats>(x.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(outer, n * inner * 4, [&](int64_t first, int64_t last) {
    for (int64_t o = first; o < last; ++o) {
      if constexpr (std::is_same_v<T, float>) {
        if (inner == 1 && kind == Norm::Softmax) {
          softmax_row(in + o * n, out + o * n, n);
          continue;
        }
      }
      for (int64_t i = 0; i < inner; ++i) {
        auto at = [&](int64_t j) { return (o * n + j) * inner + i; };
        T m = -std::numeric_limits<T>::infinity();
        int64_t arg = 0;
        for (int64_t j = 0; j < n; ++j) {
          if (in[at(j)] > m) {
            m = in[at(j)];
            arg = j;
          }
        }
        if (kind == Norm::Hardmax) {
          for (int64_t j = 0; j < n; ++j) out[at(j)] = j == arg ? T(1) : T(0);
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          T e = std::exp(in[at(j)] - m);
          if (kind == Norm::Softmax) out[at(j)] = e;
          sum += static_cast<double>(e);
        }
        if (kind == Norm::Softmax) {
          T inv = static_cast<T>(1.0 / sum);
          for (int64_t j = 0; j < n; ++j) out[at(j)] *= inv;
        } else {
          T log_sum = static_cast<T>(std::log(sum));
          for (int64_t j = 0; j < n; ++j) out[at(j)] = in[at(j)] - m - log_sum;
        }
      }
    }
    });
  });
  ctx.set_output(0, std::move(y));
}

void add_reduce(KernelRegistry& r, const char* op, Reduce kind, int64_t axes_input_since) {
  r.add({"", op, 1, kLatest, [kind, axes_input_since](KernelContext& ctx) { reduce_kernel(ctx, kind, axes_input_since); }});
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  add_reduce(r, "ReduceSum", Reduce::Sum, 13);
  add_reduce(r, "ReduceMean", Reduce::Mean, 18);
  add_reduce(r, "ReduceMax", Reduce::Max, 18);
  add_reduce(r, "ReduceMin", Reduce::Min, 18);
  add_reduce(r, "ReduceProd", Reduce::Prod, 18);
  add_reduce(r, "ReduceL1", Reduce::L1, 18);
  add_reduce(r, "ReduceL2", Reduce::L2, 18);
  add_reduce(r, "ReduceLogSum", Reduce::LogSum, 18);
  add_reduce(r, "ReduceLogSumExp", Reduce::LogSumExp, 18);
  add_reduce(r, "ReduceSumSquare", Reduce::SumSquare, 18);
  r.add({"", "Softmax", 1, kLatest, [](KernelContext& ctx) { softmax_kernel(ctx, Norm::Softmax); }});
  r.add({"", "LogSoftmax", 1, kLatest, [](KernelContext& ctx) { softmax_kernel(ctx, Norm::LogSoftmax); }});
  r.add({"", "Hardmax", 1, kLatest, [](KernelContext& ctx) { softmax_kernel(ctx, Norm::Hardmax); }});
}

}  // namespace mopt::exec
