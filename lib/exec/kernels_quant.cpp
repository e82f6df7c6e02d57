// Quantization kernels: QuantizeLinear / DequantizeLinear (per tensor, per axis and blocked; int4/uint4
// codes held widened to 8 bits),
// DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, and ONNX Runtime's
// com.microsoft MatMulNBits (weight-only int4/int8). Integer products are
// accumulated in double (exact below 2^53) through the float MatMul/Conv paths, then rounded half to
// even and saturated as ONNX Runtime does.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "exec/dispatch.h"
#include "exec/kernel.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;
namespace d = ir::dtype;

// Per-element parameter lookup for a scale/zero point that is a scalar, a 1-D vector along `axis`, or
// (opset 21's blocked quantization, block_size > 0) a tensor of x's rank whose `axis` dimension holds one
// entry per block of `block` consecutive elements, the last block possibly shorter.
struct AxisParam {
  std::vector<double> values;
  bool blocked = false;
  int64_t inner = 1, dim = 1, block = 1, blocks = 1;
  double at(int64_t flat) const {
    if (values.size() == 1 && !blocked) return values[0];
    const int64_t along = (flat / inner) % dim;
    if (!blocked) return values[static_cast<size_t>(along)];
    const int64_t outer = flat / (inner * dim), within = flat % inner;
    return values[static_cast<size_t>((outer * blocks + along / block) * inner + within)];
  }
};

AxisParam axis_param(const KernelContext& ctx, const Array* p, const Shape& data, double fallback) {
  AxisParam a;
  if (!p) {
    a.values = {fallback};
    return a;
  }
  a.values = p->to_doubles();
  const int64_t block = ctx.attr_int("block_size", 0);
  if (block < 0) ctx.error(fmt::format("block_size must not be negative, not {}", block));
  if (a.values.size() == 1 && p->rank() <= 1 && block == 0) return a;
  const int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", 1), static_cast<int64_t>(data.size()));
  a.dim = data[static_cast<size_t>(axis)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < data.size(); ++i) a.inner *= data[i];
  if (block == 0) {
    if (p->rank() != 1) ctx.error("scale and zero point must be scalars or 1-D (or blocked, with block_size)");
    if (static_cast<int64_t>(a.values.size()) != a.dim) ctx.error("per-axis parameters do not match the axis size");
    return a;
  }
  // Blocked: the parameter has x's shape with ceil(dim / block) along the axis.
  a.blocked = true;
  a.block = block;
  a.blocks = a.dim == 0 ? 0 : (a.dim - 1) / block + 1;
  Shape expected = data;
  expected[static_cast<size_t>(axis)] = a.blocks;
  if (p->shape() != expected) {
    ctx.error(fmt::format("blocked parameters of shape {} do not match input {} with block_size {} along axis {} (expected {})",
                          shape_string(p->shape()), shape_string(data), block, axis, shape_string(expected)));
  }
  return a;
}

template <typename Q>
Q saturate(double v, double lo = static_cast<double>(std::numeric_limits<Q>::lowest()),
           double hi = static_cast<double>(std::numeric_limits<Q>::max())) {
  v = std::nearbyint(v);
  if (v < lo) return static_cast<Q>(lo);
  if (v > hi) return static_cast<Q>(hi);
  return static_cast<Q>(v);
}

// The element type a value is declared with (its constant's, else its type's; 0 when unknown): 4-bit
// values are held widened to 8 bits, so only the declaration tells int4 from int8.
int32_t declared_type(const ir::Value* v) {
  if (v == nullptr) return 0;
  if (const ir::Tensor* t = v->constant()) return t->dtype();
  if (v->has_type() && v->info().type().has_tensor_type()) return v->info().type().tensor_type().elem_type();
  return 0;
}

void quantize_linear_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array* zp = ctx.optional_input(2);
  int32_t declared = zp ? declared_type(ctx.node().input(2)) : static_cast<int32_t>(ctx.attr_int("output_dtype", d::kUint8));
  if (declared == 0) declared = zp ? zp->dtype() : d::kUint8;
  // 4-bit codes saturate to their own range and are held widened (Array::from_tensor).
  const bool four_bit = declared == d::kInt4 || declared == d::kUint4;
  const int32_t out_type = declared == d::kInt4 ? d::kInt8 : declared == d::kUint4 ? d::kUint8 : declared;
  const double lo = declared == d::kInt4 ? -8 : 0, hi = declared == d::kInt4 ? 7 : 15;
  AxisParam scale = axis_param(ctx, &ctx.input(1), x.shape(), 1.0);
  AxisParam zero = axis_param(ctx, zp, x.shape(), 0.0);
  std::vector<double> v = x.to_doubles();
  Array y(out_type, x.shape());
  visit<kInts>(out_type, "QuantizeLinear", [&]<typename Q>(Q) {
    if constexpr (sizeof(Q) <= 4) {
      Q* out = y.data<Q>();
      // Division in float, as ONNX Runtime does, so results match it bit for bit.
      for (int64_t i = 0; i < x.numel(); ++i) {
        float q = static_cast<float>(v[static_cast<size_t>(i)]) / static_cast<float>(scale.at(i));
        const double code = static_cast<double>(std::nearbyint(q)) + zero.at(i);
        out[i] = four_bit ? saturate<Q>(code, lo, hi) : saturate<Q>(code);
      }
    } else {
      ctx.error("not supported: QuantizeLinear to 64-bit integers");
    }
  });
  ctx.set_output(0, std::move(y));
}

void dequantize_linear_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& s = ctx.input(1);
  AxisParam scale = axis_param(ctx, &s, x.shape(), 1.0);
  AxisParam zero = axis_param(ctx, ctx.optional_input(2), x.shape(), 0.0);
  if (x.dtype() == d::kInt32 && ctx.has_input(2) && ctx.input(2).to_doubles() != std::vector<double>(ctx.input(2).numel(), 0.0)) {
    ctx.error("int32 input needs a zero point of 0");
  }
  std::vector<double> v = x.to_doubles();
  Array y(s.dtype(), x.shape());
  visit<kFloats>(s.dtype(), "DequantizeLinear", [&]<typename T>(T) {
    for (int64_t i = 0; i < x.numel(); ++i) {
      // (x - zp) is exact in float for 8/16-bit inputs; the product rounds once, like ONNX Runtime.
      float diff = static_cast<float>(v[static_cast<size_t>(i)] - zero.at(i));
      y.data<T>()[i] = static_cast<T>(diff * static_cast<float>(scale.at(i)));
    }
  });
  ctx.set_output(0, std::move(y));
}

void dynamic_quantize_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  if (x.dtype() != d::kFloat) ctx.error("input must be float32");
  const float* v = x.data<float>();
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  float scale = (hi - lo) / 255.0f;
  if (scale == 0) scale = 1;  // all zeros: any scale works, avoid dividing by 0
  float zp_f = std::nearbyint(std::clamp(-lo / scale, 0.0f, 255.0f));
  uint8_t zp = static_cast<uint8_t>(zp_f);
  Array y(d::kUint8, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) y.data<uint8_t>()[i] = saturate<uint8_t>(static_cast<double>(std::nearbyint(v[i] / scale)) + zp);
  ctx.set_output(0, std::move(y));
  ctx.set_output(1, Array::scalar<float>(d::kFloat, scale));
  ctx.set_output(2, Array::scalar<uint8_t>(d::kUint8, zp));
}

// x - zero_point as doubles; the zero point is a scalar or per `axis` of x.
Array centered(const KernelContext& ctx, const Array& x, const Array* zp, int64_t axis) {
  Array out(d::kDouble, x.shape());
  std::vector<double> v = x.to_doubles();
  std::vector<double> z = zp ? zp->to_doubles() : std::vector<double>{0.0};
  int64_t inner = 1, dim = 1;
  if (z.size() > 1) {
    axis = normalize_axis(ctx, axis, x.rank());
    dim = x.dim(axis);
    for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.dim(i);
    if (static_cast<int64_t>(z.size()) != dim) ctx.error("zero point does not match the axis size");
  }
  for (int64_t i = 0; i < x.numel(); ++i) {
    double zero = z.size() == 1 ? z[0] : z[static_cast<size_t>((i / inner) % dim)];
    out.data<double>()[i] = v[static_cast<size_t>(i)] - zero;
  }
  return out;
}

void check_int8(const KernelContext& ctx, const Array& a) {
  if (a.dtype() != d::kInt8 && a.dtype() != d::kUint8) {
    ctx.error(fmt::format("expected int8 or uint8 data, got {}", ir::dtype::name(a.dtype())));
  }
}

void matmul_integer_kernel(KernelContext& ctx) {
  const Array& a = ctx.input(0);
  const Array& b = ctx.input(1);
  check_int8(ctx, a);
  check_int8(ctx, b);
  // a_zero_point is per row of A (axis -2 ... the M axis); b_zero_point per column of B (last axis).
  Array ad = centered(ctx, a, ctx.optional_input(2), a.rank() >= 2 ? a.rank() - 2 : 0);
  Array bd = centered(ctx, b, ctx.optional_input(3), b.rank() - 1);
  ctx.set_output(0, cast(matmul_forward(ctx, ad, bd), d::kInt32));
}

void conv_integer_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& w = ctx.input(1);
  check_int8(ctx, x);
  check_int8(ctx, w);
  Array xd = centered(ctx, x, ctx.optional_input(2), 1);
  Array wd = centered(ctx, w, ctx.optional_input(3), 0);
  ctx.set_output(0, cast(conv_forward(ctx, xd, wd, nullptr), d::kInt32));
}

// Requantizes an exact integer accumulator: y = saturate(round(acc * in_scale / y_scale) + y_zp), where
// in_scale may vary along `channel_axis` (per-channel weight scales).
Array requantize(const KernelContext& ctx, const Array& acc, const std::vector<double>& in_scale, int64_t channel_axis,
                 const Array& y_scale, const Array* y_zp) {
  int32_t out_type = y_zp ? y_zp->dtype() : d::kUint8;
  double ys = y_scale.scalar_double();
  double yz = y_zp ? y_zp->scalar_double() : 0.0;
  int64_t inner = 1, dim = 1;
  if (in_scale.size() > 1) {
    dim = acc.dim(channel_axis);
    for (int64_t i = channel_axis + 1; i < acc.rank(); ++i) inner *= acc.dim(i);
    if (static_cast<int64_t>(in_scale.size()) != dim) ctx.error("per-channel scale does not match the output channels");
  }
  Array y(out_type, acc.shape());
  visit<kInts>(out_type, "requantize", [&]<typename Q>(Q) {
    for (int64_t i = 0; i < acc.numel(); ++i) {
      double s = in_scale.size() == 1 ? in_scale[0] : in_scale[static_cast<size_t>((i / inner) % dim)];
      float real = static_cast<float>(acc.data<double>()[i]) * static_cast<float>(s / ys);
      y.data<Q>()[i] = saturate<Q>(static_cast<double>(std::nearbyint(real)) + yz);
    }
  });
  return y;
}

void qlinear_matmul_kernel(KernelContext& ctx) {
  const Array& a = ctx.input(0);
  const Array& b = ctx.input(3);
  check_int8(ctx, a);
  check_int8(ctx, b);
  Array ad = centered(ctx, a, &ctx.input(2), a.rank() >= 2 ? a.rank() - 2 : 0);
  Array bd = centered(ctx, b, &ctx.input(5), b.rank() - 1);
  Array acc = matmul_forward(ctx, ad, bd);
  double as = ctx.input(1).scalar_double();
  std::vector<double> scale = ctx.input(4).to_doubles();
  for (double& s : scale) s *= as;
  ctx.set_output(0, requantize(ctx, acc, scale, acc.rank() - 1, ctx.input(6), &ctx.input(7)));
}

void qlinear_conv_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& w = ctx.input(3);
  check_int8(ctx, x);
  check_int8(ctx, w);
  Array xd = centered(ctx, x, &ctx.input(2), 1);
  Array wd = centered(ctx, w, &ctx.input(5), 0);
  Array bias;
  if (const Array* b = ctx.optional_input(8)) {
    if (b->dtype() != d::kInt32) ctx.error("bias must be int32");
    bias = cast(*b, d::kDouble);
  }
  Array acc = conv_forward(ctx, xd, wd, bias.defined() ? &bias : nullptr);
  double xs = ctx.input(1).scalar_double();
  std::vector<double> scale = ctx.input(4).to_doubles();
  for (double& s : scale) s *= xs;
  ctx.set_output(0, requantize(ctx, acc, scale, 1, ctx.input(6), &ctx.input(7)));
}

// com.microsoft MatMulNBits (ONNX Runtime's weight-only quantized MatMul): Y = A @ dequant(B)^T + bias.
// B is [N, blocks, blob] uint8 with `bits`-bit codes packed low bits first along K; block b of row n
// dequantizes as (code - zero_point[n, b]) * scale[n, b]. Zero points are packed the same way in uint8
// (default 2^(bits-1)) or given unpacked in A's float type. The weight is dequantized to float and
// multiplied in float, the reference ONNX Runtime's accuracy_level 0 describes.
void matmul_nbits_kernel(KernelContext& ctx) {
  const Array& a = ctx.input(0);
  const Array& b = ctx.input(1);
  const int64_t k = ctx.attr_int("K", -1), n = ctx.attr_int("N", -1);
  const int64_t bits = ctx.attr_int("bits", 4), block = ctx.attr_int("block_size", -1);
  if (k <= 0 || n <= 0 || block < 16 || (block & (block - 1)) != 0) ctx.error("K, N and a power-of-two block_size >= 16 are required");
  if (bits != 2 && bits != 4 && bits != 8) ctx.error(fmt::format("not supported: bits={}", bits));
  if (ctx.has_input(4)) ctx.error("not supported: g_idx");
  if (a.dtype() != d::kFloat) ctx.error("not supported: A of type " + ir::dtype::name(a.dtype()));
  if (a.rank() < 1 || a.dim(a.rank() - 1) != k) ctx.error("the last dimension of A must be K");
  const int64_t blocks = (k + block - 1) / block, blob = block * bits / 8;
  if (b.dtype() != d::kUint8 || b.numel() != n * blocks * blob) ctx.error("B must be uint8 [N, blocks, block_size * bits / 8]");
  const Array& scales = ctx.input(2);
  if (scales.numel() != n * blocks) ctx.error("scales must have N * blocks values");
  std::vector<double> scale = scales.to_doubles();
  const Array* zp = ctx.optional_input(3);
  const int64_t per_byte = 8 / bits, mask = (1 << bits) - 1;
  const int64_t zp_row_bytes = (blocks + per_byte - 1) / per_byte;
  std::vector<double> zero(static_cast<size_t>(n * blocks), static_cast<double>(1 << (bits - 1)));
  if (zp && zp->dtype() == d::kUint8) {
    if (zp->numel() != n * zp_row_bytes) ctx.error("packed zero_points must have N * ceil(blocks * bits / 8) bytes");
    const uint8_t* z = zp->data<uint8_t>();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t bl = 0; bl < blocks; ++bl)
        zero[static_cast<size_t>(r * blocks + bl)] = (z[r * zp_row_bytes + bl / per_byte] >> ((bl % per_byte) * bits)) & mask;
  } else if (zp) {
    if (zp->numel() != n * blocks) ctx.error("unpacked zero_points must have N * blocks values");
    zero = zp->to_doubles();
  }
  Array w(d::kFloat, {k, n});  // dequantized and transposed to MatMul's [K, N]
  const uint8_t* codes = b.data<uint8_t>();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const int64_t bl = i / block, within = i % block;
      const uint8_t byte = codes[(r * blocks + bl) * blob + within / per_byte];
      const double q = (byte >> ((within % per_byte) * bits)) & mask;
      const size_t p = static_cast<size_t>(r * blocks + bl);
      w.data<float>()[i * n + r] = static_cast<float>((q - zero[p]) * scale[p]);
    }
  }
  Array y = matmul_forward(ctx, a, w);
  if (const Array* bias = ctx.optional_input(5)) {
    if (bias->numel() != n || bias->dtype() != d::kFloat) ctx.error("bias must be float [N]");
    float* out = y.data<float>();
    for (int64_t i = 0; i < y.numel(); ++i) out[i] += bias->data<float>()[i % n];
  }
  ctx.set_output(0, std::move(y));
}

}  // namespace

void register_quant_kernels(KernelRegistry& r) {
  r.add({"", "QuantizeLinear", 10, kLatest, quantize_linear_kernel});
  r.add({"", "DequantizeLinear", 10, kLatest, dequantize_linear_kernel});
  r.add({"", "DynamicQuantizeLinear", 11, kLatest, dynamic_quantize_kernel});
  r.add({"", "MatMulInteger", 10, kLatest, matmul_integer_kernel});
  r.add({"", "ConvInteger", 10, kLatest, conv_integer_kernel});
  r.add({"", "QLinearMatMul", 10, kLatest, qlinear_matmul_kernel});
  r.add({"", "QLinearConv", 10, kLatest, qlinear_conv_kernel});
  r.add({"com.microsoft", "MatMulNBits", 1, 1, matmul_nbits_kernel, false});
}

}  // namespace mopt::exec
