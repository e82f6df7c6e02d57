// Float convolutions and matrix products through oneDNN (Debian's libdnnl). Its JIT convolutions (brgconv
// on AVX-512, jit on AVX2) run in blocked channel layouts and were 3-5x faster than im2col + OpenBLAS on the
// shared conv nets (bench/exec.txt); its matmul runs small and batched products (a ViT's attention: 1440
// products of 17x16 by 16x17) without OpenBLAS's cost per call. The kernels in kernels_nn.cpp call it first
// and keep their own im2col + GEMM / OpenBLAS paths for what it declines (other types, empty tensors, shapes
// it has no implementation for, problems too small to pay for a call) and as the reference the tests
// compare it against.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "exec/array.h"

namespace mopt::exec {

// The spatial geometry of a convolution or pooling window in ONNX terms, sizes right-aligned into 3 slots
// (a 2-D problem uses slots 1 and 2, unused leading slots are 1). For a transposed convolution `in` is the
// large output image and `out` the small input grid, as the ConvTranspose kernel describes it.
struct Geometry {
  int spatial = 0;  // 1..3
  int64_t in[3] = {1, 1, 1}, kernel[3] = {1, 1, 1}, out[3] = {1, 1, 1};
  int64_t stride[3] = {1, 1, 1}, dilation[3] = {1, 1, 1}, pad_begin[3] = {0, 0, 0}, pad_end[3] = {0, 0, 0};
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
};

// One N-D convolution: its window, batch, input and output channels and groups, and the layouts of its
// activations (exec::Layout): the source's, and whether the destination may be written channels-last.
struct ConvProblem {
  Geometry g;
  int64_t n = 0, c = 0, m = 0, group = 1;
  bool src_channels_last = false, dst_channels_last_allowed = false;
};

// Conv: y[n, m, out...] = conv(x[n, c, in...], w[m, c/group, kernel...]) + bias[m] (bias may be null).
// Returns the layout y was written in: channels-last where that is allowed and the primitive oneDNN chose
// writes it (a reorder saved; its pointwise ones keep the source's layout, its others prefer channels-last
// on AVX-512), plain otherwise. Returns nothing, having written nothing, when oneDNN is switched off, has
// no implementation for it, or the problem is too small to pay for oneDNN's fixed cost per call (see
// set_dnnl_min_multiply_adds). `weight_state`, for a weight that is the same buffer with the same contents
// on every call (a model constant; null otherwise), keeps the weight in the layout oneDNN wants, so later
// calls skip that reorder.
std::optional<Layout> dnnl_conv(const ConvProblem& p, const float* x, const float* w, const float* bias, float* y,
                                std::shared_ptr<void>* weight_state = nullptr);

// ConvTranspose: y[n, m, in...] = conv_transpose(x[n, c, out...], w[c, m/group, kernel...]) + bias[m],
// plain layouts only. False where dnnl_conv would return nothing.
bool dnnl_conv_transpose(const ConvProblem& p, const float* x, const float* w, const float* bias, float* y,
                         std::shared_ptr<void>* weight_state = nullptr);

// MatMul: c[batch..., m, n] = a[a_batch..., m, k] x b[b_batch..., k, n], row-major. `a_batch` and `b_batch`
// have batch's rank (leading 1s added) and each dim is 1 (broadcast) or batch's.
struct MatMulProblem {
  std::vector<int64_t> batch, a_batch, b_batch;
  int64_t m = 0, k = 0, n = 0;
};
bool dnnl_matmul(const MatMulProblem& p, const float* a, const float* b, float* c);

// Copies the float array `in`, of `shape` [N, C, D...] (rank 3 to 5), into `out` in the other layout
// (exec::Layout: plain NC[D]HW <-> channels-last N[D]HWC) with oneDNN's JIT reorder, 2-3x faster than a
// tiled loop. False, having written nothing, when oneDNN is switched off or declines.
bool dnnl_reorder_layout(const std::vector<int64_t>& shape, bool to_channels_last, const float* in, float* out);

// For tests and diagnosis: turn the oneDNN path off (the kernels' own path runs); returns the old setting.
bool set_dnnl_enabled(bool enabled);
// Problems with fewer multiply-adds stay on the kernels' own path (default 2^19); returns the old value.
// The same bound holds for convolutions and matrix products.
int64_t set_dnnl_min_multiply_adds(int64_t count);
// Convolutions and matrix products oneDNN has run in this process, so a test can show the path it compares
// was taken, and the weight reorders it ran (a constant weight's is run once per plan).
int64_t dnnl_calls();
int64_t dnnl_weight_reorders();

}  // namespace mopt::exec
