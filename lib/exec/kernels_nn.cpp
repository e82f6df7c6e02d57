// Neural-network kernels: MatMul, Gemm, Conv and ConvTranspose (float32 through oneDNN, onednn.h; other
// types and what oneDNN declines by im2col + GEMM, direct depthwise and GEMM + col2im), pooling,
// normalizations, LRN and Resize/Upsample. Spatial ops handle 1-3 spatial dims.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "exec/broadcast.h"
#include "exec/onednn.h"
#include "exec/dispatch.h"
#include "exec/gemm.h"
#include "exec/kernel.h"
#include "exec/parallel.h"
#include "exec/vmath.h"

namespace mopt::exec {
namespace {

constexpr int64_t kLatest = 21;
namespace d = ir::dtype;

// ---- MatMul / Gemm ----

}  // namespace

Array matmul_forward(const KernelContext& ctx, const Array& a_in, const Array& b_in) {
  if (a_in.dtype() != b_in.dtype()) ctx.error("operands have different types");
  if (a_in.rank() == 0 || b_in.rank() == 0) ctx.error("MatMul operands cannot be scalars");
  Shape as = a_in.shape(), bs = b_in.shape();
  bool a_vec = as.size() == 1, b_vec = bs.size() == 1;
  if (a_vec) as.insert(as.begin(), 1);
  if (b_vec) bs.push_back(1);
  int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  if (bs[bs.size() - 2] != k) {
    ctx.error(fmt::format("shapes {} and {} cannot be multiplied", shape_string(a_in.shape()), shape_string(b_in.shape())));
  }
  Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  Shape batch = broadcast_shapes(ctx, {&a_batch, &b_batch});
  Shape out = batch;
  if (!a_vec) out.push_back(m);
  if (!b_vec) out.push_back(n);
  Array y = Array::uninitialized(a_in.dtype(), out);  // every path below writes all of it
  visit<kNumbers>(a_in.dtype(), "MatMul", [&]<typename T>(T) {
    const T* a = a_in.data<T>();
    const T* b = b_in.data<T>();
    T* c = y.data<T>();
    if constexpr (std::is_same_v<T, float>) {
      MatMulProblem p{batch, a_batch, b_batch, m, k, n};
      p.a_batch.insert(p.a_batch.begin(), batch.size() - a_batch.size(), 1);
      p.b_batch.insert(p.b_batch.begin(), batch.size() - b_batch.size(), 1);
      if (dnnl_matmul(p, a, b, c)) return;
    }
    if (numel(b_batch) == 1 && numel(batch) == numel(a_batch)) {
      // B is shared by every batch: one GEMM over all rows of A.
      gemm<T>(false, false, numel(batch) * m, n, k, T(1), a, k, b, n, T(0), c, n);
      return;
    }
    // Operand offsets of every batch entry, then the small GEMMs in parallel.
    std::vector<std::pair<int64_t, int64_t>> offsets;
    for_each_broadcast_row<2>(batch, {&a_batch, &b_batch},
                              [&](int64_t, int64_t len, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st) {
                                for (int64_t j = 0; j < len; ++j) offsets.push_back({off[0] + j * st[0], off[1] + j * st[1]});
                              });
    parallel_for(static_cast<int64_t>(offsets.size()), m * n * std::max<int64_t>(k, 1), [&](int64_t first, int64_t last) {
      for (int64_t index = first; index < last; ++index) {
        const auto [ao, bo] = offsets[static_cast<size_t>(index)];
        gemm_serial<T>(false, false, m, n, k, T(1), a + ao * m * k, k, b + bo * k * n, n, T(0), c + index * m * n, n);
      }
    });
  });
  return y;
}

namespace {

void matmul_kernel(KernelContext& ctx) { ctx.set_output(0, matmul_forward(ctx, ctx.input(0), ctx.input(1))); }

void gemm_kernel(KernelContext& ctx) {
  const Array& a_in = ctx.input(0);
  const Array& b_in = ctx.input(1);
  bool ta = ctx.attr_int("transA", 0) != 0, tb = ctx.attr_int("transB", 0) != 0;
  float alpha = ctx.attr_float("alpha", 1.0f), beta = ctx.attr_float("beta", 1.0f);
  if (a_in.rank() != 2 || b_in.rank() != 2) ctx.error("Gemm operands must be 2-D");
  int64_t m = ta ? a_in.dim(1) : a_in.dim(0), k = ta ? a_in.dim(0) : a_in.dim(1);
  int64_t kb = tb ? b_in.dim(1) : b_in.dim(0), n = tb ? b_in.dim(0) : b_in.dim(1);
  if (k != kb) ctx.error(fmt::format("shapes {} and {} cannot be multiplied", shape_string(a_in.shape()), shape_string(b_in.shape())));
  visit<kNumbers>(a_in.dtype(), "Gemm", [&]<typename T>(T) {
    Array y(a_in.dtype(), {m, n});
    T* c = y.data<T>();
    T gemm_beta = T(0);
    if (const Array* c_in = ctx.optional_input(2); c_in && beta != 0.0f) {
      Shape mn{m, n};
      Shape cs = broadcast_shapes(ctx, {&c_in->shape(), &mn});
      if (cs != mn) ctx.error("C does not broadcast to the output shape");
      const T* src = c_in->data<T>();
      for_each_broadcast_row<1>(mn, {&c_in->shape()}, [&](int64_t o, int64_t len, const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st) {
        for (int64_t j = 0; j < len; ++j) c[o + j] = static_cast<T>(beta * src[off[0] + j * st[0]]);
      });
      gemm_beta = T(1);
    }
    gemm<T>(ta, tb, m, n, k, static_cast<T>(alpha), a_in.data<T>(), a_in.dim(1), b_in.data<T>(), b_in.dim(1), gemm_beta, c, n);
    ctx.set_output(0, std::move(y));
  });
}

// ---- spatial geometry shared by Conv, ConvTranspose and pooling (struct Geometry: onednn.h) ----

// The window attributes must fit the input's spatial rank before anything indexes them (the validation
// layer checks declared ranks; this checks the actual one), and stay small enough for the size arithmetic.
void check_window(KernelContext& ctx, int spatial, const std::vector<int64_t>& kernel) {
  constexpr int64_t kMax = int64_t{1} << 31;
  auto sized = [&](const char* name, size_t want, int64_t lo) {
    const std::vector<int64_t> v = ctx.attr_ints(name);
    if (!v.empty() && v.size() != want)
      ctx.error(fmt::format("{} has {} values; a {}-D window needs {}", name, v.size(), spatial, want));
    for (int64_t x : v) {
      if (x < lo || x > kMax) ctx.error(fmt::format("{} holds {}, outside [{}, {}]", name, x, lo, kMax));
    }
  };
  const size_t k = static_cast<size_t>(spatial);
  sized("strides", k, 1);
  sized("dilations", k, 1);
  sized("pads", 2 * k, 0);
  sized("output_padding", k, 0);
  const std::vector<int64_t> out_shape = ctx.attr_ints("output_shape");
  if (!out_shape.empty() && out_shape.size() != k && out_shape.size() != k + 2)
    ctx.error(fmt::format("output_shape has {} values; a {}-D window needs {} (or {})", out_shape.size(), spatial, k, k + 2));
  for (int64_t x : kernel) {
    if (x < 1 || x > kMax) ctx.error(fmt::format("kernel_shape holds {}, outside [1, {}]", x, kMax));
  }
}

// Reads kernel_shape/strides/dilations/pads/auto_pad and computes output sizes (forward ops).
Geometry forward_geometry(KernelContext& ctx, const Shape& x, const std::vector<int64_t>& kernel, bool ceil_mode) {
  Geometry g;
  g.spatial = static_cast<int>(x.size()) - 2;
  if (g.spatial < 1 || g.spatial > 3) ctx.error(fmt::format("not supported: {} spatial dimensions", g.spatial));
  if (static_cast<int>(kernel.size()) != g.spatial) ctx.error("kernel_shape does not match the input rank");
  check_window(ctx, g.spatial, kernel);
  std::vector<int64_t> strides = ctx.attr_ints("strides"), dilations = ctx.attr_ints("dilations"), pads = ctx.attr_ints("pads");
  std::string auto_pad = ctx.attr_string("auto_pad", "NOTSET");
  // Windows are right-aligned into the 3 slots so 1-D and 2-D ops use the same loops.
  int off = 3 - g.spatial;
  for (int i = 0; i < g.spatial; ++i) {
    int s = off + i;
    g.in[s] = x[static_cast<size_t>(2 + i)];
    g.kernel[s] = kernel[static_cast<size_t>(i)];
    if (!strides.empty()) g.stride[s] = strides[static_cast<size_t>(i)];
    if (!dilations.empty()) g.dilation[s] = dilations[static_cast<size_t>(i)];
    if (g.stride[s] <= 0 || g.dilation[s] <= 0 || g.kernel[s] <= 0) ctx.error("kernel, strides and dilations must be positive");
    int64_t window = (g.kernel[s] - 1) * g.dilation[s] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      g.out[s] = (g.in[s] + g.stride[s] - 1) / g.stride[s];
      int64_t total = std::max<int64_t>((g.out[s] - 1) * g.stride[s] + window - g.in[s], 0);
      g.pad_begin[s] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pad_end[s] = total - g.pad_begin[s];
      continue;
    }
    if (auto_pad == "VALID") {
      g.out[s] = (g.in[s] - window) / g.stride[s] + 1;
      continue;
    }
    if (auto_pad != "NOTSET") ctx.error(fmt::format("unknown auto_pad '{}'", auto_pad));
    if (!pads.empty()) {
      g.pad_begin[s] = pads[static_cast<size_t>(i)];
      g.pad_end[s] = pads[static_cast<size_t>(i + g.spatial)];
    }
    int64_t span = g.in[s] + g.pad_begin[s] + g.pad_end[s] - window;
    if (span < 0) ctx.error("the kernel window is larger than the padded input");
    g.out[s] = (ceil_mode ? (span + g.stride[s] - 1) / g.stride[s] : span / g.stride[s]) + 1;
    // A window must start inside the input or its leading padding.
    if (ceil_mode && (g.out[s] - 1) * g.stride[s] >= g.in[s] + g.pad_begin[s]) --g.out[s];
  }
  return g;
}

Shape output_shape(int64_t n, int64_t c, const Geometry& g) {
  Shape s{n, c};
  for (int i = 3 - g.spatial; i < 3; ++i) s.push_back(g.out[i]);
  return s;
}

// For each output position along one slot: the kernel taps [begin, end) that land inside the input.
struct TapRange {
  std::vector<int64_t> begin, end, padded;  // padded: taps inside input + padding (AveragePool divisor)
};

TapRange tap_range(const Geometry& g, int slot) {
  TapRange r;
  for (int64_t o = 0; o < g.out[slot]; ++o) {
    int64_t start = o * g.stride[slot] - g.pad_begin[slot];
    int64_t b = 0, e = 0, p = 0;
    bool found = false;
    for (int64_t k = 0; k < g.kernel[slot]; ++k) {
      int64_t i = start + k * g.dilation[slot];
      if (i >= -g.pad_begin[slot] && i < g.in[slot] + g.pad_end[slot]) ++p;
      if (i < 0 || i >= g.in[slot]) continue;
      if (!found) b = k;
      found = true;
      e = k + 1;
    }
    r.begin.push_back(b);
    r.end.push_back(found ? e : b);
    r.padded.push_back(p);
  }
  return r;
}

// Rows of `col` are `ld` elements apart (ld = out_size for one image; wider when images share a GEMM).
// Only output rows [first_row, first_row + rows) are written, a row being one (out[0], out[1]) position
// with its out[2] columns (rows = -1: all), so a convolution can work through a big image in tiles.
template <typename T>
void im2col(const T* x, int64_t channels, const Geometry& g, T* col, int64_t ld = 0, int64_t first_row = 0, int64_t rows = -1) {
  if (rows < 0) rows = g.out[0] * g.out[1];
  if (ld == 0) ld = rows * g.out[2];
  const int64_t in2 = g.in[2], out2 = g.out[2], s2 = g.stride[2];
  for (int64_t c = 0; c < channels; ++c) {
    const T* src = x + c * g.in_size();
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
        for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
          T* dst = col + (((c * g.kernel[0] + k0) * g.kernel[1] + k1) * g.kernel[2] + k2) * ld;
          // Output columns [lo, hi) read inside the input row (0 <= o2 * s2 + base < in2); the others
          // read padding. Computed once per tap, so the row loop below has no bounds checks.
          const int64_t base = -g.pad_begin[2] + k2 * g.dilation[2];
          const int64_t lo = std::min(out2, base >= 0 ? int64_t{0} : (-base + s2 - 1) / s2);
          const int64_t hi = std::clamp(base >= in2 ? int64_t{0} : (in2 - base + s2 - 1) / s2, lo, out2);
          int64_t o0 = first_row / g.out[1], o1 = first_row % g.out[1];
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t i0 = o0 * g.stride[0] - g.pad_begin[0] + k0 * g.dilation[0];
            const int64_t i1 = o1 * g.stride[1] - g.pad_begin[1] + k1 * g.dilation[1];
            T* row = dst + r * out2;
            if (++o1 == g.out[1]) {
              o1 = 0;
              ++o0;
            }
            if (i0 < 0 || i0 >= g.in[0] || i1 < 0 || i1 >= g.in[1]) {
              std::fill(row, row + out2, T(0));
              continue;
            }
            const T* in_row = src + (i0 * g.in[1] + i1) * in2;
            for (int64_t o2 = 0; o2 < lo; ++o2) row[o2] = T(0);
            if (s2 == 1) {
              for (int64_t o2 = lo; o2 < hi; ++o2) row[o2] = in_row[o2 + base];
            } else {
              for (int64_t o2 = lo; o2 < hi; ++o2) row[o2] = in_row[o2 * s2 + base];
            }
            for (int64_t o2 = hi; o2 < out2; ++o2) row[o2] = T(0);
          }
        }
      }
    }
  }
}

// Scatter-adds columns back into an image (the adjoint of im2col), for ConvTranspose.
template <typename T>
void col2im(const T* col, int64_t channels, const Geometry& g, T* x) {
  // Here g.in is the (large) output image and g.out the (small) input grid of the transposed conv.
  const int64_t grid = g.out_size();
  for (int64_t c = 0; c < channels; ++c) {
    T* dst = x + c * g.in_size();
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
        for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
          const T* src = col + (((c * g.kernel[0] + k0) * g.kernel[1] + k1) * g.kernel[2] + k2) * grid;
          for (int64_t o0 = 0; o0 < g.out[0]; ++o0) {
            int64_t i0 = o0 * g.stride[0] - g.pad_begin[0] + k0 * g.dilation[0];
            if (i0 < 0 || i0 >= g.in[0]) continue;
            for (int64_t o1 = 0; o1 < g.out[1]; ++o1) {
              int64_t i1 = o1 * g.stride[1] - g.pad_begin[1] + k1 * g.dilation[1];
              if (i1 < 0 || i1 >= g.in[1]) continue;
              for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
                int64_t i2 = o2 * g.stride[2] - g.pad_begin[2] + k2 * g.dilation[2];
                if (i2 < 0 || i2 >= g.in[2]) continue;
                dst[(i0 * g.in[1] + i1) * g.in[2] + i2] += src[(o0 * g.out[1] + o1) * g.out[2] + o2];
              }
            }
          }
        }
      }
    }
  }
}

// The kernel's spatial shape: the weight's dims after the first two, which a `kernel_shape` attribute
// must repeat (the kernels index the weight by it).
std::vector<int64_t> kernel_shape_of(KernelContext& ctx, const Array& w) {
  const std::vector<int64_t> from_weight(w.shape().begin() + std::min<size_t>(2, w.rank()), w.shape().end());
  const std::vector<int64_t> k = ctx.attr_ints("kernel_shape");
  if (!k.empty() && k != from_weight)
    ctx.error(fmt::format("kernel_shape [{}] does not match the weight's spatial shape [{}]", fmt::join(k, ","),
                          fmt::join(from_weight, ",")));
  return from_weight;
}

// Direct depthwise convolution (one filter per channel), much faster than per-channel tiny GEMMs.
// Each output row accumulates one kernel tap at a time over the run of output columns whose input lies
// inside the image (bounds worked out per tap, not tested per element), so the inner loop is a plain
// multiply-add along the row that the compiler vectorizes.
template <typename T>
void depthwise(const T* x, const T* w, const T* bias, int64_t planes, int64_t channels, const Geometry& g, T* y) {
  const int64_t ks = g.kernel_size();
  const TapRange r0 = tap_range(g, 0), r1 = tap_range(g, 1);
  // For each tap along the last slot: the output columns [lo, hi) it reaches inside the input.
  std::vector<int64_t> lo(static_cast<size_t>(g.kernel[2])), hi(static_cast<size_t>(g.kernel[2]));
  for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
    const int64_t offset = k2 * g.dilation[2] - g.pad_begin[2];  // input column of output column 0
    int64_t first = offset >= 0 ? 0 : (-offset + g.stride[2] - 1) / g.stride[2];
    int64_t last = g.in[2] - 1 - offset < 0 ? 0 : (g.in[2] - 1 - offset) / g.stride[2] + 1;
    lo[static_cast<size_t>(k2)] = std::min(first, g.out[2]);
    hi[static_cast<size_t>(k2)] = std::max(lo[static_cast<size_t>(k2)], std::min(last, g.out[2]));
  }
  const int64_t s2 = g.stride[2];
  parallel_for(planes, g.out_size() * ks, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      int64_t c = plane % channels;
      const T* src = x + plane * g.in_size();
      const T* f = w + c * ks;
      T* dst = y + plane * g.out_size();
      const T b = bias ? bias[c] : T(0);
      for (int64_t o0 = 0; o0 < g.out[0]; ++o0) {
        for (int64_t o1 = 0; o1 < g.out[1]; ++o1) {
          T* out_row = dst + (o0 * g.out[1] + o1) * g.out[2];
          std::fill(out_row, out_row + g.out[2], b);
          for (int64_t k0 = r0.begin[o0]; k0 < r0.end[o0]; ++k0) {
            int64_t i0 = o0 * g.stride[0] - g.pad_begin[0] + k0 * g.dilation[0];
            for (int64_t k1 = r1.begin[o1]; k1 < r1.end[o1]; ++k1) {
              int64_t i1 = o1 * g.stride[1] - g.pad_begin[1] + k1 * g.dilation[1];
              const T* in_row = src + (i0 * g.in[1] + i1) * g.in[2];
              const T* frow = f + (k0 * g.kernel[1] + k1) * g.kernel[2];
              for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
                const T wk = frow[k2];
                const T* in = in_row + k2 * g.dilation[2] - g.pad_begin[2];
                const int64_t a = lo[static_cast<size_t>(k2)], e = hi[static_cast<size_t>(k2)];
                if (s2 == 1) {
                  for (int64_t o2 = a; o2 < e; ++o2) out_row[o2] += wk * in[o2];
                } else {
                  for (int64_t o2 = a; o2 < e; ++o2) out_row[o2] += wk * in[o2 * s2];
                }
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace

// The executor's own convolution, over plain layouts: depthwise loops, batched or tiled im2col + GEMM.
static void conv_reference(const Array& x, const Array& w, const Array* bias, const Geometry& g, int64_t group, Array& y) {
  const int64_t n = x.dim(0), c = x.dim(1), m = w.dim(0);
  visit<kFloats>(x.dtype(), "Conv", [&]<typename T>(T) {
    const int64_t cg = c / group, mg = m / group, ks = g.kernel_size(), out_size = g.out_size();
    const T* b = bias ? bias->data<T>() : nullptr;
    if (group == c && m == c && cg == 1) {
      depthwise<T>(x.data<T>(), w.data<T>(), b, n * c, c, g, y.data<T>());
      return;
    }
    if (group == 1 && n > 1 && out_size < 4096) {
      // Small images in a batch: one GEMM over a chunk of images instead of one small GEMM per image.
      const int64_t per_image = c * ks * out_size;
      const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{8} << 20) / std::max<int64_t>(per_image, 1)));
      // Scratch from the executor's buffer cache: fresh system memory would page-fault on every run.
      Array cols_buffer = Array::uninitialized(x.dtype(), {chunk * per_image});
      Array wide_buffer = Array::uninitialized(x.dtype(), {chunk * m * out_size});
      T* const cols = cols_buffer.data<T>();
      T* const wide = wide_buffer.data<T>();
      for (int64_t first = 0; first < n; first += chunk) {
        int64_t count = std::min(chunk, n - first), width = count * out_size;
        // cols: [c*ks, count*out_size], image j in columns [j*out_size, (j+1)*out_size).
        parallel_for(count, per_image, [&](int64_t jb, int64_t je) {
          for (int64_t j = jb; j < je; ++j) {
            im2col<T>(x.data<T>() + (first + j) * c * g.in_size(), c, g, cols + j * out_size, width);
          }
        });
        gemm<T>(false, false, m, width, c * ks, T(1), w.data<T>(), c * ks, cols, width, T(0), wide, width);
        for (int64_t j = 0; j < count; ++j) {
          for (int64_t o = 0; o < m; ++o) {
            T* dst = y.data<T>() + ((first + j) * m + o) * out_size;
            const T* src = wide + o * width + j * out_size;
            T bo = b ? b[o] : T(0);
            for (int64_t e = 0; e < out_size; ++e) dst[e] = src[e] + bo;
          }
        }
      }
      return;
    }
    bool pointwise = ks == 1;
    for (int i = 0; i < 3; ++i) pointwise = pointwise && g.stride[i] == 1 && g.pad_begin[i] == 0 && g.pad_end[i] == 0;
    // Other convolutions go through the image in tiles of output rows whose im2col columns fit in the
    // cache (64 Ki values), one GEMM per tile, the tiles spread over the threads. A whole-image im2col is
    // kernel-size times the input: 100+ MiB for a 3x3 layer of a 960x960 detector, paid in page faults.
    const int64_t out_rows = g.out[0] * g.out[1], k_rows = cg * ks;
    int64_t tile_rows = std::max<int64_t>(1, (int64_t{64} << 10) / std::max<int64_t>(k_rows * g.out[2], 1));
    tile_rows = std::min(tile_rows, (out_rows + thread_count() - 1) / thread_count());
    const int64_t tiles = (out_rows + tile_rows - 1) / tile_rows;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t grp = 0; grp < group; ++grp) {
        const T* src = x.data<T>() + (i * c + grp * cg) * g.in_size();
        const T* filters = w.data<T>() + grp * mg * k_rows;
        T* dst = y.data<T>() + (i * m + grp * mg) * out_size;
        if (b) {
          for (int64_t o = 0; o < mg; ++o) std::fill(dst + o * out_size, dst + (o + 1) * out_size, b[grp * mg + o]);
        }
        if (pointwise) {
          gemm<T>(false, false, mg, out_size, k_rows, T(1), filters, k_rows, src, out_size, b ? T(1) : T(0), dst, out_size);
          continue;
        }
        parallel_for(tiles, mg * k_rows * tile_rows * g.out[2], [&](int64_t first, int64_t last) {
          Array col_buffer = Array::uninitialized(x.dtype(), {k_rows * tile_rows * g.out[2]});
          T* const col = col_buffer.data<T>();
          for (int64_t t = first; t < last; ++t) {
            const int64_t row0 = t * tile_rows, rows = std::min(tile_rows, out_rows - row0), cols = rows * g.out[2];
            im2col<T>(src, cg, g, col, cols, row0, rows);
            gemm_serial<T>(false, false, mg, cols, k_rows, T(1), filters, k_rows, col, cols, b ? T(1) : T(0),
                           dst + row0 * g.out[2], out_size);
          }
        });
      }
    }
  });
}

// Where oneDNN may keep its reordered copy of w between runs: the node's state, when w is the node's own
// weight input and a model constant (not a weight the quantized kernels derived for this call).
static std::shared_ptr<void>* weight_state(const KernelContext& ctx, const Array& w) {
  return ctx.optional_input(1) == &w && ctx.constant_input(1) ? ctx.state() : nullptr;
}

Array conv_forward(KernelContext& ctx, const Array& x, const Array& w, const Array* bias) {
  int64_t group = ctx.attr_int("group", 1);
  if (x.rank() < 3) ctx.error("input must have rank >= 3");
  if (w.rank() != x.rank()) ctx.error(fmt::format("the weight has rank {} but the input has rank {}", w.rank(), x.rank()));
  int64_t n = x.dim(0), c = x.dim(1), m = w.dim(0);
  if (group <= 0 || c % group != 0 || m % group != 0 || w.dim(1) * group != c) {
    ctx.error(fmt::format("input channels {} and weight shape {} do not match group={}", c, shape_string(w.shape()), group));
  }
  if (bias && bias->numel() != m)
    ctx.error(fmt::format("the bias holds {} values; the weight has {} output channels", bias->numel(), m));
  if (bias && bias->dtype() != x.dtype()) ctx.error("the bias's type differs from the input's");
  Geometry g = forward_geometry(ctx, x.shape(), kernel_shape_of(ctx, w), false);
  Array y = Array::uninitialized(x.dtype(), output_shape(n, m, g));
  if (x.dtype() == d::kFloat && w.dtype() == d::kFloat) {
    const ConvProblem problem{g, n, c, m, group, x.channels_last(), ctx.channels_last_allowed(0)};
    if (std::optional<Layout> layout = dnnl_conv(problem, x.data<float>(), w.data<float>(), bias ? bias->data<float>() : nullptr,
                                                 y.data<float>(), weight_state(ctx, w)))
      return y.with_layout(*layout);
  }
  conv_reference(x.in_layout(Layout::kPlain), w, bias, g, group, y);  // x may be channels-last (the Conv kernel)
  return y;
}

namespace {

void conv_kernel(KernelContext& ctx) {
  ctx.set_output(0, conv_forward(ctx, ctx.input(0), ctx.plain_input(1), ctx.optional_input(2)));  // x may be channels-last
}

void conv_transpose_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  const Array& w = ctx.input(1);
  const Array* bias = ctx.optional_input(2);
  int64_t group = ctx.attr_int("group", 1);
  if (x.rank() < 3) ctx.error("input must have rank >= 3");
  if (w.rank() != x.rank()) ctx.error(fmt::format("the weight has rank {} but the input has rank {}", w.rank(), x.rank()));
  if (group < 1) ctx.error(fmt::format("group={} is not allowed (it must be at least 1)", group));
  int64_t n = x.dim(0), c = x.dim(1);
  if (w.dim(0) != c || c % group != 0) ctx.error("weight shape does not match the input channels");
  int64_t mg = w.dim(1), m = mg * group, cg = c / group;
  if (bias && bias->numel() != m)
    ctx.error(fmt::format("the bias holds {} values; the weight has {} output channels", bias->numel(), m));
  std::vector<int64_t> kernel = kernel_shape_of(ctx, w);
  if (static_cast<int64_t>(kernel.size()) != x.rank() - 2) ctx.error("kernel_shape does not match the input rank");
  check_window(ctx, static_cast<int>(kernel.size()), kernel);
  Geometry g;
  g.spatial = static_cast<int>(x.rank()) - 2;
  if (g.spatial > 3 || static_cast<int>(kernel.size()) != g.spatial) ctx.error("unsupported ConvTranspose geometry");
  std::vector<int64_t> strides = ctx.attr_ints("strides"), dilations = ctx.attr_ints("dilations"), pads = ctx.attr_ints("pads");
  std::vector<int64_t> out_pad = ctx.attr_ints("output_padding"), out_shape = ctx.attr_ints("output_shape");
  std::string auto_pad = ctx.attr_string("auto_pad", "NOTSET");
  int off = 3 - g.spatial;
  for (int i = 0; i < g.spatial; ++i) {
    int s = off + i;
    size_t ui = static_cast<size_t>(i);
    g.out[s] = x.dim(2 + i);  // the small grid
    g.kernel[s] = kernel[ui];
    if (!strides.empty()) g.stride[s] = strides[ui];
    if (!dilations.empty()) g.dilation[s] = dilations[ui];
    int64_t op = out_pad.empty() ? 0 : out_pad[ui];
    int64_t window = (g.kernel[s] - 1) * g.dilation[s] + 1;
    int64_t full = g.stride[s] * (g.out[s] - 1) + op + window;
    if (!out_shape.empty()) {
      int64_t target = out_shape[out_shape.size() - static_cast<size_t>(g.spatial) + ui];
      int64_t total = full - target;
      // Pads split as the ONNX spec says: SAME_UPPER (default) puts the extra at the end. A larger
      // output_shape than the kernel reaches (negative total) leaves zeros (plus bias) at the end.
      g.pad_begin[s] = total < 0 ? 0 : auto_pad == "SAME_LOWER" ? total - total / 2 : total / 2;
      g.pad_end[s] = total - g.pad_begin[s];
      g.in[s] = target;
      continue;
    }
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      int64_t target = g.out[s] * g.stride[s];
      int64_t total = std::max<int64_t>(full - target, 0);
      g.pad_begin[s] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pad_end[s] = total - g.pad_begin[s];
    } else if (!pads.empty()) {
      g.pad_begin[s] = pads[ui];
      g.pad_end[s] = pads[ui + static_cast<size_t>(g.spatial)];
    }
    g.in[s] = full - g.pad_begin[s] - g.pad_end[s];
  }
  Shape ys{n, m};
  for (int i = off; i < 3; ++i) ys.push_back(g.in[i]);
  if (x.dtype() == d::kFloat && w.dtype() == d::kFloat && (!bias || bias->dtype() == d::kFloat)) {
    Array y = Array::uninitialized(x.dtype(), ys);
    if (dnnl_conv_transpose({g, n, c, m, group}, x.data<float>(), w.data<float>(),
                            bias ? bias->data<float>() : nullptr, y.data<float>(), weight_state(ctx, w))) {
      ctx.set_output(0, std::move(y));
      return;
    }
  }
  Array y(x.dtype(), ys);  // zeros: col2im adds into it
  visit<kFloats>(x.dtype(), "ConvTranspose", [&]<typename T>(T) {
    const int64_t ks = g.kernel_size(), grid = g.out_size();
    Array col_buffer = Array::uninitialized(x.dtype(), {mg * ks * grid});  // every element written by the GEMM
    T* const col = col_buffer.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t grp = 0; grp < group; ++grp) {
        // col[mg*ks, grid] = W_g^T [mg*ks, cg] * X_g [cg, grid]
        gemm<T>(true, false, mg * ks, grid, cg, T(1), w.data<T>() + grp * cg * mg * ks, mg * ks,
                x.data<T>() + (i * c + grp * cg) * grid, grid, T(0), col, grid);
        T* dst = y.data<T>() + (i * m + grp * mg) * g.in_size();
        col2im<T>(col, mg, g, dst);
      }
      if (bias) {
        for (int64_t o = 0; o < m; ++o) {
          T* dst = y.data<T>() + (i * m + o) * g.in_size();
          for (int64_t j = 0; j < g.in_size(); ++j) dst[j] += bias->data<T>()[o];
        }
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

// ---- pooling ----

// 1-D and 2-D float MaxPool over a channels-last input, into a channels-last output: for each output
// position, the maximum of its window's taps, all channels at once (max_of_rows, vectorized along them).
// As in the plain loops below, every maximum starts from -inf and skips NaN inputs, so the results are the
// plain path's (of +0 and -0, the first tap's: these take a window row by row, the plain loops column by
// column).
void max_pool_channels_last(const Array& x, const Geometry& g, const TapRange& r1, const TapRange& r2, Array& y) {
  const int64_t c = x.dim(1), in_h = g.in[1], in_w = g.in[2], out_h = g.out[1], out_w = g.out[2];
  parallel_for(x.dim(0) * out_h * out_w, g.kernel_size() * c, [&](int64_t first, int64_t last) {
    std::vector<const float*> taps(static_cast<size_t>(g.kernel_size()));
    for (int64_t at = first; at < last; ++at) {
      const int64_t image = at / (out_h * out_w), oh = at / out_w % out_h, ow = at % out_w;
      int64_t count = 0;
      for (int64_t kh = r1.begin[static_cast<size_t>(oh)]; kh < r1.end[static_cast<size_t>(oh)]; ++kh) {
        const int64_t ih = oh * g.stride[1] - g.pad_begin[1] + kh * g.dilation[1];
        for (int64_t kw = r2.begin[static_cast<size_t>(ow)]; kw < r2.end[static_cast<size_t>(ow)]; ++kw) {
          const int64_t iw = ow * g.stride[2] - g.pad_begin[2] + kw * g.dilation[2];
          taps[static_cast<size_t>(count++)] = x.data<float>() + ((image * in_h + ih) * in_w + iw) * c;
        }
      }
      max_of_rows(taps.data(), count, y.data<float>() + at * c, c);
    }
  });
}

void pool_kernel(KernelContext& ctx, bool max) {
  const Array& input = ctx.input(0);
  if (input.rank() < 3) ctx.error("input must have rank >= 3");
  bool ceil_mode = ctx.attr_int("ceil_mode", 0) != 0;
  Geometry g = forward_geometry(ctx, input.shape(), ctx.attr_ints("kernel_shape"), ceil_mode);
  bool include_pad = ctx.attr_int("count_include_pad", 0) != 0;
  bool column_major = ctx.attr_int("storage_order", 0) != 0;
  int64_t n = input.dim(0), c = input.dim(1);
  Array y = Array::uninitialized(input.dtype(), output_shape(n, c, g));
  Array indices;
  bool want_indices = max && ctx.wants_output(1);
  if (want_indices) indices = Array(d::kInt64, y.shape());
  const TapRange r0 = tap_range(g, 0), r1 = tap_range(g, 1), r2 = tap_range(g, 2);
  if (input.channels_last() && max && !want_indices && input.dtype() == d::kFloat && g.spatial <= 2) {
    y = y.with_layout(Layout::kChannelsLast);
    max_pool_channels_last(input, g, r1, r2, y);
    ctx.set_output(0, std::move(y));
    return;
  }
  const Array& x = ctx.plain_input(0);
  if (max && !want_indices && x.dtype() == d::kFloat && g.spatial <= 2) {
    // The common case (2-D float MaxPool without indices), separably: for each output row, the maximum
    // of its window's input rows, column by column (a contiguous loop the compiler vectorizes), then the
    // maximum along each output's window of that row: tap by tap over the outputs whose window lies inside
    // the row (a strided loop that vectorizes too), output by output at the edges. The output rows of all
    // planes are one run spread over the threads (a small plane's loop cost more than its maxima). Every
    // maximum starts from -inf and takes its taps in order, and a NaN input is skipped (std::max keeps the
    // running value), so the result does not depend on how the work is split.
    const int64_t in_h = g.in[1], in_w = g.in[2], out_h = g.out[1], out_w = g.out[2], kw_count = g.kernel[2];
    const int64_t sh = g.stride[1], sw = g.stride[2], ph = g.pad_begin[1], pw = g.pad_begin[2], dh = g.dilation[1], dw = g.dilation[2];
    // The outputs [full_begin, full_end) take all kw_count taps (none in the padding).
    int64_t full_begin = 0, full_end = 0;
    while (full_begin < out_w && r2.begin[static_cast<size_t>(full_begin)] != 0) ++full_begin;
    full_end = full_begin;
    while (full_end < out_w && r2.begin[static_cast<size_t>(full_end)] == 0 && r2.end[static_cast<size_t>(full_end)] == kw_count) ++full_end;
    const float lowest = -std::numeric_limits<float>::infinity();
    if (g.kernel[1] == 2 && kw_count == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1 && ph == 0 && pw == 0 && in_h == 2 * out_h &&
        in_w == 2 * out_w) {
      // 2x2, stride 2, no padding (most CNNs' pooling) without the row buffer: on digits_cnn's 4x4 outputs
      // the general loop's cost per row was 4x this. The same comparisons in the same order.
      parallel_for(n * c * out_h, 4 * out_w, [&](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; ++r) {
          const float* top = x.data<float>() + 2 * r * in_w;
          const float* bottom = top + in_w;
          float* out = y.data<float>() + r * out_w;
          for (int64_t ow = 0; ow < out_w; ++ow) {
            const float left = std::max(std::max(lowest, top[2 * ow]), bottom[2 * ow]);
            const float right = std::max(std::max(lowest, top[2 * ow + 1]), bottom[2 * ow + 1]);
            out[ow] = std::max(std::max(lowest, left), right);
          }
        }
      });
      ctx.set_output(0, std::move(y));
      return;
    }
    parallel_for(n * c * out_h, out_w * g.kernel_size() + in_w * g.kernel[1], [&](int64_t first, int64_t last) {
      std::vector<float> column_max(static_cast<size_t>(in_w));
      float* const cm = column_max.data();
      for (int64_t r = first; r < last; ++r) {
        const int64_t plane = r / out_h, oh = r % out_h;
        const float* src = x.data<float>() + plane * in_h * in_w;
        float* out = y.data<float>() + r * out_w;
        const int64_t kh0 = r1.begin[static_cast<size_t>(oh)], kh1 = r1.end[static_cast<size_t>(oh)];
        std::fill(cm, cm + in_w, lowest);
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          const float* row = src + (oh * sh - ph + kh * dh) * in_w;
          for (int64_t j = 0; j < in_w; ++j) cm[j] = std::max(cm[j], row[j]);
        }
        auto edge = [&](int64_t ow) {
          const int64_t kw0 = r2.begin[static_cast<size_t>(ow)], kw1 = r2.end[static_cast<size_t>(ow)];
          const int64_t start = ow * sw - pw;  // the window's first column (taps before kw0 are padding)
          float best = lowest;
          for (int64_t kw = kw0; kw < kw1; ++kw) best = std::max(best, cm[start + kw * dw]);
          out[ow] = best;
        };
        for (int64_t ow = 0; ow < full_begin; ++ow) edge(ow);
        std::fill(out + full_begin, out + full_end, lowest);
        for (int64_t kw = 0; kw < kw_count; ++kw) {
          const float* tap = cm + kw * dw - pw;
          for (int64_t ow = full_begin; ow < full_end; ++ow) out[ow] = std::max(out[ow], tap[ow * sw]);
        }
        for (int64_t ow = full_end; ow < out_w; ++ow) edge(ow);
      }
    });
    ctx.set_output(0, std::move(y));
    return;
  }
  visit<kFloats | kInts>(x.dtype(), max ? "MaxPool" : "AveragePool", [&]<typename T>(T) {
    parallel_for(n * c, g.out_size() * g.kernel_size(), [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) {
        const T* src = x.data<T>() + plane * g.in_size();
        T* dst = y.data<T>() + plane * g.out_size();
        for (int64_t o0 = 0; o0 < g.out[0]; ++o0) {
          for (int64_t o1 = 0; o1 < g.out[1]; ++o1) {
            for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
              double sum = 0;
              T best = std::numeric_limits<T>::lowest();
              if constexpr (std::is_floating_point_v<T>) best = -std::numeric_limits<T>::infinity();
              int64_t best_at = -1;
              for (int64_t k0 = r0.begin[o0]; k0 < r0.end[o0]; ++k0) {
                int64_t i0 = o0 * g.stride[0] - g.pad_begin[0] + k0 * g.dilation[0];
                for (int64_t k1 = r1.begin[o1]; k1 < r1.end[o1]; ++k1) {
                  int64_t i1 = o1 * g.stride[1] - g.pad_begin[1] + k1 * g.dilation[1];
                  int64_t row = (i0 * g.in[1] + i1) * g.in[2] + o2 * g.stride[2] - g.pad_begin[2];
                  for (int64_t k2 = r2.begin[o2]; k2 < r2.end[o2]; ++k2) {
                    int64_t at = row + k2 * g.dilation[2];
                    T v = src[at];
                    if (max) {
                      if (v > best || best_at < 0) {
                        best = v;
                        best_at = at;
                      }
                    } else {
                      sum += static_cast<double>(v);
                    }
                  }
                }
              }
              int64_t o = (o0 * g.out[1] + o1) * g.out[2] + o2;
              if (max) {
                dst[o] = best;
                if (want_indices) {
                  int64_t flat = best_at;
                  if (column_major && best_at >= 0) {
                    int64_t h = best_at / g.in[2], w = best_at % g.in[2];  // 2-D: index as if stored column-major
                    flat = w * g.in[1] + h;
                  }
                  indices.data<int64_t>()[plane * g.out_size() + o] = plane * g.in_size() + flat;
                }
              } else {
                int64_t count = (r0.end[o0] - r0.begin[o0]) * (r1.end[o1] - r1.begin[o1]) * (r2.end[o2] - r2.begin[o2]);
                int64_t divisor = include_pad ? r0.padded[o0] * r1.padded[o1] * r2.padded[o2] : count;
                dst[o] = static_cast<T>(divisor ? sum / static_cast<double>(divisor) : 0.0);
              }
            }
          }
        }
      }
    });
  });
  ctx.set_output(0, std::move(y));
  if (want_indices) ctx.set_output(1, std::move(indices));
}

void global_pool_kernel(KernelContext& ctx, bool max) {
  const Array& x = ctx.input(0);
  if (x.rank() < 3) ctx.error("input must have rank >= 3");
  Shape s{x.dim(0), x.dim(1)};
  int64_t plane = 1;
  for (int64_t i = 2; i < x.rank(); ++i) {
    s.push_back(1);
    plane *= x.dim(i);
  }
  Array y(x.dtype(), s);  // plain: with one position per channel, it is channels-last as well
  visit<kFloats>(x.dtype(), max ? "GlobalMaxPool" : "GlobalAveragePool", [&]<typename T>(T) {
    if (x.channels_last()) {
      // Position by position, every channel at once; each channel's taps in the order the plain loop takes.
      const int64_t channels = x.dim(1);
      std::vector<double> sums(static_cast<size_t>(channels));
      for (int64_t image = 0; image < x.dim(0); ++image) {
        const T* src = x.data<T>() + image * plane * channels;
        T* dst = y.data<T>() + image * channels;
        std::fill(sums.begin(), sums.end(), 0.0);
        std::fill(dst, dst + channels, -std::numeric_limits<T>::infinity());
        for (int64_t i = 0; i < plane; ++i, src += channels) {
          for (int64_t k = 0; k < channels; ++k) {
            if (max) dst[k] = std::max(dst[k], src[k]);
            else sums[static_cast<size_t>(k)] += static_cast<double>(src[k]);
          }
        }
        if (!max) {
          for (int64_t k = 0; k < channels; ++k) dst[k] = static_cast<T>(sums[static_cast<size_t>(k)] / static_cast<double>(plane));
        }
      }
      return;
    }
    for (int64_t p = 0; p < x.dim(0) * x.dim(1); ++p) {
      const T* src = x.data<T>() + p * plane;
      if (max) {
        T best = -std::numeric_limits<T>::infinity();
        for (int64_t i = 0; i < plane; ++i) best = std::max(best, src[i]);
        y.data<T>()[p] = best;
      } else {
        double sum = 0;
        for (int64_t i = 0; i < plane; ++i) sum += static_cast<double>(src[i]);
        y.data<T>()[p] = static_cast<T>(sum / static_cast<double>(plane));
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

// ---- normalization ----

// A per-channel parameter (input `index`) must hold exactly one value per channel: kernels index it by channel.
void require_per_channel(KernelContext& ctx, size_t index, int64_t channels, const char* what) {
  const int64_t have = ctx.input(index).numel();
  if (have != channels)
    ctx.error(fmt::format("{} (input {}) holds {} value{}; the input has {} channel{}", what, index, have, have == 1 ? "" : "s",
                          channels, channels == 1 ? "" : "s"));
}

void batch_norm_kernel(KernelContext& ctx) {
  if (ctx.attr_int("training_mode", 0) != 0) ctx.error("not supported: BatchNormalization in training mode");
  if (ctx.opset() < 7 && ctx.attr_int("is_test", 0) == 0) ctx.error("not supported: BatchNormalization with is_test=0");
  if (ctx.opset() < 9 && ctx.attr_int("spatial", 1) == 0) ctx.error("not supported: BatchNormalization with spatial=0");
  const Array& x = ctx.input(0);
  if (x.rank() < 1) ctx.error("the input is a scalar; it needs (N, C, ...)");
  float eps = ctx.attr_float("epsilon", 1e-5f);
  int64_t n = x.dim(0), c = x.rank() > 1 ? x.dim(1) : 1;
  int64_t plane = c ? x.numel() / std::max<int64_t>(n * c, 1) : 0;
  const char* names[] = {"", "scale", "B", "mean", "var"};
  for (size_t i = 1; i < 5; ++i) require_per_channel(ctx, i, c, names[i]);
  Array y = ctx.output_buffer(x, x.dtype(), x.shape());  // in place when x dies here
  visit<kFloats>(x.dtype(), "BatchNormalization", [&]<typename T>(T) {
    std::vector<double> scale = ctx.input(1).to_doubles(), bias = ctx.input(2).to_doubles(),
                        mean = ctx.input(3).to_doubles(), var = ctx.input(4).to_doubles();
    std::vector<T> mul(static_cast<size_t>(c)), add(static_cast<size_t>(c));  // y = x * mul + add per channel
    for (size_t u = 0; u < mul.size(); ++u) {
      mul[u] = static_cast<T>(scale[u] / std::sqrt(var[u] + static_cast<double>(eps)));
      add[u] = static_cast<T>(bias[u] - mean[u] * static_cast<double>(mul[u]));
    }
    // The (image, channel) planes in memory order, spread over the threads.
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(n * c, plane, [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const T a = mul[static_cast<size_t>(r % c)], b = add[static_cast<size_t>(r % c)];
        const T* src = in + r * plane;
        T* dst = out + r * plane;
        for (int64_t j = 0; j < plane; ++j) dst[j] = src[j] * a + b;
      }
    });
  });
  ctx.set_output(0, std::move(y));
}

void instance_norm_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  if (x.rank() < 3) ctx.error(fmt::format("the input has rank {}; it needs (N, C, spatial...)", x.rank()));
  float eps = ctx.attr_float("epsilon", 1e-5f);
  int64_t n = x.dim(0), c = x.dim(1), plane = x.numel() / std::max<int64_t>(n * c, 1);
  require_per_channel(ctx, 1, c, "scale");
  require_per_channel(ctx, 2, c, "B");
  Array y(x.dtype(), x.shape());
  visit<kFloats>(x.dtype(), "InstanceNormalization", [&]<typename T>(T) {
    std::vector<double> scale = ctx.input(1).to_doubles(), bias = ctx.input(2).to_doubles();
    for (int64_t i = 0; i < n * c; ++i) {
      const T* src = x.data<T>() + i * plane;
      double mean = 0, var = 0;
      for (int64_t j = 0; j < plane; ++j) mean += static_cast<double>(src[j]);
      mean /= static_cast<double>(plane);
      for (int64_t j = 0; j < plane; ++j) var += (static_cast<double>(src[j]) - mean) * (static_cast<double>(src[j]) - mean);
      var /= static_cast<double>(plane);
      double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
      size_t ch = static_cast<size_t>(i % c);
      for (int64_t j = 0; j < plane; ++j) {
        y.data<T>()[i * plane + j] = static_cast<T>((static_cast<double>(src[j]) - mean) * inv * scale[ch] + bias[ch]);
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

void layer_norm_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  int64_t axis = normalize_axis(ctx, ctx.attr_int("axis", -1), x.rank());
  float eps = ctx.attr_float("epsilon", 1e-5f);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dim(i);
  for (int64_t i = axis; i < x.rank(); ++i) inner *= x.dim(i);
  Shape norm_shape(x.shape().begin() + axis, x.shape().end());
  Shape stat_shape = x.shape();
  for (int64_t i = axis; i < x.rank(); ++i) stat_shape[static_cast<size_t>(i)] = 1;
  Array y = Array::uninitialized(x.dtype(), x.shape());  // every element is written below
  // Mean and inverse standard deviation are outputs only when the node names them.
  const bool stats = ctx.wants_output(1) || ctx.wants_output(2);
  Array mean_out = stats ? Array(d::kFloat, stat_shape) : Array(), inv_out = stats ? Array(d::kFloat, stat_shape) : Array();
  visit<kFloats>(x.dtype(), "LayerNormalization", [&]<typename T>(T) {
    // Scale and bias broadcast to the normalized shape.
    auto expand = [&](const Array* a, double fallback) {
      std::vector<double> out(static_cast<size_t>(inner), fallback);
      if (!a) return out;
      Shape bs = broadcast_shapes(ctx, {&a->shape(), &norm_shape});
      if (bs != norm_shape) ctx.error("scale/bias do not broadcast to the normalized shape");
      std::vector<double> v = a->to_doubles();
      for_each_broadcast_row<1>(norm_shape, {&a->shape()}, [&](int64_t o, int64_t len, const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st) {
        for (int64_t j = 0; j < len; ++j) out[static_cast<size_t>(o + j)] = v[static_cast<size_t>(off[0] + j * st[0])];
      });
      return out;
    };
    std::vector<double> scale = expand(&ctx.input(1), 1.0), bias = expand(ctx.optional_input(2), 0.0);
    parallel_for(outer, inner * 4, [&](int64_t first, int64_t last) {
    for (int64_t o = first; o < last; ++o) {
      const T* src = x.data<T>() + o * inner;
      T* dst = y.data<T>() + o * inner;
      double mean = 0, inv = 0;
      if constexpr (std::is_same_v<T, float>) {
        layer_norm_floats(src, dst, inner, scale.data(), bias.data(), static_cast<double>(eps), &mean, &inv);
      } else {
        layer_norm_row(src, dst, inner, scale.data(), bias.data(), static_cast<double>(eps), &mean, &inv);
      }
      if (stats) {
        mean_out.data<float>()[o] = static_cast<float>(mean);
        inv_out.data<float>()[o] = static_cast<float>(inv);
      }
    }
    });
  });
  ctx.set_output(0, std::move(y));
  if (stats) {
    ctx.set_output(1, std::move(mean_out));
    ctx.set_output(2, std::move(inv_out));
  }
}

void lrn_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  float alpha = ctx.attr_float("alpha", 1e-4f), beta = ctx.attr_float("beta", 0.75f), bias = ctx.attr_float("bias", 1.0f);
  int64_t size = ctx.attr_int("size", 1);
  int64_t n = x.dim(0), c = x.dim(1), plane = x.numel() / std::max<int64_t>(n * c, 1);
  Array y(x.dtype(), x.shape());
  visit<kFloats>(x.dtype(), "LRN", [&]<typename T>(T) {
    int64_t lo = (size - 1) / 2, hi = (size - 1) - lo;  // floor((size-1)/2) before, ceil after
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t j = 0; j < plane; ++j) {
          double sq = 0;
          for (int64_t k = std::max<int64_t>(0, ch - lo); k <= std::min(c - 1, ch + hi); ++k) {
            double v = static_cast<double>(x.data<T>()[(i * c + k) * plane + j]);
            sq += v * v;
          }
          double v = static_cast<double>(x.data<T>()[(i * c + ch) * plane + j]);
          y.data<T>()[(i * c + ch) * plane + j] =
              static_cast<T>(v / std::pow(static_cast<double>(bias) + static_cast<double>(alpha) / static_cast<double>(size) * sq, static_cast<double>(beta)));
        }
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

// ---- Resize / Upsample ----

struct ResizeSpec {
  std::string mode = "nearest", coordinate = "half_pixel", nearest = "round_prefer_floor";
  double cubic_a = -0.75;
  bool exclude_outside = false;
  std::vector<double> scales;
  Shape out;
};

double source_coordinate(const ResizeSpec& r, double x, double scale, int64_t in, int64_t out) {
  const std::string& m = r.coordinate;
  if (m == "asymmetric") return x / scale;
  if (m == "align_corners") {
    // The resized length is in * scale before flooring (it equals `out` when sizes were given).
    double length = static_cast<double>(in) * scale;
    (void)out;
    return length <= 1.0 ? 0.0 : x * static_cast<double>(in - 1) / (length - 1.0);
  }
  if (m == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (m == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (m == "half_pixel_symmetric") {
    double adj = static_cast<double>(out) / (scale * static_cast<double>(in));
    double center = static_cast<double>(in) / 2.0;
    double offset = center * (1 - adj);
    return offset + (x + 0.5) / scale - 0.5;
  }
  return (x + 0.5) / scale - 0.5;  // half_pixel
}

int64_t nearest_index(const ResizeSpec& r, double s, int64_t in) {
  double v;
  if (r.nearest == "floor") v = std::floor(s);
  else if (r.nearest == "ceil") v = std::ceil(s);
  else if (r.nearest == "round_prefer_ceil") v = std::floor(s + 0.5);
  else v = (s - std::floor(s) == 0.5) ? std::floor(s) : std::round(s);  // round_prefer_floor
  return std::clamp<int64_t>(static_cast<int64_t>(v), 0, in - 1);
}

void resize_apply(KernelContext& ctx, const Array& x, const ResizeSpec& r) {
  const size_t rank = x.shape().size();
  Array y = Array::uninitialized(x.dtype(), r.out);  // both paths below write every element
  std::vector<int64_t> in_st(rank, 1);
  for (size_t i = rank; i-- > 1;) in_st[i - 1] = in_st[i] * x.shape()[i];
  // Per dimension and output index: source taps (index, weight).
  std::vector<std::vector<std::vector<std::pair<int64_t, double>>>> taps(rank);
  for (size_t dim = 0; dim < rank; ++dim) {
    int64_t in = x.shape()[dim], out = r.out[dim];
    taps[dim].resize(static_cast<size_t>(out));
    for (int64_t o = 0; o < out; ++o) {
      auto& t = taps[dim][static_cast<size_t>(o)];
      if (in == out && r.scales[dim] == 1.0) {
        t.push_back({o, 1.0});
        continue;
      }
      double s = source_coordinate(r, static_cast<double>(o), r.scales[dim], in, out);
      if (r.mode == "nearest") {
        t.push_back({nearest_index(r, s, in), 1.0});
      } else if (r.mode == "linear") {
        s = std::clamp(s, 0.0, static_cast<double>(in - 1));
        int64_t lo = static_cast<int64_t>(std::floor(s));
        int64_t hi = std::min(lo + 1, in - 1);
        double w = s - static_cast<double>(lo);
        t.push_back({lo, 1.0 - w});
        if (hi != lo) t.push_back({hi, w});
      } else {  // cubic
        int64_t base = static_cast<int64_t>(std::floor(s));
        double frac = s - static_cast<double>(base), a = r.cubic_a, total = 0;
        std::vector<std::pair<int64_t, double>> raw;
        for (int64_t k = -1; k <= 2; ++k) {
          double dist = std::abs(static_cast<double>(k) - frac);
          double w = dist <= 1 ? ((a + 2) * dist - (a + 3)) * dist * dist + 1
                               : (dist < 2 ? ((a * dist - 5 * a) * dist + 8 * a) * dist - 4 * a : 0.0);
          int64_t idx = base + k;
          if (idx < 0 || idx >= in) {
            if (r.exclude_outside) continue;
            idx = std::clamp<int64_t>(idx, 0, in - 1);
          }
          raw.push_back({idx, w});
          total += w;
        }
        if (r.exclude_outside && total != 0) {
          for (auto& p : raw) p.second /= total;
        }
        t = raw;
      }
    }
  }
  if (r.mode == "nearest" && rank > 0 && y.numel() > 0) {
    // One tap per dimension: each output row (innermost dimension) gathers from one input row, found from
    // per-dimension source offsets. An output row that reads the same input row as the one before it (every
    // row after the first of an upsampled one) copies that row instead.
    std::vector<std::vector<int64_t>> src_off(rank);
    for (size_t dim = 0; dim < rank; ++dim) {
      for (const auto& t : taps[dim]) src_off[dim].push_back(t[0].first * in_st[dim]);
    }
    const int64_t inner = r.out[rank - 1], rows = y.numel() / inner;
    auto gather = [&]<typename E>(E) {  // E: an unsigned integer of the element's size; only bits move
      const E* src = reinterpret_cast<const E*>(x.bytes());
      E* dst = reinterpret_cast<E*>(y.bytes());
      const int64_t* cols = src_off[rank - 1].data();
      parallel_for(rows, inner, [&](int64_t first, int64_t last) {
        std::vector<int64_t> index(rank - 1, 0);  // the output position of row `first` in the outer dims
        for (size_t dim = rank - 1, rest = static_cast<size_t>(first); dim-- > 0;) {
          index[dim] = static_cast<int64_t>(rest % static_cast<size_t>(r.out[dim]));
          rest /= static_cast<size_t>(r.out[dim]);
        }
        int64_t previous = -1;
        for (int64_t row = first; row < last; ++row) {
          int64_t base = 0;
          for (size_t dim = 0; dim + 1 < rank; ++dim) base += src_off[dim][static_cast<size_t>(index[dim])];
          E* out = dst + row * inner;
          if (base == previous) {
            std::memcpy(out, out - inner, static_cast<size_t>(inner) * sizeof(E));
          } else {
            const E* in = src + base;
            for (int64_t j = 0; j < inner; ++j) out[j] = in[cols[j]];
          }
          previous = base;
          for (size_t dim = rank - 1; dim-- > 0;) {
            if (++index[dim] < r.out[dim]) break;
            index[dim] = 0;
          }
        }
      });
    };
    switch (element_size(x.dtype())) {
      case 1: gather(uint8_t{}); break;
      case 2: gather(uint16_t{}); break;
      case 4: gather(uint32_t{}); break;
      case 8: gather(uint64_t{}); break;
      default: ctx.error(fmt::format("not supported: Resize of {} tensors", ir::dtype::name(x.dtype())));
    }
    ctx.set_output(0, std::move(y));
    return;
  }
  visit<kFloats | kInts>(x.dtype(), "Resize", [&]<typename T>(T) {
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    std::vector<int64_t> index(rank, 0);
    std::vector<size_t> k(rank, 0);
    for (int64_t o = 0; o < y.numel(); ++o) {
      // Sum over the tensor product of per-dimension taps.
      double acc = 0;
      std::fill(k.begin(), k.end(), 0);
      while (true) {
        double w = 1;
        int64_t off = 0;
        for (size_t dim = 0; dim < rank; ++dim) {
          const auto& tap = taps[dim][static_cast<size_t>(index[dim])][k[dim]];
          w *= tap.second;
          off += tap.first * in_st[dim];
        }
        acc += w * static_cast<double>(src[off]);
        size_t dim = rank;
        while (dim-- > 0) {
          if (++k[dim] < taps[dim][static_cast<size_t>(index[dim])].size()) break;
          k[dim] = 0;
        }
        if (dim == static_cast<size_t>(-1)) break;
      }
      if constexpr (std::is_integral_v<T>) dst[o] = static_cast<T>(std::nearbyint(acc));
      else dst[o] = static_cast<T>(acc);
      for (size_t dim = rank; dim-- > 0;) {
        if (++index[dim] < r.out[dim]) break;
        index[dim] = 0;
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

void resize_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  ResizeSpec r;
  r.mode = ctx.attr_string("mode", "nearest");
  r.coordinate = ctx.attr_string("coordinate_transformation_mode", ctx.opset() < 11 ? "asymmetric" : "half_pixel");
  r.nearest = ctx.attr_string("nearest_mode", ctx.opset() < 11 ? "floor" : "round_prefer_floor");
  r.cubic_a = ctx.attr_float("cubic_coeff_a", -0.75f);
  r.exclude_outside = ctx.attr_int("exclude_outside", 0) != 0;
  if (r.mode != "nearest" && r.mode != "linear" && r.mode != "cubic") ctx.error(fmt::format("not supported: Resize mode '{}'", r.mode));
  if (r.coordinate == "tf_crop_and_resize") ctx.error("not supported: Resize coordinate_transformation_mode 'tf_crop_and_resize'");
  if (ctx.attr_int("antialias", 0) != 0) ctx.error("not supported: Resize with antialias");
  if (ctx.has_attr("axes") || ctx.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch") {
    ctx.error("not supported: Resize with axes or keep_aspect_ratio_policy");
  }
  const Array* scales = nullptr;
  const Array* sizes = nullptr;
  if (ctx.opset() < 11) {
    scales = &ctx.input(1);
  } else {
    scales = ctx.optional_input(2);
    sizes = ctx.optional_input(3);
    if (scales && scales->numel() == 0) scales = nullptr;
    if (sizes && sizes->numel() == 0) sizes = nullptr;
  }
  const size_t rank = x.shape().size();
  if (sizes) {
    r.out = sizes->to_int64s();
    if (r.out.size() != rank) ctx.error("sizes must have one entry per input dimension");
    for (size_t i = 0; i < rank; ++i) r.scales.push_back(static_cast<double>(r.out[i]) / static_cast<double>(x.shape()[i]));
  } else if (scales) {
    std::vector<double> s = scales->to_doubles();
    if (s.size() != rank) ctx.error("scales must have one entry per input dimension");
    for (size_t i = 0; i < rank; ++i) {
      // Scales are float32 in the model; the output size uses them as stored.
      r.scales.push_back(static_cast<double>(static_cast<float>(s[i])));
      r.out.push_back(static_cast<int64_t>(std::floor(static_cast<double>(x.shape()[i]) * r.scales[i])));
    }
  } else {
    ctx.error("either scales or sizes is required");
  }
  resize_apply(ctx, x, r);
}

void upsample_kernel(KernelContext& ctx) {
  const Array& x = ctx.input(0);
  ResizeSpec r;
  r.mode = ctx.attr_string("mode", "nearest");
  r.coordinate = "asymmetric";
  r.nearest = "floor";
  if (r.mode != "nearest" && r.mode != "linear") ctx.error(fmt::format("not supported: Upsample mode '{}'", r.mode));
  std::vector<double> s;
  if (ctx.opset() < 9) {
    for (float f : ctx.attr_floats("scales")) s.push_back(f);
  } else {
    s = ctx.input(1).to_doubles();
  }
  if (s.size() != x.shape().size()) ctx.error("scales must have one entry per input dimension");
  for (size_t i = 0; i < s.size(); ++i) {
    r.scales.push_back(static_cast<double>(static_cast<float>(s[i])));
    r.out.push_back(static_cast<int64_t>(std::floor(static_cast<double>(x.shape()[i]) * r.scales[i])));
  }
  resize_apply(ctx, x, r);
}

}  // namespace

void register_nn_kernels(KernelRegistry& r) {
  r.add({"", "MatMul", 1, kLatest, matmul_kernel});
  r.add({"", "Gemm", 1, kLatest, gemm_kernel});
  r.add({"", "Conv", 1, kLatest, conv_kernel, true, true});  // reads and writes channels-last (KernelDef::channels_last)
  r.add({"", "ConvTranspose", 1, kLatest, conv_transpose_kernel});
  // Channels-last readers (KernelDef::channels_last): they keep oneDNN's layout between convolutions.
  r.add({"", "MaxPool", 1, kLatest, [](KernelContext& ctx) { pool_kernel(ctx, true); }, true, true});
  r.add({"", "AveragePool", 1, kLatest, [](KernelContext& ctx) { pool_kernel(ctx, false); }, true, true});
  r.add({"", "GlobalAveragePool", 1, kLatest, [](KernelContext& ctx) { global_pool_kernel(ctx, false); }, true, true});
  r.add({"", "GlobalMaxPool", 1, kLatest, [](KernelContext& ctx) { global_pool_kernel(ctx, true); }, true, true});
  r.add({"", "BatchNormalization", 6, kLatest, batch_norm_kernel});
  r.add({"", "InstanceNormalization", 6, kLatest, instance_norm_kernel});
  r.add({"", "LayerNormalization", 17, kLatest, layer_norm_kernel});
  r.add({"", "LRN", 1, kLatest, lrn_kernel});
  r.add({"", "Resize", 10, kLatest, resize_kernel});
  r.add({"", "Upsample", 7, 9, upsample_kernel});
}

}  // namespace mopt::exec
