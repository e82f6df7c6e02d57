// Elementwise kernels: unary math and activations, broadcasting binary arithmetic, comparisons and
// logic, variadic Max/Min/Sum/Mean, Where, Clip, Cast.
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>

#include "exec/broadcast.h"
#include "exec/dispatch.h"
#include "exec/kernel.h"
#include "exec/parallel.h"
#include "exec/vmath.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;  // newest opset whose semantics these kernels were checked against

// ---- unary ----

// A float function over a whole range at once (exec/vmath.h), used for float32 instead of f.
using FloatLoop = void (*)(const float*, float*, int64_t);

// Position i of the output from position i of the input alone, so in any layout: the kernels registered
// with it read channels-last inputs and write their outputs in the same layout (KernelDef::channels_last).
template <unsigned types, typename F>
void unary(KernelContext& ctx, F f, FloatLoop float_loop = nullptr) {
  const Array& x = ctx.input(0);
  visit<types>(x.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    if constexpr (std::is_same_v<T, half>) {
      return;
    } else {
      Array y = ctx.output_buffer(x, x.dtype(), x.shape());  // in place when x dies here
      const T* in = x.data<T>();
      T* out = y.data<T>();
      parallel_for(x.numel(), 8, [&](int64_t begin, int64_t end) {
        if constexpr (std::is_same_v<T, float>) {
          if (float_loop) {
            float_loop(in + begin, out + begin, end - begin);
            return;
          }
        }
        for (int64_t i = begin; i < end; ++i) out[i] = static_cast<T>(f(in[i]));
      });
      ctx.set_output(0, std::move(y));
    }
  });
}

template <unsigned types, typename F>
void predicate(KernelContext& ctx, F f) {
  const Array& x = ctx.input(0);
  visit<types>(x.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    if constexpr (!std::is_same_v<T, half>) {
      Array y(ir::dtype::kBool, x.shape());
      for (int64_t i = 0; i < x.numel(); ++i) y.data<bool>()[i] = f(x.data<T>()[i]);
      ctx.set_output(0, std::move(y));
    }
  });
}

void add_unary_float(KernelRegistry& r, const char* op, int64_t since, auto f) {
  r.add({"", op, since, kLatest, [f](KernelContext& ctx) { unary<kFloats>(ctx, f); }, true, true});
}

// With a vectorized float form (exec/vmath.h); other float types use f.
void add_unary_float(KernelRegistry& r, const char* op, int64_t since, auto f, FloatLoop float_loop) {
  r.add({"", op, since, kLatest, [f, float_loop](KernelContext& ctx) { unary<kFloats>(ctx, f, float_loop); }, true, true});
}

// ---- binary with broadcasting ----

// y = f(a, b) into `y`, of the broadcast shape. y may be a's buffer: every loop below reads a's position j
// only to write position j.
template <typename T, typename R, typename F>
void broadcast_into(const Array& a, const Array& b, Array& y, F f) {
  const Shape& shape = y.shape();
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  R* py = y.data<R>();
  if (a.shape() == b.shape()) {  // the common same-shape case: one flat, parallel loop
    parallel_for(y.numel(), 2, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) py[j] = static_cast<R>(f(pa[j], pb[j]));
    });
    return;
  }
  if (b.numel() == 1) {
    const T vb = pb[0];
    parallel_for(y.numel(), 2, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) py[j] = static_cast<R>(f(pa[j], vb));
    });
    return;
  }
  for_each_broadcast_row<2>(shape, {&a.shape(), &b.shape()},
                            [&](int64_t o, int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st) {
                              const T* xa = pa + off[0];
                              const T* xb = pb + off[1];
                              R* out = py + o;
                              if (st[0] == 1 && st[1] == 1) {
                                for (int64_t j = 0; j < n; ++j) out[j] = static_cast<R>(f(xa[j], xb[j]));
                              } else if (st[0] == 1) {
                                const T vb = *xb;
                                for (int64_t j = 0; j < n; ++j) out[j] = static_cast<R>(f(xa[j], vb));
                              } else if (st[1] == 1) {
                                const T va = *xa;
                                for (int64_t j = 0; j < n; ++j) out[j] = static_cast<R>(f(va, xb[j]));
                              } else {
                                for (int64_t j = 0; j < n; ++j) out[j] = static_cast<R>(f(*xa, *xb));
                              }
                            }, /*parallel=*/true);
}

template <typename T, typename R, typename F>
Array broadcast_binary(KernelContext& ctx, const Array& a, const Array& b, int32_t out_dtype, F f) {
  // In place over `a` when it is input 0, dies here and has the output's type and shape.
  Array y = ctx.output_buffer(a, out_dtype, broadcast_shapes(ctx, {&a.shape(), &b.shape()}));
  broadcast_into<T, R>(a, b, y, f);
  return y;
}

// The dims of an [N, C, D...] shape in the order a channels-last array stores them: [N, D..., C].
Shape stored_order(const Shape& shape) {
  Shape stored = shape;
  std::rotate(stored.begin() + 1, stored.begin() + 2, stored.end());
  return stored;
}

// Whether `x` has the same bytes in both layouts as an operand of rank `rank`: a single value of at most that
// rank, or that rank with every spatial dim 1 (an [N, C, 1, 1] scale of a squeeze-and-excitation block).
bool layout_free_operand(const Array& x, int64_t rank) {
  if (x.numel() == 1 && x.rank() <= rank) return true;
  if (x.rank() != rank || x.rank() < 3) return false;
  for (int64_t i = 2; i < x.rank(); ++i) {
    if (x.dim(i) != 1) return false;
  }
  return true;
}

// Arithmetic on a channels-last operand, of the output's rank, and another that is channels-last as well or
// layout-free (above): the same broadcast over the dims in stored order ([N, D..., C]), written
// channels-last. Returns false, having done nothing, for other operands.
template <typename T, typename F>
bool channels_last_binary(KernelContext& ctx, const Array& a, const Array& b, F f) {
  const Shape shape = broadcast_shapes(ctx, {&a.shape(), &b.shape()});
  const int64_t rank = static_cast<int64_t>(shape.size());
  auto fits = [&](const Array& x) { return (x.channels_last() && x.rank() == rank) || (!x.channels_last() && layout_free_operand(x, rank)); };
  if (!(a.channels_last() || b.channels_last()) || !fits(a) || !fits(b)) return false;
  auto stored = [&](const Array& x) { return x.rank() == rank ? x.with_layout(Layout::kPlain).reshaped(stored_order(x.shape())) : x; };
  Array y = ctx.output_buffer(a, a.dtype(), shape);  // a's buffer when it may be overwritten
  Array y_stored = stored(y);
  broadcast_into<T, T>(stored(a), stored(b), y_stored, f);
  ctx.set_output(0, y.with_layout(Layout::kChannelsLast));
  return true;
}

void check_same_type(KernelContext& ctx, const Array& a, const Array& b) {
  if (a.dtype() != b.dtype()) {
    ctx.error(fmt::format("operands have different types ({} and {})", ir::dtype::name(a.dtype()),
                          ir::dtype::name(b.dtype())));
  }
}

// Opsets before 7 broadcast only when `broadcast` is set, aligning B at `axis`; that equals numpy
// broadcasting when B's dims are a suffix of A's, which is the only form accepted here.
void check_legacy_broadcast(KernelContext& ctx, const Array& a, const Array& b) {
  if (ctx.opset() >= 7 || !ctx.has_attr("axis") || ctx.attr_int("broadcast", 0) == 0) return;
  int64_t axis = ctx.attr_int("axis", 0);
  if (axis < 0) axis += a.rank();
  if (axis != a.rank() - b.rank()) ctx.error("not supported: legacy broadcast with an axis that is not numpy-compatible");
}

// Arithmetic whose result has the operands' type. Channels-last operands (KernelDef::channels_last) stay so
// where channels_last_binary takes them (residual adds, activations' scalars, channel scales); otherwise
// they are reordered to plain.
template <unsigned types, typename F>
void arithmetic(KernelContext& ctx, F f) {
  check_same_type(ctx, ctx.input(0), ctx.input(1));
  check_legacy_broadcast(ctx, ctx.input(0), ctx.input(1));
  visit<types>(ctx.input(0).dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    if constexpr (!std::is_same_v<T, half>) {
      if (channels_last_binary<T>(ctx, ctx.input(0), ctx.input(1), f)) return;
      const Array& a = ctx.plain_input(0);
      const Array& b = ctx.plain_input(1);
      ctx.set_output(0, broadcast_binary<T, T>(ctx, a, b, a.dtype(), f));
    }
  });
}

template <unsigned types, typename F>
void comparison(KernelContext& ctx, F f) {
  const Array& a = ctx.input(0);
  const Array& b = ctx.input(1);
  check_same_type(ctx, a, b);
  visit<types>(a.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
    if constexpr (!std::is_same_v<T, half>) {
      ctx.set_output(0, broadcast_binary<T, bool>(ctx, a, b, ir::dtype::kBool, f));
    }
  });
}

template <typename F>
void variadic(KernelContext& ctx, F f) {
  Array acc = ctx.input(0);
  for (size_t i = 1; i < ctx.input_count(); ++i) {
    const Array& b = ctx.input(i);
    check_same_type(ctx, acc, b);
    acc = visit<kNumbers>(acc.dtype(), ctx.node().op_type().c_str(), [&]<typename T>(T) {
      return broadcast_binary<T, T>(ctx, acc, b, acc.dtype(), f);
    });
  }
  if (ctx.input_count() == 1) acc = acc.clone();
  ctx.set_output(0, std::move(acc));
}

template <typename T>
T divide(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    if (b == 0) return 0;  // undefined in ONNX; avoid a crash
    if constexpr (std::is_signed_v<T>) {
      if (a == std::numeric_limits<T>::min() && b == -1) return a;
    }
  }
  return static_cast<T>(a / b);
}

// Integer arithmetic wraps around as two's complement (what runtimes do; signed overflow is undefined
// behaviour in C++, so it goes through the unsigned type). Floats are computed as usual.
// Narrow types compute in unsigned int: uint16 * uint16 would otherwise promote to (overflowing) int.
template <typename T, typename Op>
T wrapping(T a, T b, Op op) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
    return static_cast<T>(static_cast<U>(op(static_cast<U>(a), static_cast<U>(b))));
  } else {
    return static_cast<T>(op(a, b));
  }
}
template <typename T>
T wrap_neg(T v) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) return static_cast<T>(-static_cast<std::make_unsigned_t<T>>(v));
  else return static_cast<T>(-v);
}

template <typename T>
T modulo(T a, T b, bool fmod) {
  if constexpr (std::is_floating_point_v<T>) {
    if (fmod) return std::fmod(a, b);
    T m = std::fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed_v<T>) {
      if (b == -1) return 0;
      T m = static_cast<T>(a % b);
      if (!fmod && m != 0 && ((m < 0) != (b < 0))) m = static_cast<T>(m + b);
      return m;
    } else {
      return static_cast<T>(a % b);
    }
  }
}

void pow_kernel(KernelContext& ctx) {
  const Array& a = ctx.input(0);
  const Array& b = ctx.input(1);
  Array exponent = cast(b, ir::dtype::kDouble);
  Shape shape = broadcast_shapes(ctx, {&a.shape(), &b.shape()});
  visit<kNumbers>(a.dtype(), "Pow", [&]<typename T>(T) {
    Array y(a.dtype(), shape);
    const T* pa = a.data<T>();
    const double* pb = exponent.data<double>();
    T* py = y.data<T>();
    for_each_broadcast_row<2>(shape, {&a.shape(), &b.shape()},
                              [&](int64_t o, int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st) {
                                for (int64_t j = 0; j < n; ++j) {
                                  double e = pb[off[1] + j * st[1]];
                                  T base = pa[off[0] + j * st[0]];
                                  if constexpr (std::is_same_v<T, float>) {
                                    py[o + j] = e == 2.0 ? base * base : std::pow(base, static_cast<float>(e));
                                  } else {
                                    py[o + j] = static_cast<T>(std::pow(static_cast<double>(base), e));
                                  }
                                }
                              });
    ctx.set_output(0, std::move(y));
  });
}

void where_kernel(KernelContext& ctx) {
  const Array& c = ctx.input(0);
  const Array& x = ctx.input(1);
  const Array& y = ctx.input(2);
  if (c.dtype() != ir::dtype::kBool) ctx.error("condition must be bool");
  check_same_type(ctx, x, y);
  Shape shape = broadcast_shapes(ctx, {&c.shape(), &x.shape(), &y.shape()});
  Array out(x.dtype(), shape);
  size_t size = element_size(x.dtype());
  const bool* pc = c.data<bool>();
  for_each_broadcast_row<3>(shape, {&c.shape(), &x.shape(), &y.shape()},
                            [&](int64_t o, int64_t n, const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& st) {
                              for (int64_t j = 0; j < n; ++j) {
                                bool take_x = pc[off[0] + j * st[0]];
                                const std::byte* src = take_x ? x.bytes() + (off[1] + j * st[1]) * static_cast<int64_t>(size)
                                                              : y.bytes() + (off[2] + j * st[2]) * static_cast<int64_t>(size);
                                std::memcpy(out.bytes() + (o + j) * static_cast<int64_t>(size), src, size);
                              }
                            });
  ctx.set_output(0, std::move(out));
}

void clip_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  visit<kNumbers>(x.dtype(), "Clip", [&]<typename T>(T) {
    T lo = std::numeric_limits<T>::lowest();
    T hi = std::numeric_limits<T>::max();
    if (ctx.opset() < 11) {
      if constexpr (!std::is_floating_point_v<T>) ctx.error("Clip before opset 11 takes floating-point input only");
      lo = static_cast<T>(ctx.attr_float("min", -std::numeric_limits<float>::max()));
      hi = static_cast<T>(ctx.attr_float("max", std::numeric_limits<float>::max()));
    } else {
      auto bound = [&](int index, T& to) {
        const Array* m = ctx.optional_input(index);
        if (m == nullptr) return;
        if (m->dtype() != x.dtype() || m->numel() != 1) ctx.error("min and max must be scalars of the input's type");
        to = m->data<T>()[0];
      };
      bound(1, lo);
      bound(2, hi);
    }
    Array y = ctx.output_buffer(x, x.dtype(), x.shape());  // in place when x dies here; in x's layout
    const T* in = x.data<T>();
    T* out = y.data<T>();
    // Bounds captured by value: by reference, the compiler cannot rule out that `out` overwrites them and
    // reloads them per element instead of vectorizing (4x slower than Add on ppocrv4_det's activations).
    parallel_for(x.numel(), 2, [in, out, lo, hi](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const T raised = in[i] < lo ? lo : in[i];
        out[i] = hi < raised ? hi : raised;  // min > max gives max, as ONNX says; NaN stays NaN
      }
    });
    ctx.set_output(0, std::move(y));
  });
}

void prelu_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  Array slope = ctx.input(1);
  // Before opset 7 a 1-D slope applies per channel (axis 1), not to the last axis.
  if (ctx.opset() < 7 && slope.rank() == 1 && x.rank() > 2 && slope.dim(0) == x.dim(1) && slope.dim(0) != 1) {
    exec::Shape s{slope.dim(0)};
    s.resize(static_cast<size_t>(x.rank() - 1), 1);
    slope = slope.reshaped(s);
  }
  visit<kFloats | kSignedInts>(x.dtype(), "PRelu", [&]<typename T>(T) {
    ctx.set_output(0, broadcast_binary<T, T>(ctx, x, slope, x.dtype(), [](T v, T s) { return v < 0 ? static_cast<T>(v * s) : v; }));
  });
}

template <typename T>
T round_half_even(T v) {
  return std::nearbyint(v);  // default rounding mode: to nearest, ties to even
}

double erf_gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  using std::abs;
  add_unary_float(r, "Exp", 6, [](auto v) { return std::exp(v); }, exp_floats);
  add_unary_float(r, "Log", 6, [](auto v) { return std::log(v); });
  add_unary_float(r, "Sqrt", 6, [](auto v) { return std::sqrt(v); });
  add_unary_float(r, "Reciprocal", 6, [](auto v) { return decltype(v)(1) / v; });
  add_unary_float(
      r, "Sigmoid", 6,
      [](auto v) {
        using T = decltype(v);
        return v >= 0 ? T(1) / (T(1) + std::exp(-v)) : std::exp(v) / (T(1) + std::exp(v));
      },
      sigmoid_floats);
  add_unary_float(r, "Tanh", 6, [](auto v) { return std::tanh(v); }, tanh_floats);
  add_unary_float(r, "Erf", 9, [](auto v) { return std::erf(v); }, erf_floats);
  add_unary_float(r, "Floor", 6, [](auto v) { return std::floor(v); });
  add_unary_float(r, "Ceil", 6, [](auto v) { return std::ceil(v); });
  add_unary_float(r, "Round", 11, [](auto v) { return round_half_even(v); });
  add_unary_float(r, "Sin", 7, [](auto v) { return std::sin(v); });
  add_unary_float(r, "Cos", 7, [](auto v) { return std::cos(v); });
  add_unary_float(r, "Tan", 7, [](auto v) { return std::tan(v); });
  add_unary_float(r, "Asin", 7, [](auto v) { return std::asin(v); });
  add_unary_float(r, "Acos", 7, [](auto v) { return std::acos(v); });
  add_unary_float(r, "Atan", 7, [](auto v) { return std::atan(v); });
  add_unary_float(r, "Sinh", 9, [](auto v) { return std::sinh(v); });
  add_unary_float(r, "Cosh", 9, [](auto v) { return std::cosh(v); });
  add_unary_float(r, "Asinh", 9, [](auto v) { return std::asinh(v); });
  add_unary_float(r, "Acosh", 9, [](auto v) { return std::acosh(v); });
  add_unary_float(r, "Atanh", 9, [](auto v) { return std::atanh(v); });
  add_unary_float(r, "Softplus", 1, [](auto v) {
    using T = decltype(v);
    return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
  });
  add_unary_float(r, "Softsign", 1, [](auto v) { return v / (decltype(v)(1) + std::abs(v)); });
  add_unary_float(r, "Mish", 18, [](auto v) {
    using T = decltype(v);
    T sp = v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
    return v * std::tanh(sp);
  });
  add_unary_float(r, "HardSwish", 14, [](auto v) {
    using T = decltype(v);
    return v * std::max(T(0), std::min(T(1), v / T(6) + T(0.5)));
  });

  // Activations with attributes.
  r.add({"", "Relu", 6, kLatest, [](KernelContext& ctx) {
           // max(x, 0) with NaN kept (as numpy and ONNX's reference give it), not turned into 0
           unary<kFloats | kSignedInts>(ctx, [](auto v) { return v < decltype(v)(0) ? decltype(v)(0) : v; }, relu_floats);
         }, true, true});
  r.add({"", "LeakyRelu", 6, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 0.01f);
           unary<kFloats>(ctx, [alpha](auto v) { return v >= 0 ? v : v * alpha; });
         }, true, true});
  r.add({"", "Elu", 6, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 1.0f);
           unary<kFloats>(ctx, [alpha](auto v) { return v >= 0 ? v : alpha * std::expm1(v); });
         }, true, true});
  r.add({"", "Celu", 12, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 1.0f);
           unary<kFloats>(ctx, [alpha](auto v) {
             using T = decltype(v);
             return std::max(T(0), v) + std::min(T(0), T(alpha) * std::expm1(v / T(alpha)));
           });
         }, true, true});
  r.add({"", "Selu", 6, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 1.67326319217681884765625f);
           float gamma = ctx.attr_float("gamma", 1.05070102214813232421875f);
           unary<kFloats>(ctx, [=](auto v) { return v > 0 ? gamma * v : gamma * (alpha * std::exp(v) - alpha); });
         }, true, true});
  r.add({"", "ThresholdedRelu", 10, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 1.0f);
           unary<kFloats>(ctx, [alpha](auto v) { return v > alpha ? v : decltype(v)(0); });
         }, true, true});
  r.add({"", "HardSigmoid", 6, kLatest, [](KernelContext& ctx) {
           float alpha = ctx.attr_float("alpha", 0.2f);
           float beta = ctx.attr_float("beta", 0.5f);
           unary<kFloats>(ctx, [=](auto v) {
             using T = decltype(v);
             return std::max(T(0), std::min(T(1), T(alpha) * v + T(beta)));
           });
         }, true, true});
  r.add({"", "Shrink", 9, kLatest, [](KernelContext& ctx) {
           float bias = ctx.attr_float("bias", 0.0f);
           float lambd = ctx.attr_float("lambd", 0.5f);
           unary<kNumbers>(ctx, [=](auto v) {
             using T = decltype(v);
             double d = static_cast<double>(v);
             return d < -lambd ? static_cast<T>(d + bias) : (d > lambd ? static_cast<T>(d - bias) : T(0));
           });
         }, true, true});
  r.add({"", "Gelu", 20, kLatest, [](KernelContext& ctx) {
           std::string approximate = ctx.attr_string("approximate", "none");
           if (approximate == "tanh") {
             unary<kFloats>(ctx, [](auto v) {
               double x = static_cast<double>(v);
               return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
             });
           } else {
             unary<kFloats>(ctx, [](auto v) { return erf_gelu(static_cast<double>(v)); });
           }
         }, true, true});
  r.add({"", "Abs", 6, kLatest, [](KernelContext& ctx) {
           unary<kNumbers>(ctx, [](auto v) {
             if constexpr (std::is_unsigned_v<decltype(v)>) return v;
             else return v < 0 ? wrap_neg(v) : v;  // Abs(INT64_MIN) wraps to INT64_MIN, as in the runtimes
           });
         }, true, true});
  r.add({"", "Neg", 6, kLatest, [](KernelContext& ctx) {
           unary<kFloats | kSignedInts>(ctx, [](auto v) { return wrap_neg(v); });
         }, true, true});
  r.add({"", "Sign", 9, kLatest, [](KernelContext& ctx) {
           unary<kNumbers>(ctx, [](auto v) {
             using T = decltype(v);
             return v > T(0) ? T(1) : (v < T(0) ? static_cast<T>(-1) : T(0));
           });
         }, true, true});
  r.add({"", "Not", 1, kLatest, [](KernelContext& ctx) { unary<kBools>(ctx, [](bool v) { return !v; }); }});
  r.add({"", "IsNaN", 9, kLatest, [](KernelContext& ctx) { predicate<kFloats>(ctx, [](auto v) { return std::isnan(v); }); }});
  r.add({"", "IsInf", 10, kLatest, [](KernelContext& ctx) {
           bool pos = ctx.attr_int("detect_positive", 1) != 0;
           bool neg = ctx.attr_int("detect_negative", 1) != 0;
           predicate<kFloats>(ctx, [=](auto v) { return std::isinf(v) && ((v > 0 && pos) || (v < 0 && neg)); });
         }});

  // Binary arithmetic and logic.
  r.add({"", "Add", 1, kLatest, [](KernelContext& ctx) { arithmetic<kNumbers>(ctx, [](auto a, auto b) { return wrapping(a, b, std::plus<>()); }); }, true, true});
  r.add({"", "Sub", 1, kLatest, [](KernelContext& ctx) { arithmetic<kNumbers>(ctx, [](auto a, auto b) { return wrapping(a, b, std::minus<>()); }); }, true, true});
  r.add({"", "Mul", 1, kLatest, [](KernelContext& ctx) { arithmetic<kNumbers>(ctx, [](auto a, auto b) { return wrapping(a, b, std::multiplies<>()); }); }, true, true});
  r.add({"", "Div", 1, kLatest, [](KernelContext& ctx) { arithmetic<kNumbers>(ctx, [](auto a, auto b) { return divide(a, b); }); }, true, true});
  r.add({"", "Mod", 10, kLatest, [](KernelContext& ctx) {
           bool fmod = ctx.attr_int("fmod", 0) != 0;
           arithmetic<kNumbers>(ctx, [fmod](auto a, auto b) { return modulo(a, b, fmod); });
         }});
  r.add({"", "BitShift", 11, kLatest, [](KernelContext& ctx) {
           bool left = ctx.attr_string("direction", "") == "LEFT";
           arithmetic<kUnsignedInts>(ctx, [left](auto a, auto b) {
             using T = decltype(a);
             if (b >= sizeof(T) * 8) return T(0);
             return static_cast<T>(left ? a << b : a >> b);
           });
         }});
  r.add({"", "Pow", 1, kLatest, pow_kernel});
  r.add({"", "PRelu", 1, kLatest, prelu_kernel});
  r.add({"", "And", 7, kLatest, [](KernelContext& ctx) { comparison<kBools>(ctx, [](bool a, bool b) { return a && b; }); }});
  r.add({"", "Or", 7, kLatest, [](KernelContext& ctx) { comparison<kBools>(ctx, [](bool a, bool b) { return a || b; }); }});
  r.add({"", "Xor", 7, kLatest, [](KernelContext& ctx) { comparison<kBools>(ctx, [](bool a, bool b) { return a != b; }); }});
  r.add({"", "Equal", 7, kLatest, [](KernelContext& ctx) { comparison<kNumbers | kBools>(ctx, [](auto a, auto b) { return a == b; }); }});
  r.add({"", "Less", 7, kLatest, [](KernelContext& ctx) { comparison<kNumbers>(ctx, [](auto a, auto b) { return a < b; }); }});
  r.add({"", "Greater", 7, kLatest, [](KernelContext& ctx) { comparison<kNumbers>(ctx, [](auto a, auto b) { return a > b; }); }});
  r.add({"", "LessOrEqual", 12, kLatest, [](KernelContext& ctx) { comparison<kNumbers>(ctx, [](auto a, auto b) { return a <= b; }); }});
  r.add({"", "GreaterOrEqual", 12, kLatest, [](KernelContext& ctx) { comparison<kNumbers>(ctx, [](auto a, auto b) { return a >= b; }); }});

  // Variadic.
  r.add({"", "Max", 1, kLatest, [](KernelContext& ctx) {
           variadic(ctx, [](auto a, auto b) { return (std::isnan(static_cast<double>(a)) || a > b) ? a : b; });
         }});
  r.add({"", "Min", 1, kLatest, [](KernelContext& ctx) {
           variadic(ctx, [](auto a, auto b) { return (std::isnan(static_cast<double>(a)) || a < b) ? a : b; });
         }});
  r.add({"", "Sum", 1, kLatest, [](KernelContext& ctx) { variadic(ctx, [](auto a, auto b) { return wrapping(a, b, std::plus<>()); }); }});
  r.add({"", "Mean", 1, kLatest, [](KernelContext& ctx) {
           variadic(ctx, [](auto a, auto b) { return wrapping(a, b, std::plus<>()); });
           Array& y = ctx.outputs()[0];
           double n = static_cast<double>(ctx.input_count());
           visit<kFloats>(y.dtype(), "Mean", [&]<typename T>(T) {
             for (int64_t i = 0; i < y.numel(); ++i) y.data<T>()[i] = static_cast<T>(y.data<T>()[i] / n);
           });
         }});

  r.add({"", "Where", 9, kLatest, where_kernel, false});
  r.add({"", "Clip", 6, kLatest, clip_kernel, true, true});
  r.add({"", "Cast", 6, kLatest, [](KernelContext& ctx) {
           ctx.set_output(0, cast(ctx.input(0), static_cast<int32_t>(ctx.attr_int("to", 0))));
         }, false});
  r.add({"", "CastLike", 15, kLatest, [](KernelContext& ctx) {
           ctx.set_output(0, cast(ctx.input(0), ctx.input(1).dtype()));
         }, false});
}

}  // namespace mopt::exec
