// Vectorizable float exp, erf, tanh and sigmoid over arrays and LayerNormalization rows, for the executor's kernels.
// libm's scalar erff/tanhf/expf were most of a ViT's run time (Erf alone a third of digits_vit). These
// are branch-free polynomial forms (Cephes expf and tanhf, the Numerical Recipes erfc fit) that the
// compiler turns into SIMD loops, without FMA contraction, so results are the same on every x86-64.
// Accuracy against double-precision libm (tests/test_vmath.cpp): a few float ulps; NaN stays NaN,
// +-inf and overflow give what libm gives.
#pragma once
#include <cmath>
#include <cstdint>

namespace mopt::exec {

void exp_floats(const float* in, float* out, int64_t n);
void erf_floats(const float* in, float* out, int64_t n);
void tanh_floats(const float* in, float* out, int64_t n);
void sigmoid_floats(const float* in, float* out, int64_t n);
// Relu, max(x, 0) with NaN kept (as numpy and ONNX's reference give it, not turned into 0 as x86's max does).
void relu_floats(const float* in, float* out, int64_t n);
// out[k] = the largest of rows[0][k] .. rows[count - 1][k] for k < n, starting from -inf and skipping NaN
// (std::max keeps the running value): MaxPool over channels-last taps. Any order of rows gives the same bits
// except between +0 and -0, of which the first row's wins.
void max_of_rows(const float* const* rows, int64_t count, float* out, int64_t n);
// One row of LayerNormalization: out = (in - mean) / sqrt(var + epsilon) * scale + bias, every step in
// double, the mean and variance over four interleaved partial sums (one running sum made each row wait on
// the latency of every add; a fixed order keeps the bits the same at every vector width).
template <typename T>
__attribute__((always_inline)) inline void layer_norm_row(const T* in, T* out, int64_t n, const double* scale, const double* bias,
                                                          double epsilon, double* mean_out, double* inv_std_out) {
  auto sum4 = [&](auto&& term) {
    double part[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      for (int k = 0; k < 4; ++k) part[k] += term(j + k);
    }
    for (; j < n; ++j) part[0] += term(j);
    return (part[0] + part[1]) + (part[2] + part[3]);
  };
  const double mean = sum4([&](int64_t j) { return static_cast<double>(in[j]); }) / static_cast<double>(n);
  const double var = sum4([&](int64_t j) {
    const double c = static_cast<double>(in[j]) - mean;
    return c * c;
  }) / static_cast<double>(n);
  const double inv = 1.0 / std::sqrt(var + epsilon);
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<T>((static_cast<double>(in[j]) - mean) * inv * scale[j] + bias[j]);
  *mean_out = mean;
  *inv_std_out = inv;
}
// layer_norm_row for float, built per vector width like the loops above.
void layer_norm_floats(const float* in, float* out, int64_t n, const double* scale, const double* bias, double epsilon,
                       double* mean_out, double* inv_std_out);

}  // namespace mopt::exec
