// The executor's vectorized float exp, erf, tanh and sigmoid against double-precision libm: error in
// float ulps over a dense grid and the special values (NaN, +-inf, overflow, underflow, signed zero);
// LayerNormalization rows: the same bits at every vector width.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "exec/vmath.h"

namespace {

using Loop = void (*)(const float*, float*, int64_t);

// The largest error of loop over inputs, in units of the float spacing at the exact result (results
// below the smallest normal float count in units of that float's spacing).
double max_ulps(Loop loop, double (*exact)(double), const std::vector<float>& in) {
  std::vector<float> out(in.size());
  loop(in.data(), out.data(), static_cast<int64_t>(in.size()));
  double worst = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const double want = exact(in[i]);
    const float wantf = static_cast<float>(want);
    if (std::isinf(wantf)) {
      REQUIRE_MESSAGE(out[i] == wantf, "input ", in[i], ": ", out[i], " instead of ", wantf);
      continue;
    }
    const double spacing = std::max<double>(std::abs(std::nextafter(wantf, std::numeric_limits<float>::infinity()) - wantf),
                                    static_cast<double>(std::numeric_limits<float>::min()) * 0x1p-23);
    const double err = std::abs(out[i] - want) / spacing;
    REQUIRE_MESSAGE(err < 1e6, "input ", in[i], ": ", out[i], " instead of ", want);
    worst = std::max(worst, err);
  }
  return worst;
}

std::vector<float> grid(float lo, float hi, int steps) {
  std::vector<float> v;
  for (int i = 0; i <= steps; ++i) v.push_back(lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(steps));
  for (float x : {1e-30f, 1e-10f, 1e-6f, 1e-3f, 0.4999f, 0.5f, 0.5001f, 0.6249f, 0.625f, 0.6251f})
    for (float s : {1.0f, -1.0f}) v.push_back(s * x);
  return v;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double exp_(double x) { return std::exp(x); }
double erf_(double x) { return std::erf(x); }
double tanh_(double x) { return std::tanh(x); }

}  // namespace

TEST_CASE("vectorized exp, erf, tanh and sigmoid stay within a few float ulps of libm") {
  using namespace mopt::exec;
  // exp across its whole range: denormal results near -104, infinity past 88.72.
  const double exp_err = max_ulps(exp_floats, exp_, grid(-110.0f, 95.0f, 400001));
  const double erf_err = max_ulps(erf_floats, erf_, grid(-12.0f, 12.0f, 400001));
  const double tanh_err = max_ulps(tanh_floats, tanh_, grid(-30.0f, 30.0f, 400001));
  const double sigmoid_err = max_ulps(sigmoid_floats, sigmoid, grid(-110.0f, 110.0f, 400001));
  MESSAGE("max error in ulps: exp ", exp_err, ", erf ", erf_err, ", tanh ", tanh_err, ", sigmoid ", sigmoid_err);
  CHECK(exp_err <= 1);
  CHECK(erf_err <= 3);
  CHECK(tanh_err <= 2);
  CHECK(sigmoid_err <= 3);
}

TEST_CASE("vectorized exp, erf, tanh and sigmoid: NaN stays NaN, infinities and signed zeros as libm") {
  using namespace mopt::exec;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> in = {nan, -nan, inf, -inf, 0.0f, -0.0f};
  std::vector<float> out(in.size());
  for (auto [loop, exact] : {std::pair<Loop, double (*)(double)>{exp_floats, exp_}, {erf_floats, erf_},
                             {tanh_floats, tanh_}, {sigmoid_floats, sigmoid}}) {
    loop(in.data(), out.data(), static_cast<int64_t>(in.size()));
    CHECK(std::isnan(out[0]));
    CHECK(std::isnan(out[1]));
    for (size_t i = 2; i < in.size(); ++i) {
      const float want = static_cast<float>(exact(in[i]));
      CHECK_MESSAGE(out[i] == want, "input ", in[i], ": ", out[i], " instead of ", want);
      CHECK_MESSAGE(std::signbit(out[i]) == std::signbit(want), "input ", in[i], ": ", out[i], " instead of ", want);
    }
  }
}

TEST_CASE("LayerNormalization rows: the vector build gives the bits of the plain build, and the normalized row") {
  // layer_norm_floats runs the widest clone this CPU has; layer_norm_row<float> here is this file's
  // baseline build of the same steps.
  using namespace mopt::exec;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.5f, 2.0f);
  for (int64_t n : {1, 3, 17, 64, 768, 1001}) {
    CAPTURE(n);
    std::vector<float> in(static_cast<size_t>(n)), vector_out(in.size()), plain_out(in.size());
    std::vector<double> scale(in.size()), bias(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      in[i] = normal(rng);
      scale[i] = 0.5 + 0.01 * static_cast<double>(i % 7);
      bias[i] = -0.25 + 0.001 * static_cast<double>(i % 5);
    }
    double vector_mean = 0, vector_inv = 0, plain_mean = 0, plain_inv = 0;
    layer_norm_floats(in.data(), vector_out.data(), n, scale.data(), bias.data(), 1e-5, &vector_mean, &vector_inv);
    layer_norm_row(in.data(), plain_out.data(), n, scale.data(), bias.data(), 1e-5, &plain_mean, &plain_inv);
    CHECK(std::memcmp(vector_out.data(), plain_out.data(), in.size() * sizeof(float)) == 0);
    CHECK(vector_mean == plain_mean);
    CHECK(vector_inv == plain_inv);
    // Against a straightforward double computation: within float rounding.
    double mean = 0, var = 0;
    for (float v : in) mean += v;
    mean /= static_cast<double>(n);
    for (float v : in) var += (v - mean) * (v - mean);
    var /= static_cast<double>(n);
    for (size_t i = 0; i < in.size(); ++i) {
      const double want = (in[i] - mean) / std::sqrt(var + 1e-5) * scale[i] + bias[i];
      CHECK(std::abs(vector_out[i] - want) <= 1e-6 * std::max(1.0, std::abs(want)));
    }
  }
}
