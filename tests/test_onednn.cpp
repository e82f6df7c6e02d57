// The executor's two convolution paths, oneDNN's (onednn.h) and its own im2col + GEMM / col2im,
// against a plain double-precision loop over random Conv and ConvTranspose problems: 1-3 spatial dims,
// batches, groups and depthwise, strides, dilations, asymmetric pads, output_padding, with and without
// bias. Each problem runs through both paths, and the test counts that oneDNN took the ones it should.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>

#include "exec/kernel.h"
#include "exec/onednn.h"
#include "helpers.h"

using namespace mopt;
using namespace mopt::test;
namespace d = ir::dtype;

namespace {

struct Problem {
  bool transposed = false, bias = false;
  int spatial = 2;
  int64_t n = 1, c = 1, m = 1, group = 1;
  // Per spatial dim (only the first `spatial` used). Conv: `grid` is the input size. ConvTranspose:
  // `grid` is the input (small) size and the output size follows from the rest.
  int64_t grid[3] = {1, 1, 1}, kernel[3] = {1, 1, 1}, stride[3] = {1, 1, 1}, dilation[3] = {1, 1, 1};
  int64_t pad_begin[3] = {0, 0, 0}, pad_end[3] = {0, 0, 0}, out_pad[3] = {0, 0, 0};

  int64_t window(int i) const { return (kernel[i] - 1) * dilation[i] + 1; }
  int64_t out_size(int i) const {
    return transposed ? stride[i] * (grid[i] - 1) + out_pad[i] + window(i) - pad_begin[i] - pad_end[i]
                      : (grid[i] + pad_begin[i] + pad_end[i] - window(i)) / stride[i] + 1;
  }
  // oneDNN takes a transposed problem unless output_padding reaches past the end pad (zeros past the kernel).
  bool library_takes() const {
    for (int i = 0; i < spatial; ++i) {
      if (transposed && pad_end[i] < out_pad[i]) return false;
    }
    return true;
  }
};

std::string ints(const int64_t* v, int count) {
  std::vector<int64_t> x(v, v + count);
  return fmt::format("{}", fmt::join(x, ", "));
}

std::string dims(std::vector<int64_t> v) { return fmt::format("[{}]", fmt::join(v, ",")); }

std::vector<int64_t> x_shape(const Problem& p) {
  std::vector<int64_t> s{p.n, p.c};
  for (int i = 0; i < p.spatial; ++i) s.push_back(p.grid[i]);
  return s;
}
std::vector<int64_t> w_shape(const Problem& p) {
  std::vector<int64_t> s = p.transposed ? std::vector<int64_t>{p.c, p.m / p.group} : std::vector<int64_t>{p.m, p.c / p.group};
  for (int i = 0; i < p.spatial; ++i) s.push_back(p.kernel[i]);
  return s;
}
std::vector<int64_t> y_shape(const Problem& p) {
  std::vector<int64_t> s{p.n, p.m};
  for (int i = 0; i < p.spatial; ++i) s.push_back(p.out_size(i));
  return s;
}

std::string model_text(const Problem& p) {
  std::string pads = ints(p.pad_begin, p.spatial) + ", " + ints(p.pad_end, p.spatial);
  std::string attrs = fmt::format("kernel_shape = [{}], strides = [{}], dilations = [{}], pads = [{}], group = {}",
                                  ints(p.kernel, p.spatial), ints(p.stride, p.spatial), ints(p.dilation, p.spatial), pads, p.group);
  if (p.transposed) attrs += fmt::format(", output_padding = [{}]", ints(p.out_pad, p.spatial));
  return fmt::format(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float{} x, float{} w{}) => (float{} y) {{ y = {} <{}> (x, w{}) }})",
                     dims(x_shape(p)), dims(w_shape(p)), p.bias ? fmt::format(", float[{}] b", p.m) : "", dims(y_shape(p)),
                     p.transposed ? "ConvTranspose" : "Conv", attrs, p.bias ? ", b" : "");
}

int64_t volume(const std::vector<int64_t>& s) {
  int64_t v = 1;
  for (int64_t x : s) v *= x;
  return v;
}

// Row-major offset of (a, b, spatial...) in a tensor of shape {A, B, sizes...}.
int64_t at(int64_t a, int64_t b, int64_t bs, const int64_t* pos, const int64_t* sizes, int spatial) {
  int64_t o = a * bs + b;
  for (int i = 0; i < spatial; ++i) o = o * sizes[i] + pos[i];
  return o;
}

// The definition, in double: every output (or, transposed, every input) position against every tap.
std::vector<double> reference(const Problem& p, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b) {
  const int s = p.spatial;
  int64_t out[3] = {1, 1, 1}, taps[3] = {1, 1, 1}, kernel[3] = {1, 1, 1};
  for (int i = 0; i < s; ++i) out[i] = p.out_size(i), kernel[i] = p.kernel[i];
  std::vector<double> y(static_cast<size_t>(volume(y_shape(p))), 0.0);
  const int64_t cg = p.c / p.group, mg = p.m / p.group;
  int64_t grid_total = 1, tap_total = 1;
  for (int i = 0; i < s; ++i) grid_total *= p.grid[i], tap_total *= kernel[i];
  auto unflatten = [&](int64_t flat, const int64_t* sizes, int64_t* pos) {
    for (int i = s - 1; i >= 0; --i) pos[i] = flat % sizes[i], flat /= sizes[i];
  };
  for (int64_t n = 0; n < p.n; ++n) {
    for (int64_t ci = 0; ci < p.c; ++ci) {
      const int64_t g = ci / cg;
      for (int64_t gi = 0; gi < grid_total; ++gi) {  // each input position of x
        int64_t xpos[3];
        unflatten(gi, p.grid, xpos);
        const double xv = x[static_cast<size_t>(at(n, ci, p.c, xpos, p.grid, s))];
        for (int64_t t = 0; t < tap_total; ++t) {
          unflatten(t, kernel, taps);
          int64_t ypos[3];
          bool inside = true;
          for (int i = 0; i < s && inside; ++i) {
            if (p.transposed) {  // input position o feeds output o * stride - pad + k * dilation
              ypos[i] = xpos[i] * p.stride[i] - p.pad_begin[i] + taps[i] * p.dilation[i];
              inside = ypos[i] >= 0 && ypos[i] < out[i];
            } else {  // output o reads input o * stride - pad + k * dilation == xpos
              const int64_t shifted = xpos[i] + p.pad_begin[i] - taps[i] * p.dilation[i];
              inside = shifted >= 0 && shifted % p.stride[i] == 0 && shifted / p.stride[i] < out[i];
              ypos[i] = shifted / p.stride[i];
            }
          }
          if (!inside) continue;
          for (int64_t mo = 0; mo < mg; ++mo) {
            const int64_t m = g * mg + mo;
            const double wv = p.transposed ? w[static_cast<size_t>(at(ci, mo, mg, taps, kernel, s))]
                                           : w[static_cast<size_t>(at(m, ci - g * cg, cg, taps, kernel, s))];
            y[static_cast<size_t>(at(n, m, p.m, ypos, out, s))] += xv * wv;
          }
        }
      }
    }
  }
  if (p.bias) {
    const int64_t plane = volume(y_shape(p)) / (p.n * p.m);
    for (int64_t i = 0; i < p.n * p.m; ++i)
      for (int64_t j = 0; j < plane; ++j) y[static_cast<size_t>(i * plane + j)] += b[static_cast<size_t>(i % p.m)];
  }
  return y;
}

Problem random_problem(std::mt19937& rng, bool transposed) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Problem p;
  p.transposed = transposed;
  p.bias = pick(0, 1) == 1;
  p.spatial = static_cast<int>(pick(1, 3));
  p.n = pick(1, 3);
  const int64_t kind = pick(0, 3);  // 0-1 dense, 2 grouped, 3 depthwise
  p.group = kind == 2 ? 2 : kind == 3 ? pick(2, 5) : 1;
  p.c = kind == 3 ? p.group : p.group * pick(1, 5);
  p.m = kind == 3 ? p.group : p.group * pick(1, 5);
  for (int i = 0; i < p.spatial; ++i) {
    p.kernel[i] = pick(1, 3);
    p.stride[i] = pick(1, 2);
    p.dilation[i] = pick(1, 2);
    p.grid[i] = pick(p.spatial == 3 ? 2 : 3, p.spatial == 3 ? 5 : 9);
    p.pad_begin[i] = pick(0, 2);
    p.pad_end[i] = pick(0, 2);
    if (transposed) {
      p.out_pad[i] = pick(0, std::max(p.stride[i], p.dilation[i]) - 1);
      p.pad_begin[i] = std::min(p.pad_begin[i], p.window(i) - 1);  // keep at least one output
      p.pad_end[i] = std::min(p.pad_end[i], p.window(i) - 1);
      while (p.out_size(i) < 1) --(p.pad_end[i] > 0 ? p.pad_end[i] : p.pad_begin[i]);
    } else {
      p.grid[i] = std::max(p.grid[i], p.window(i));  // the window fits the unpadded input
    }
  }
  return p;
}

std::vector<float> random_values(std::mt19937& rng, int64_t count) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = u(rng);
  return v;
}

// One run of `model` on a fresh executor with oneDNN's path on or off, and the calls oneDNN took in it.
struct PathRun {
  std::vector<exec::Array> outputs;
  int64_t library_calls = 0;
};
PathRun run_path(const ir::Model& model, const data::Feeds& feeds, bool library) {
  const bool was = exec::set_dnnl_enabled(library);
  const int64_t calls = exec::dnnl_calls();
  PathRun out;
  out.outputs = exec::Executor(model).run(feeds);
  exec::set_dnnl_enabled(was);
  out.library_calls = exec::dnnl_calls() - calls;
  return out;
}

// The model's one Conv run by its kernel with x given channels-last or plain, its output allowed to stay
// channels-last (as the executor runs a Conv whose readers all take that layout).
exec::Array run_channels_last(const ir::Model& model, const data::Feeds& feeds, bool x_channels_last) {
  const ir::Node& node = **model.graph().nodes().begin();
  const exec::KernelDef* def = exec::KernelRegistry::instance().find("", "Conv", 17);
  REQUIRE(def != nullptr);
  const exec::Array x = x_channels_last ? feeds.at("x").in_layout(exec::Layout::kChannelsLast) : feeds.at("x");
  std::vector<const exec::Array*> inputs{&x, &feeds.at("w")};
  if (feeds.count("b")) inputs.push_back(&feeds.at("b"));
  exec::GraphRunner runner(model, {});
  exec::Env scope;
  return runner.run_kernel(*def, node, 17, inputs, &scope, {0, nullptr, false, 1}).at(0);
}

// The largest |got - want|; infinity where either is NaN, so a NaN can never pass a bound.
double worst_difference(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::abs(got[i] - want[i]);
    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
  }
  return worst;
}

}  // namespace

TEST_CASE("Conv and ConvTranspose: oneDNN's path and the executor's own agree with the definition") {
  std::mt19937 rng(20261203);
  int64_t through_library = 0, channels_last_outputs = 0;
  const int64_t min_work = exec::set_dnnl_min_multiply_adds(0);  // these problems are small
  for (int trial = 0; trial < 240; ++trial) {
    Problem p = random_problem(rng, trial % 3 == 2);
    if (trial % 8 == 1) {  // pointwise, which oneDNN runs on the plain layouts
      p.group = 1;
      for (int i = 0; i < 3; ++i) p.kernel[i] = p.stride[i] = 1, p.pad_begin[i] = p.pad_end[i] = 0;
    }
    const std::string text = model_text(p);
    CAPTURE(text);
    const std::vector<float> x = random_values(rng, volume(x_shape(p))), w = random_values(rng, volume(w_shape(p))),
                             b = random_values(rng, p.m);
    data::Feeds feeds{{"x", array<float>(d::kFloat, x_shape(p), x)}, {"w", array<float>(d::kFloat, w_shape(p), w)}};
    if (p.bias) feeds.emplace("b", array<float>(d::kFloat, {p.m}, b));
    const std::vector<double> want = reference(p, x, w, b);
    auto model = parse_model(text);
    for (bool library : {true, false}) {
      CAPTURE(library);
      const PathRun run = run_path(*model, feeds, library);
      through_library += run.library_calls;
      CHECK(run.library_calls == (library && p.library_takes() ? 1 : 0));
      REQUIRE(run.outputs.size() == 1);
      CHECK(run.outputs[0].shape() == y_shape(p));
      // sums of at most 5 * 27 products of values in [-1, 1], in float
      CHECK(worst_difference(run.outputs[0].to_doubles(), want) <= 1e-5);
    }
    for (bool x_channels_last : {false, true}) {  // the executor's channels-last activations (exec::Layout)
      if (p.transposed) break;
      CAPTURE(x_channels_last);
      const exec::Array y = run_channels_last(*model, feeds, x_channels_last);
      channels_last_outputs += y.channels_last();
      CHECK(y.shape() == y_shape(p));
      CHECK(worst_difference(y.in_layout(exec::Layout::kPlain).to_doubles(), want) <= 1e-5);
    }
  }
  exec::set_dnnl_min_multiply_adds(min_work);
  CHECK(through_library >= 200);  // most problems took oneDNN's path (the rest: output_padding past the pads)
  // oneDNN wrote most dense convolutions channels-last (140 of the 320 runs on AVX-512); where the layout it
  // chose is plain (grouped and tiny problems), the output stays plain.
  CHECK(channels_last_outputs >= 80);
}

TEST_CASE("a convolution too small to pay for oneDNN's call stays on the executor's own path") {
  // 1 x 4 x 16 input, 8 filters of 4 x 3: 8 * 4 * 3 * 14 = 1344 multiply-adds, under the default 2^19.
  auto model = parse_model(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[1,4,16] x, float[8,4,3] w) => (float[1,8,14] y) { y = Conv(x, w) })");
  std::vector<float> x(64), w(96);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 5) - 2.0f;
  const int64_t calls = exec::dnnl_calls();
  std::vector<exec::Array> out =
      exec::Executor(*model).run({{"x", array<float>(d::kFloat, {1, 4, 16}, x)}, {"w", array<float>(d::kFloat, {8, 4, 3}, w)}});
  CHECK(exec::dnnl_calls() == calls);
  // y[0, 0, 0] = sum over channels and taps of x[ch, t] * w[0, ch, t]
  double want = 0;
  for (int ch = 0; ch < 4; ++ch)
    for (int t = 0; t < 3; ++t) want += static_cast<double>(x[static_cast<size_t>(ch * 16 + t)]) * w[static_cast<size_t>(ch * 3 + t)];
  CHECK(out[0].to_doubles()[0] == want);
}

TEST_CASE("oneDNN reorders a constant weight once per executor and a fed weight on every run") {
  // 16 -> 16 channels, 3x3 on 12x12: oneDNN wants the weight in a blocked layout, so each path reorders it.
  const std::vector<int64_t> w_dims{16, 16, 3, 3};
  std::mt19937 rng(7);
  const std::vector<float> w1 = random_values(rng, volume(w_dims)), w2 = random_values(rng, volume(w_dims));
  const std::string weights = fmt::format("{}", fmt::join(w1, ", "));
  const std::string header = R"(<ir_version: 8, opset_import: ["" : 17]>)";
  const std::string as_initializer = header + " g (float[1,16,12,12] x) => (float[1,16,10,10] y) <float[16,16,3,3] w = {" +
                                     weights + "}> { y = Conv(x, w) }";
  const std::string as_constant = header + " g (float[1,16,12,12] x) => (float[1,16,10,10] y) { w = Constant <value = float[16,16,3,3] {" +
                                  weights + "}> () y = Conv(x, w) }";
  const std::string as_input = header + " g (float[1,16,12,12] x, float[16,16,3,3] w) => (float[1,16,10,10] y) { y = Conv(x, w) }";
  // An initializer that is also an input: a default, which a feed replaces.
  const std::string as_default = header + " g (float[1,16,12,12] x, float[16,16,3,3] w) => (float[1,16,10,10] y) <float[16,16,3,3] w = {" +
                                 weights + "}> { y = Conv(x, w) }";
  const int64_t min_work = exec::set_dnnl_min_multiply_adds(0);
  struct Case {
    const char* what;
    const std::string* text;
    bool feed_weight;   // each run feeds w (w1, then w2, then w1)
    int64_t reorders;   // over three runs
  };
  for (const Case& c : {Case{"initializer", &as_initializer, false, 1}, Case{"Constant node", &as_constant, false, 1},
                        Case{"graph input", &as_input, true, 3}, Case{"fed over an initializer", &as_default, true, 3}}) {
    CAPTURE(c.what);
    auto model = parse_model(*c.text);
    exec::Executor executor(*model);
    const int64_t reorders = exec::dnnl_weight_reorders(), calls = exec::dnnl_calls();
    for (int run = 0; run < 3; ++run) {
      CAPTURE(run);
      data::Feeds feeds{{"x", array<float>(d::kFloat, {1, 16, 12, 12}, random_values(rng, 16 * 144))}};
      if (c.feed_weight) feeds.emplace("w", array<float>(d::kFloat, w_dims, run == 1 ? w2 : w1));
      const std::vector<exec::Array> out = executor.run(feeds);
      // The executor's own path, on a fresh executor, is the expected output of every run.
      const std::vector<double> want = run_path(*model, feeds, false).outputs[0].to_doubles();
      CHECK(worst_difference(out[0].to_doubles(), want) <= 1e-4);
    }
    CHECK(exec::dnnl_calls() - calls == 3);
    CHECK(exec::dnnl_weight_reorders() - reorders == c.reorders);
  }
  exec::set_dnnl_min_multiply_adds(min_work);
}

TEST_CASE("MatMul: oneDNN's path and the executor's own agree with the definition, broadcasting included") {
  std::mt19937 rng(20261204);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const int64_t min_work = exec::set_dnnl_min_multiply_adds(0);
  int64_t through_library = 0;
  for (int trial = 0; trial < 120; ++trial) {
    // Batch dims of a and b, numpy-broadcast: each 1 or the common size, ranks may differ; 1-D operands too.
    const int batch_rank = static_cast<int>(pick(0, 3));
    std::vector<int64_t> batch, a_shape, b_shape;
    for (int i = 0; i < batch_rank; ++i) batch.push_back(pick(1, 3));
    const int a_rank = static_cast<int>(pick(0, batch_rank)), b_rank = static_cast<int>(pick(0, batch_rank));
    for (int i = batch_rank - a_rank; i < batch_rank; ++i) a_shape.push_back(pick(0, 2) == 0 ? 1 : batch[static_cast<size_t>(i)]);
    for (int i = batch_rank - b_rank; i < batch_rank; ++i) b_shape.push_back(pick(0, 2) == 0 ? 1 : batch[static_cast<size_t>(i)]);
    const int64_t m = pick(1, 9), k = pick(1, 20), n = pick(1, 9);
    const bool a_vector = a_rank == 0 && pick(0, 3) == 0, b_vector = b_rank == 0 && pick(0, 3) == 0;
    if (!a_vector) a_shape.push_back(m);
    a_shape.push_back(k);
    b_shape.push_back(k);
    if (!b_vector) b_shape.push_back(n);
    // The output: broadcast batch of the two (only dims they have), then m and n unless a vector dropped them.
    std::vector<int64_t> out_batch;
    const int out_rank = std::max(a_rank, b_rank);
    for (int i = batch_rank - out_rank; i < batch_rank; ++i) {
      const int ai = i - (batch_rank - a_rank), bi = i - (batch_rank - b_rank);
      const int64_t ad = ai >= 0 ? a_shape[static_cast<size_t>(ai)] : 1, bd = bi >= 0 ? b_shape[static_cast<size_t>(bi)] : 1;
      out_batch.push_back(std::max(ad, bd));
    }
    std::vector<int64_t> out_shape = out_batch;
    if (!a_vector) out_shape.push_back(m);
    if (!b_vector) out_shape.push_back(n);
    const std::string text = fmt::format(R"(<ir_version: 8, opset_import: ["" : 17]>
        g (float{} a, float{} b) => (float{} y) {{ y = MatMul(a, b) }})",
                                         dims(a_shape), dims(b_shape), dims(out_shape));
    CAPTURE(text);
    const std::vector<float> av = random_values(rng, volume(a_shape)), bv = random_values(rng, volume(b_shape));
    // Reference in double: every output batch index maps to a and b batch indices (size-1 dims read index 0).
    const int64_t batches = volume(out_batch), rows = a_vector ? 1 : m, cols = b_vector ? 1 : n;
    std::vector<double> want(static_cast<size_t>(batches * rows * cols), 0.0);
    for (int64_t index = 0; index < batches; ++index) {
      int64_t a_off = 0, b_off = 0, a_stride = 1, b_stride = 1, rest = index;
      for (int i = out_rank; i-- > 0;) {
        const int64_t pos = rest % out_batch[static_cast<size_t>(i)];
        rest /= out_batch[static_cast<size_t>(i)];
        const int ai = i - (out_rank - a_rank), bi = i - (out_rank - b_rank);
        if (ai >= 0) {
          const int64_t d = a_shape[static_cast<size_t>(ai)];
          a_off += (d == 1 ? 0 : pos) * a_stride;
          a_stride *= d;
        }
        if (bi >= 0) {
          const int64_t d = b_shape[static_cast<size_t>(bi)];
          b_off += (d == 1 ? 0 : pos) * b_stride;
          b_stride *= d;
        }
      }
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < k; ++p)
            sum += static_cast<double>(av[static_cast<size_t>(a_off * rows * k + i * k + p)]) *
                   bv[static_cast<size_t>(b_off * k * cols + p * cols + j)];
          want[static_cast<size_t>((index * rows + i) * cols + j)] = sum;
        }
    }
    auto model = parse_model(text);
    const data::Feeds feeds{{"a", array<float>(d::kFloat, a_shape, av)}, {"b", array<float>(d::kFloat, b_shape, bv)}};
    for (bool library : {true, false}) {
      CAPTURE(library);
      const PathRun run = run_path(*model, feeds, library);
      through_library += run.library_calls;
      if (!library) CHECK(run.library_calls == 0);
      REQUIRE(run.outputs.size() == 1);
      CHECK(run.outputs[0].shape() == out_shape);
      // sums of at most 20 products of values in [-1, 1], in float
      CHECK(worst_difference(run.outputs[0].to_doubles(), want) <= 1e-5);
    }
  }
  exec::set_dnnl_min_multiply_adds(min_work);
  CHECK(through_library >= 100);  // oneDNN took (nearly) all of them
}
