// Vectorizable float exp, erf, tanh and sigmoid (see vmath.h). Each function is straight-line code
// per element: both sides of every case are computed and one is selected, so the loops vectorize.
#include "exec/vmath.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace mopt::exec {
namespace {

// e^x = 2^n * e^r with n = round(x / ln2) and |r| <= ln2/2: e^r by Cephes expf's polynomial, 2^n as
// two factors that are each a normal float, so that the product under- and overflows exactly as e^x
// does (denormal results included).
inline float exp_core(float x) {
  // Clamped so that n stays in [-150, 128]: e^-104 is 0 in float and e^89 is inf.
  const float xc = std::min(std::max(x, -104.0f), 89.0f);
  // Round x*log2(e) to the nearest integer by adding 1.5 * 2^23: the integer lands in the low mantissa
  // bits, read back without a float-to-int conversion (defined for NaN too).
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - 0x4B400000;
  // r = x - n*ln2 in two parts (Cephes), |r| <= ln2/2.
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t half = ni >> 1;  // floor(n/2): both factors lie in [2^-75, 2^64]
  const float s1 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(half + 127) << 23));
  const float s2 = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(ni - half + 127) << 23));
  const float y = p * s1 * s2;
  return x != x ? x : y;  // NaN in, NaN out
}

inline float erf_core(float x) {
  const float ax = std::abs(x);
  // |x| < 0.5: the Taylor series of erf to x^13 (error below 2e-9).
  const float z = x * x;
  float s = 1.0f / 9360.0f;
  s = s * z - 1.0f / 1320.0f;
  s = s * z + 1.0f / 216.0f;
  s = s * z - 1.0f / 42.0f;
  s = s * z + 1.0f / 10.0f;
  s = s * z - 1.0f / 3.0f;
  s = s * z + 1.0f;
  const float small = 1.12837916709551257f * x * s;
  // |x| >= 0.5: 1 - erfc(|x|), erfc by the Chebyshev fit of Numerical Recipes (erfcc), relative error
  // below 1.2e-7 everywhere.
  const float t = 1.0f / (1.0f + 0.5f * ax);
  // The degree-9 polynomial in t by Estrin's scheme: independent pairs instead of one long chain of
  // dependent multiply-adds, which left the vector units waiting.
  const float t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  const float p01 = -1.26551223f + 1.00002368f * t, p23 = 0.37409196f + 0.09678418f * t;
  const float p45 = -0.18628806f + 0.27886807f * t, p67 = -1.13520398f + 1.48851587f * t;
  const float p89 = -0.82215223f + 0.17087277f * t;
  const float q = ((p01 + p23 * t2) + (p45 + p67 * t2) * t4) + p89 * t8;
  const float erfc = t * exp_core(q - ax * ax);
  const float big = std::copysign(1.0f - erfc, x);
  return ax < 0.5f ? small : big;  // NaN takes the second branch and stays NaN
}

inline float tanh_core(float x) {
  const float ax = std::abs(x);
  // |x| < 0.625: Cephes tanhf's odd polynomial.
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = std::copysign(p * z * ax + ax, x);  // on |x|: tanh(-0) is -0
  // Otherwise 1 - 2 / (e^2|x| + 1), with the sign of x (e^2|x| = inf gives exactly 1).
  const float big = std::copysign(1.0f - 2.0f / (exp_core(2.0f * ax) + 1.0f), x);
  return ax < 0.625f ? small : big;
}

// 1 / (1 + e^-x), written with e = e^-|x| <= 1 so that large negative x gives e^x's denormals, not 0.
inline float sigmoid_core(float x) {
  const float e = exp_core(-std::abs(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;  // NaN takes the second branch and stays NaN
}

}  // namespace

// The loops are also built for AVX-512 and AVX2 and the widest the CPU has is picked when the program
// loads (GCC's function multiversioning; the baseline build has only SSE2's four floats per instruction):
// digits_vit's Erf took 1.5 ms for 783K values. Each width runs the same IEEE operations in the same order
// (no FMA contraction: CMakeLists.txt builds this file with -ffp-contract=off), so all give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOPT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOPT_VECTOR_CLONES
#endif

MOPT_VECTOR_CLONES void exp_floats(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = exp_core(in[i]);
}

MOPT_VECTOR_CLONES void erf_floats(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = erf_core(in[i]);
}

MOPT_VECTOR_CLONES void tanh_floats(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = tanh_core(in[i]);
}

MOPT_VECTOR_CLONES void sigmoid_floats(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = sigmoid_core(in[i]);
}

MOPT_VECTOR_CLONES void relu_floats(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

MOPT_VECTOR_CLONES void max_of_rows(const float* const* rows, int64_t count, float* out, int64_t n) {
  const float lowest = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) out[j] = lowest;
  for (int64_t r = 0; r < count; ++r) {
    const float* row = rows[r];
    for (int64_t j = 0; j < n; ++j) out[j] = std::max(out[j], row[j]);
  }
}

MOPT_VECTOR_CLONES void layer_norm_floats(const float* in, float* out, int64_t n, const double* scale, const double* bias,
                                          double epsilon, double* mean_out, double* inv_std_out) {
  layer_norm_row(in, out, n, scale, bias, epsilon, mean_out, inv_std_out);
}

}  // namespace mopt::exec
