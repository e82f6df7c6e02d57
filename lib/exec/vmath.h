// Vectorizable float exp, erf, tanh and sigmoid over arrays, for the executor's elementwise kernels.
// libm's scalar erff/tanhf/expf were most of a ViT's run time (Erf alone a third of digits_vit). These
// are branch-free polynomial forms (Cephes expf and tanhf, the Numerical Recipes erfc fit) that the
// compiler turns into SIMD loops, without FMA contraction, so results are the same on every x86-64.
// Accuracy against double-precision libm (tests/test_vmath.cpp): a few float ulps; NaN stays NaN,
// +-inf and overflow give what libm gives.
#pragma once
#include <cstdint>

namespace mopt::exec {

void exp_floats(const float* in, float* out, int64_t n);
void erf_floats(const float* in, float* out, int64_t n);
void tanh_floats(const float* in, float* out, int64_t n);
void sigmoid_floats(const float* in, float* out, int64_t n);

}  // namespace mopt::exec
