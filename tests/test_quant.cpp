// Quantization: the arithmetic (scales, zero points, thresholds), each rewrite on small graphs in ONNX
// text (structure: what fired and what stayed; numerics: outputs of the quantized model against the
// float one on seeded inputs), and the quality bar on the real models in ../shared/models.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "data/npy.h"
#include "exec/parallel.h"
#include "helpers.h"
#include "pass/pipeline.h"
#include "quant/accuracy_aware.h"
#include "quant/calibrate.h"
#include "quant/params.h"
#include "convert/versions.h"
#include "quant/quantize.h"
#include "report/stats.h"
#include "rewrite/rewrite.h"
#include "rewrite/weight_layout.h"

using namespace mopt;
using namespace mopt::test;
namespace d = ir::dtype;

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;

// "float[2,3] name = {...}" with seeded values in [-scale, scale).
std::string tensor_text(const std::string& name, const std::vector<int64_t>& dims, uint32_t seed, float scale = 0.5f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  int64_t n = 1;
  for (int64_t v : dims) n *= v;
  std::vector<std::string> values;
  for (int64_t i = 0; i < n; ++i) values.push_back(fmt::format("{:.6f}", dist(rng)));
  return fmt::format("float[{}] {} = {{{}}}", fmt::join(dims, ","), name, fmt::join(values, ", "));
}

// A small CNN: Conv -> Relu -> MaxPool -> Flatten -> Gemm.
std::string small_cnn(int opset = 13) {
  return fmt::format(R"(<ir_version: 8, opset_import: ["" : {}]>
g (float[2,3,8,8] x) => (float[2,5] y) <{}, {}, {}, {}> {{
  c = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, W, B)
  r = Relu(c)
  p = MaxPool <kernel_shape=[2,2], strides=[2,2]> (r)
  f = Flatten(p)
  y = Gemm <transB=1> (f, G, C)
}})",
                     opset, tensor_text("W", {4, 3, 3, 3}, 1), tensor_text("B", {4}, 2), tensor_text("G", {5, 64}, 3, 0.2f),
                     tensor_text("C", {5}, 4));
}

std::vector<data::Feeds> seeded_samples(const ir::Model& m, int n) {
  std::vector<data::Feeds> s;
  for (int i = 0; i < n; ++i) s.push_back(data::random_feeds(m, {}, static_cast<uint64_t>(100 + i)));
  return s;
}

// Cosine similarity of the first output of `a` and `b` over `samples`.
double output_cosine(const ir::Model& a, const ir::Model& b, const std::vector<data::Feeds>& samples) {
  eval::Comparison c = eval::compare_outputs(eval::run_samples(a, samples, 1), eval::run_samples(b, samples, 1));
  return c.outputs.at(0).cosine.value();  // throws when undefined: the test fails
}

// Static quantization of the rewrite's mechanics: --target portable, so the small test graphs are quantized
// even where ONNX Runtime would run them faster in float (placement has its own tests).
quant::QuantizeSummary quantize_static(ir::Model& m, const std::vector<data::Feeds>& calib, quant::QuantizeConfig config) {
  config.mode = quant::Mode::Static;
  config.target = quant::Target::Portable;
  quant::CalibrationTable table = quant::calibrate(m, calib, {});
  return quant::quantize_model(m, config, &table);
}

// y = MatMul(x [rows, K], W [K, N]) at opset 13 with weights seeded by 8.
std::string matmul_text(int64_t rows, int64_t k, int64_t n) {
  return fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[{0},{1}] x) => (float[{0},{2}] y) <{3}> {{
  y = MatMul(x, W)
}})", rows, k, n, tensor_text("W", {k, n}, 8));
}

// y = MatMul(x [1, K], W) with W [K, N] replaced by exactly `w` (NaN and infinities included).
std::unique_ptr<ir::Model> matmul_with_weight(int64_t k, int64_t n, const std::vector<float>& w) {
  auto m = parse_model(matmul_text(1, k, n));
  ir::Value* old = m->graph().find_local("W");
  old->uses().front().node->set_input(1, rewrite::add_constant(m->graph(), "W", quant::make_float_tensor("", {k, n}, w)));
  rewrite::remove_unused_weights(m->graph(), {old});
  return m;
}

}  // namespace

TEST_CASE("quantization parameters follow ONNX Runtime's convention") {
  SUBCASE("uint8 asymmetric over a non-negative range: zero point 0") {
    quant::QuantParams p = quant::compute_params(0.0, 2.55, d::kUint8, false);
    CHECK(p.scale == doctest::Approx(0.01f));
    CHECK(p.zero_point == 0);
  }
  SUBCASE("the range always includes 0, so 0 is exact") {
    quant::QuantParams p = quant::compute_params(1.0, 2.0, d::kUint8, false);
    CHECK(p.zero_point == 0);
    CHECK(p.scale == doctest::Approx(2.0f / 255));
    quant::QuantParams n = quant::compute_params(-2.0, -1.0, d::kUint8, false);
    CHECK(n.zero_point == 255);
  }
  SUBCASE("int8 symmetric uses [-127, 127] and zero point 0") {
    quant::QuantParams p = quant::compute_params(-0.5, 1.27, d::kInt8, true);
    CHECK(p.zero_point == 0);
    CHECK(p.scale == doctest::Approx(1.27f / 127));
    CHECK(quant::quantize_value(-5.0f, p, quant::int_range(d::kInt8, true)) == -127);
  }
  SUBCASE("uint8 symmetric puts zero at 128") {
    CHECK(quant::compute_params(-1, 1, d::kUint8, true).zero_point == 128);
  }
  SUBCASE("an all-zero range gets scale 1 instead of dividing by zero") {
    quant::QuantParams p = quant::compute_params(0, 0, d::kInt8, true);
    CHECK(p.scale == 1.0f);
    CHECK(p.zero_point == 0);
  }
  SUBCASE("rounding is half to even") {
    quant::QuantParams p{1.0f, 0};
    CHECK(quant::quantize_value(2.5f, p, {-128, 127}) == 2);
    CHECK(quant::quantize_value(3.5f, p, {-128, 127}) == 4);
  }
  SUBCASE("per-channel weights get one scale per channel along the axis") {
    // [2, 3]: channel 0 = row 0 ([-1, 0.5, 0.25]), channel 1 = row 1 ([0.1, 0.2, -0.4]).
    const std::vector<float> values = {-1, 0.5f, 0.25f, 0.1f, 0.2f, -0.4f};
    quant::QuantizedWeight w = quant::quantize_weight(values, {2, 3}, d::kInt8, true, 0);
    REQUIRE(w.params.size() == 2);
    CHECK(w.params[0].scale == doctest::Approx(1.0f / 127));
    CHECK(w.params[1].scale == doctest::Approx(0.4f / 127));
    std::vector<int32_t> q;
    for (size_t i = 0; i < values.size(); ++i) q.push_back(w.value(i, d::kInt8));
    CHECK(q == std::vector<int32_t>{-127, 64, 32, 32, 64, -127});
  }
  SUBCASE("a weight split over threads: the same ranges and codes as quantize_value, on 1 and 2 threads") {
    // [300, 257] (big enough to be split; the split falls inside a row), per tensor and per channel along
    // either axis, with a NaN and exact ties.
    std::vector<float> values(300 * 257);
    std::mt19937 rng(3);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    for (float& v : values) v = gauss(rng);
    values[1000] = std::numeric_limits<float>::quiet_NaN();
    const int before = exec::thread_count();
    for (std::optional<int64_t> axis : {std::optional<int64_t>(), std::optional<int64_t>(0), std::optional<int64_t>(1)}) {
      for (int32_t qtype : {d::kInt8, d::kUint8}) {
        CAPTURE(axis.value_or(-1));
        CAPTURE(qtype);
        std::vector<std::string> codes;
        for (int threads : {1, 2}) {
          exec::set_thread_count(threads);
          const quant::QuantizedWeight w = quant::quantize_weight(values, {300, 257}, qtype, qtype == d::kInt8, axis);
          REQUIRE(w.params.size() == (axis ? (*axis == 0 ? 300u : 257u) : 1u));
          int64_t mismatches = 0;
          for (size_t i = 0; i < values.size(); ++i) {
            const size_t channel = !axis ? 0 : (*axis == 0 ? i / 257 : i % 257);
            const float x = values[i] == values[i] ? values[i] : 0.0f;
            mismatches += w.value(i, qtype) != quant::quantize_value(x, w.params[channel], quant::int_range(qtype, qtype == d::kInt8));
          }
          CHECK(mismatches == 0);
          codes.emplace_back(reinterpret_cast<const char*>(w.data.bytes()), values.size());
        }
        CHECK(codes[0] == codes[1]);
      }
    }
    exec::set_thread_count(before);
  }
}

namespace {

// A 2048-bin histogram over [0, absmax] of 200000 values, the i-th drawn by draw(i, rng, unit Gaussian).
template <typename Draw>
std::vector<double> histogram_of(double absmax, uint32_t seed, Draw&& draw) {
  const int bins = 2048;
  std::vector<double> hist(bins, 0.0);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  for (int i = 0; i < 200000; ++i) hist[std::min(bins - 1, static_cast<int>(draw(i, rng, normal) / absmax * bins))] += 1;
  return hist;
}

}  // namespace

TEST_CASE("calibration thresholds on a Gaussian histogram") {
  // |x| of a unit Gaussian with one far outlier at 40 sigma.
  const double absmax = 40.0;
  std::vector<double> hist = histogram_of(absmax, 7, [](int, auto& rng, auto& normal) { return std::fabs(normal(rng)); });
  hist.back() += 1;
  using M = quant::CalibrationMethod;
  CHECK(quant::choose_threshold(M::MinMax, hist, absmax, 0) == absmax);
  const double p = quant::choose_threshold(M::Percentile, hist, absmax, 99.0);
  CHECK(p == doctest::Approx(2.576).epsilon(0.03));  // the 99th percentile of |N(0,1)|
  const double kl = quant::choose_threshold(M::Entropy, hist, absmax, 0);
  const double mse = quant::choose_threshold(M::Mse, hist, absmax, 0);
  // Both clip the outliers and keep the bulk of the distribution.
  CHECK(kl > 2.0);
  CHECK(kl < 8.0);
  // Squared error: 2e5 rounding errors of (t/127)^2/12 against (40 - t)^2 for the outlier -> t near 13.
  CHECK(mse > 8.0);
  CHECK(mse < 20.0);
}

TEST_CASE("entropy calibration is not pulled to a tiny threshold by the exact zeros of a ReLU output") {
  // A sparse ReLU output: 90% of the values are exactly 0 (all in bin 0), the rest |N(0,1)|. Counted as it is,
  // the zero spike made the KL threshold clip the signal (digits_cnn with entropy: cosine 0.45).
  const double absmax = 5.0;
  const std::vector<double> hist =
      histogram_of(absmax, 11, [](int i, auto& rng, auto& normal) { return i % 10 == 0 ? std::fabs(normal(rng)) : 0.0; });
  const double kl = quant::choose_threshold(quant::CalibrationMethod::Entropy, hist, absmax, 0);
  CHECK(kl > 2.0);  // keeps the bulk of the positive half, like the plain Gaussian above
  CHECK(kl <= absmax);
}

TEST_CASE("static QDQ: structure, Relu folding, int32 bias, and outputs close to float") {
  auto original = parse_model(small_cnn());
  auto m = parse_model(small_cnn());
  auto calib = seeded_samples(*m, 8);
  quant::QuantizeConfig config;
  config.per_channel = true;
  quant::QuantizeSummary s = quantize_static(*m, calib, config);
  run(*m, "eliminate-dead-code");
  ir::verify_invariants(*m);
  CHECK(ir::run_onnx_checker(*m).status == ir::CheckResult::Status::Passed);
  // Conv, MaxPool, Flatten, Gemm quantized; the Relu is folded into the Conv's output range.
  CHECK(s.nodes_quantized() == 4);
  CHECK(count_op(*m, "Relu") == 0);
  CHECK(count_op(*m, "Conv") == 1);
  // Activation pairs: x, conv out, maxpool out, flatten out (Gemm's output is the graph output: float).
  CHECK(count_op(*m, "QuantizeLinear") == 4);
  // + weights (2) + biases (2).
  CHECK(count_op(*m, "DequantizeLinear") == 8);
  bool int32_bias = false;
  for (const ir::Value* v : m->graph().initializers()) int32_bias |= v->initializer()->dtype() == d::kInt32;
  CHECK(int32_bias);
  // The float weights are gone.
  for (const ir::Value* v : m->graph().initializers()) CHECK((v->initializer()->dtype() != d::kFloat || v->initializer()->numel() <= 5));
  CHECK(output_cosine(*original, *m, seeded_samples(*original, 3)) > 0.999);
}

TEST_CASE("static QDQ tensor-type: one activation in int16 (opset 21), inherited by value-moving operators, closer to float") {
  // x feeds a Conv whose output c has one huge channel (bias 400) that y does not read (G's columns for it are
  // 0): one uint8 scale over c's range leaves the channels y reads a few codes; int16 resolves them.
  std::string g_text = tensor_text("G", {5, 64}, 3, 0.2f);
  {
    std::vector<std::string> g_values;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-0.2f, 0.2f);
    for (int64_t i = 0; i < 5 * 64; ++i) g_values.push_back(i % 64 >= 32 && i % 64 < 48 ? "0" : fmt::format("{:.6f}", dist(rng)));
    g_text = fmt::format("float[5,64] G = {{{}}}", fmt::join(g_values, ", "));
  }
  const std::string text = fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2,3,8,8] x) => (float[2,5] y) <{}, float[4] B = {{0.1, -0.2, 400.0, 0.05}}, {}, {}> {{
  c = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, W, B)
  p = MaxPool <kernel_shape=[2,2], strides=[2,2]> (c)
  f = Flatten(p)
  y = Gemm <transB=1> (f, G, C)
}})", tensor_text("W", {4, 3, 3, 3}, 1), g_text, tensor_text("C", {5}, 4));
  auto original = parse_model(text);
  const std::vector<data::Feeds> calib = seeded_samples(*original, 8), held_out = seeded_samples(*original, 3);
  quant::QuantizeConfig config;
  auto int8 = parse_model(text);
  quantize_static(*int8, calib, config);

  config.activation_types = {{"c", d::kInt16}};
  auto m = parse_model(text);
  CHECK(quant::static_qdq_opset(config) == 21);
  CHECK(error_of([&] { quantize_static(*m, calib, config); }).find("QuantizeLinear/DequantizeLinear of 16-bit activations (opset 21)") !=
        std::string::npos);
  convert::convert_opset(*m, 21);
  const quant::QuantizeSummary s = quantize_static(*m, calib, config);
  std::map<std::string, std::string> types;
  for (const quant::TensorRecord& t : s.tensors) {
    if (t.role == "activation") types[t.name] = t.dtype;
  }
  CHECK(types.at("x") == "uint8");
  CHECK(types.at("c") == "int16");
  CHECK(types.at("p") == "int16");  // MaxPool and Flatten keep their input's parameters and type
  CHECK(types.at("f") == "int16");
  int64_t int16_zero_points = 0;
  for (const ir::Node* n : m->graph().nodes()) {
    if (n->is_op("QuantizeLinear")) int16_zero_points += n->input(2)->constant()->dtype() == d::kInt16;
  }
  CHECK(int16_zero_points == 3);
  CHECK(std::find(s.notes.begin(), s.notes.end(), "tensor-type overrides applied: 'c' int16") != s.notes.end());
  // A tensor's own symmetry: x symmetric uint8 (zero point 128) while the others stay asymmetric.
  config.activation_symmetry = {{"x", true}};
  auto sym = parse_model(text);
  convert::convert_opset(*sym, 21);
  const quant::QuantizeSummary ss = quantize_static(*sym, calib, config);
  for (const quant::TensorRecord& t : ss.tensors) {
    if (t.role != "activation") continue;
    CAPTURE(t.name);
    CHECK(t.symmetric == (t.name == "x"));
    if (t.name == "x") CHECK(t.zero_point.at(0) == 128);
  }
  CHECK(std::find(ss.notes.begin(), ss.notes.end(), "symmetry overrides applied: 'x' symmetric") != ss.notes.end());
  config.activation_symmetry.clear();
  ir::verify_invariants(*m);
  const double cos8 = output_cosine(*original, *int8, held_out), cos16 = output_cosine(*original, *m, held_out);
  CAPTURE(cos8);
  CAPTURE(cos16);
  MESSAGE("uint8 everywhere: cosine " << cos8 << "; c in int16: " << cos16);
  CHECK(cos16 > cos8);
  CHECK(cos16 > 0.9999);

  // A name that quantizes nothing is reported; in QOperator form (8-bit QLinear operators) the 16-bit nodes stay QDQ.
  config.activation_types = {{"c", d::kInt16}, {"y", d::kInt16}};
  auto unused = parse_model(text);
  convert::convert_opset(*unused, 21);
  const quant::QuantizeSummary su = quantize_static(*unused, calib, config);
  CHECK(std::any_of(su.warnings.begin(), su.warnings.end(), [](const std::string& w) { return w.find("tensor-type overrides not used") != std::string::npos && w.find("'y' int16") != std::string::npos; }));
  config.format = quant::Format::QOperator;
  auto qop = parse_model(text);
  convert::convert_opset(*qop, 21);
  const quant::QuantizeSummary sq = quantize_static(*qop, calib, config);
  CHECK(std::find(sq.notes.begin(), sq.notes.end(), "QOperator: 3 node(s) with 16-bit activations stay in QDQ form (QLinear operators are 8-bit)") != sq.notes.end());
  CHECK(count_op(*qop, "QLinearConv") == 0);  // Conv, MaxPool and Flatten write int16 tensors
  CHECK(output_cosine(*original, *qop, held_out) > 0.9999);
}

TEST_CASE("bias correction cancels the mean output shift of rounded weights, measured on held-out inputs") {
  // A Gemm without a bias on inputs with a large mean: rounding its weights to int8 shifts each output column by
  // about sum_k (W - W_q)[n, k] * mean(x_k), which the correction adds back as a bias.
  const std::string text = fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[8,64] x) => (float[8,6] y) <{}> {{
  y = Gemm <transB=1> (x, G)
}})",
                                       tensor_text("G", {6, 64}, 7, 0.5f));
  auto samples = [](uint32_t seed, int n) {  // x uniform in [3, 5): the mean is what the shift scales with
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(3.0f, 5.0f);
    std::vector<data::Feeds> out;
    for (int i = 0; i < n; ++i) {
      std::vector<float> v(8 * 64);
      for (float& f : v) f = dist(rng);
      out.push_back({{"x", exec::Array::vector(d::kFloat, v).reshaped({8, 64})}});
    }
    return out;
  };
  // The largest |mean over rows and samples of (quantized - float)| over the output columns.
  auto mean_shift = [](const ir::Model& original, const ir::Model& q, const std::vector<data::Feeds>& feeds) {
    std::vector<double> sum(6, 0.0);
    int64_t rows = 0;
    const eval::Outputs a = eval::run_samples(original, feeds, 1), b = eval::run_samples(q, feeds, 1);
    for (size_t s = 0; s < feeds.size(); ++s) {
      const exec::Array &fa = a.per_sample[s][0], &fb = b.per_sample[s][0];
      for (int64_t i = 0; i < fa.numel(); ++i) sum[static_cast<size_t>(i % 6)] += fb.data<float>()[i] - fa.data<float>()[i];
      rows += 8;
    }
    double worst = 0;
    for (double v : sum) worst = std::max(worst, std::fabs(v / static_cast<double>(rows)));
    return worst;
  };
  auto original = parse_model(text);
  const auto calib = samples(1, 16), held_out = samples(2, 16);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::Static;
  config.target = quant::Target::Portable;
  SUBCASE("weights per tensor") {}
  SUBCASE("weights per output channel") { config.per_channel = true; }

  auto plain = parse_model(text);
  const quant::CalibrationTable plain_table = quant::calibrate(*plain, calib, {});
  quant::QuantizeSummary ps = quant::quantize_model(*plain, config, &plain_table);
  CHECK(ps.biases_corrected == 0);

  config.bias_correction = true;
  auto corrected = parse_model(text);
  quant::CalibrationOptions options;
  options.channel_means_of = quant::bias_correction_inputs(*corrected, config);
  REQUIRE(options.channel_means_of == std::map<std::string, int64_t>{{"x", -1}});
  const quant::CalibrationTable table = quant::calibrate(*corrected, calib, options);
  REQUIRE(table.find("x")->channel_mean.size() == 64);
  CHECK(table.find("x")->channel_mean[0] == doctest::Approx(4.0).epsilon(0.05));
  quant::QuantizeSummary cs = quant::quantize_model(*corrected, config, &table);
  CHECK(cs.biases_corrected == 1);
  auto bias_warnings = [](const quant::QuantizeSummary& summary) {
    std::vector<std::string> found;
    for (const std::string& w : summary.warnings) {
      if (w.find("bias correction") != std::string::npos) found.push_back(w);
    }
    return found;
  };
  CHECK(bias_warnings(cs).empty());  // 128 calibration rows: no small-sample warning
  run(*corrected, "eliminate-dead-code");
  ir::verify_invariants(*corrected);
  // The Gemm got an int32 bias it did not have.
  const ir::Node* gemm = nullptr;
  for (const ir::Node* n : corrected->graph().nodes()) gemm = n->is_op("Gemm") ? n : gemm;
  REQUIRE(gemm != nullptr);
  REQUIRE(gemm->inputs().size() == 3);
  CHECK(gemm->input(2)->producer()->is_op("DequantizeLinear"));

  const double before = mean_shift(*original, *plain, held_out), after = mean_shift(*original, *corrected, held_out);
  INFO("mean output shift without correction " << before << ", with " << after);
  CHECK(before > 1e-3);
  CHECK(after < before / 3);
  CHECK(output_cosine(*original, *corrected, held_out) >= output_cosine(*original, *plain, held_out));

  SUBCASE("few calibration rows are warned about") {
    auto m = parse_model(text);
    const quant::CalibrationTable one = quant::calibrate(*m, samples(3, 1), options);
    quant::QuantizeSummary s = quant::quantize_model(*m, config, &one);
    const std::vector<std::string> found = bias_warnings(s);
    REQUIRE(found.size() == 1);
    CHECK(found[0].find("only 8 calibration row(s)") != std::string::npos);
  }
}

TEST_CASE("tensor-range overrides replace calibrated ranges, are reported, and say when they quantized nothing") {
  auto m = parse_model(small_cnn());
  const auto calib = seeded_samples(*m, 4);
  quant::CalibrationTable table = quant::calibrate(*m, calib, {});
  const double observed_max = table.find("x")->observed_max;
  // x gets [-4, 4]; p (MaxPool's output) inherits its input's parameters, so its override cannot apply.
  quant::apply_range_overrides(table, {{"x", -4.0, 4.0}, {"p", 0.0, 2.0}});
  CHECK(table.find("x")->overridden);
  CHECK(table.find("x")->observed_max == observed_max);  // what the samples produced is kept
  CHECK_FALSE(table.find("c")->overridden);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::Static;
  config.target = quant::Target::Portable;
  quant::QuantizeSummary s = quant::quantize_model(*m, config, &table);
  const quant::TensorRecord* x = nullptr;
  for (const quant::TensorRecord& t : s.tensors) x = t.name == "x" && t.role == "activation" ? &t : x;
  REQUIRE(x != nullptr);
  CHECK(x->method == "tensor-range");
  CHECK(x->scale.at(0) == doctest::Approx(8.0 / 255).epsilon(1e-6));  // uint8 asymmetric over [-4, 4]
  auto mentions = [](const std::vector<std::string>& lines, const std::string& text) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; });
  };
  CHECK(mentions(s.notes, "tensor-range overrides applied: 'x' [-4, 4]"));
  CHECK(mentions(s.warnings, "tensor-range overrides not used"));
  CHECK(mentions(s.warnings, "'p' [0, 2]"));

  SUBCASE("bad overrides are usage errors") {
    quant::CalibrationTable t = quant::calibrate(*parse_model(small_cnn()), calib, {});
    CHECK(error_of([&] { quant::apply_range_overrides(t, {{"nosuch", 0, 1}}); }).find("no float tensor named 'nosuch'") != std::string::npos);
    CHECK(error_of([&] { quant::apply_range_overrides(t, {{"x", 0, 1}, {"x", 0, 2}}); }).find("'x' is given twice") != std::string::npos);
    CHECK(error_of([] { data::parse_named_range("x=2:1", "tensor-range"); }).find("LO must not exceed HI") != std::string::npos);
    CHECK(error_of([] { data::parse_named_range("x=0:inf", "tensor-range"); }).find("is not a number") != std::string::npos);
  }
}

TEST_CASE("static QDQ leaves alone what it cannot prove: graph-output Relu, non-constant weights, excluded nodes") {
  SUBCASE("a Relu that is a graph output is not folded") {
    auto m = parse_model(fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,3,4,4] x) => (float[1,4,4,4] r) <{}> {{
  c = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, W)
  r = Relu(c)
}})", tensor_text("W", {4, 3, 3, 3}, 1)));
    quantize_static(*m, seeded_samples(*m, 2), {});
    CHECK(count_op(*m, "Relu") == 1);
  }
  SUBCASE("a Conv whose weight is an input") {
    auto m = parse_model(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,3,4,4] x, float[4,3,3,3] w) => (float[1,4,2,2] y) {
  y = Conv (x, w)
})");
    quant::QuantizeSummary s = quantize_static(*m, seeded_samples(*m, 2), {});
    CHECK(s.nodes_quantized() == 0);
    REQUIRE(s.skipped.size() == 1);
    CHECK(s.skipped[0].second == "its weight is not a constant");
    CHECK(count_op(*m, "QuantizeLinear") == 0);
  }
  SUBCASE("excluded by name and by op type, first and last layer") {
    quant::QuantizeConfig config;
    config.keep_first = true;
    config.keep_last = true;
    auto m = parse_model(small_cnn());
    quant::QuantizeSummary s = quantize_static(*m, seeded_samples(*m, 2), config);
    CHECK(s.nodes_quantized() == 0);  // MaxPool/Flatten follow an unquantized input
    CHECK(count_op(*m, "QuantizeLinear") == 0);
    config = {};
    config.exclude_op_types = {"Gemm"};
    auto m2 = parse_model(small_cnn());
    s = quantize_static(*m2, seeded_samples(*m2, 2), config);
    CHECK(s.nodes_quantized() == 3);
    CHECK(count_op(*m2, "Gemm") == 1);
  }
  SUBCASE("per-channel QDQ below opset 13 is refused unless upgraded") {
    quant::QuantizeConfig config;
    config.per_channel = true;
    auto m2 = parse_model(small_cnn(11));
    std::string e = error_of([&] { quantize_static(*m2, seeded_samples(*m2, 1), config); });
    CHECK(e.find("opset 13") != std::string::npos);
  }
}

TEST_CASE("ort-cpu placement keeps float the int8 regions whose conversions cost more than they save") {
  auto static_config = [](quant::Target target) {
    quant::QuantizeConfig c;
    c.mode = quant::Mode::Static;
    c.target = target;
    return c;
  };
  SUBCASE("a small CNN on two 8x8 images: one region, far too small") {
    auto m = parse_model(small_cnn());
    const quant::CalibrationTable table = quant::calibrate(*m, seeded_samples(*m, 2), {});
    CHECK(table.find("x")->elements == 2 * 3 * 8 * 8);
    quant::QuantizeSummary s = quant::quantize_model(*m, static_config(quant::Target::OrtCpu), &table);
    CHECK(s.nodes_quantized() == 0);
    CHECK(count_op(*m, "QuantizeLinear") == 0);
    // Conv, MaxPool, Flatten and Gemm are one region: the Relu the QDQ writer would fold joins it.
    REQUIRE(s.regions.size() == 1);
    const quant::RegionRecord& r = s.regions[0];
    CHECK(r.nodes.size() == 4);
    CHECK(r.kept_float);
    // Conv: 2*4*8*8 outputs x 27; Gemm: 2*5 outputs x 64, counted half.
    CHECK(r.multiply_adds == 512 * 27 + 10 * 64 / quant::kMatMulSavingsDivisor);
    CHECK(r.converted_values == 384 + 10);  // x in, y out
    CHECK(r.border_tensors == 2);
    CHECK(r.cost == quant::kMultiplyAddsPerConvertedValue * 394 + quant::kMultiplyAddsPerInt8Node * (4 + 2));
    REQUIRE(s.skipped.size() == 4);
    for (const auto& [node, why] : s.skipped) CHECK(why.find("--target portable quantizes it anyway") != std::string::npos);
    CHECK(quant::to_json(s).at("regions").at(0).at("kept_float") == true);
    // Portable quantizes it all and records no regions.
    auto p = parse_model(small_cnn());
    quant::QuantizeSummary all = quant::quantize_model(*p, static_config(quant::Target::Portable), &table);
    CHECK(all.nodes_quantized() == 4);
    CHECK(all.regions.empty());
  }
  SUBCASE("two 64-channel Convs on 16x16: deep reductions pay for their two border conversions") {
    auto m = parse_model(fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,64,16,16] x) => (float[1,64,16,16] r2) <{}, {}> {{
  c1 = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, W1)
  r1 = Relu(c1)
  c2 = Conv <kernel_shape=[1,1]> (r1, W2)
  r2 = Relu(c2)
}})", tensor_text("W1", {64, 64, 3, 3}, 5, 0.05f), tensor_text("W2", {64, 64, 1, 1}, 6, 0.1f)));
    const quant::CalibrationTable table = quant::calibrate(*m, seeded_samples(*m, 2), {});
    quant::QuantizeSummary s = quant::quantize_model(*m, static_config(quant::Target::OrtCpu), &table);
    REQUIRE(s.regions.size() == 1);
    const quant::RegionRecord& r = s.regions[0];
    CHECK(!r.kept_float);
    CHECK(r.multiply_adds == 16384 * 576 + 16384 * 64);
    CHECK(r.converted_values == 16384 * 2);  // x in; c2 out (the Relu after it is a graph output: not folded)
    CHECK(s.nodes_quantized() == 2);
    CHECK(count_op(*m, "QuantizeLinear") == 3);  // x, r1 (folded into c1's output), c2
  }
}

TEST_CASE("QOperator: QDQ patterns fuse into QLinearConv and integer MaxPool with the same outputs") {
  auto qdq = parse_model(small_cnn());
  auto qop = parse_model(small_cnn());
  auto calib = seeded_samples(*qdq, 4);
  quantize_static(*qdq, calib, {});
  quant::QuantizeConfig config;
  config.format = quant::Format::QOperator;
  quant::QuantizeSummary s = quantize_static(*qop, calib, config);
  run(*qop, "eliminate-dead-code");
  ir::verify_invariants(*qop);
  CHECK(count_op(*qop, "QLinearConv") == 1);
  CHECK(count_op(*qop, "Conv") == 0);
  CHECK(count_op(*qop, "Gemm") == 1);  // no integer Gemm in ONNX: stays QDQ
  CHECK(count_op(*qop, "MaxPool") == 1);
  // Integer execution against the QDQ simulation: off by at most a quantization step here and there.
  CHECK(output_cosine(*qdq, *qop, seeded_samples(*qdq, 2)) > 0.9999);
}

TEST_CASE("dynamic: MatMul and Gemm become MatMulInteger with run-time activation quantization") {
  const std::string text = fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[4,16] x) => (float[4,6] y) <{}, {}, {}> {{
  h = MatMul(x, A)
  y = Gemm <transB=1, alpha=0.5, beta=2.0> (h, G, C)
}})", tensor_text("A", {16, 8}, 5), tensor_text("G", {6, 8}, 6), tensor_text("C", {6}, 7));
  for (bool per_channel : {false, true}) {
    CAPTURE(per_channel);
    auto original = parse_model(text);
    auto m = parse_model(text);
    quant::QuantizeConfig config;
    config.per_channel = per_channel;
    quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
    ir::verify_invariants(*m);
    CHECK(s.nodes_quantized() == 2);
    CHECK(count_op(*m, "MatMulInteger") == 2);
    CHECK(count_op(*m, "DynamicQuantizeLinear") == 2);
    CHECK(count_op(*m, "MatMul") == 0);
    CHECK(count_op(*m, "Gemm") == 0);
    CHECK(m->graph().outputs()[0]->name() == "y");
    CHECK(output_cosine(*original, *m, seeded_samples(*original, 3)) > 0.999);
  }
}

TEST_CASE("weight-only: MatMulNBits blocks of 4 and 8 bits, symmetric and asymmetric, K not a multiple of the block") {
  const std::string text = matmul_text(3, 70, 9);
  for (int bits : {4, 8}) {
    for (bool symmetric : {true, false}) {
      CAPTURE(bits);
      CAPTURE(symmetric);
      auto original = parse_model(text);
      auto m = parse_model(text);
      quant::QuantizeConfig config;
      config.mode = quant::Mode::WeightOnly;
      config.bits = bits;
      config.block_size = 32;
      config.symmetric_weights = symmetric;
      quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
      CHECK(s.nodes_quantized() == 1);
      CHECK(count_op(*m, "MatMulNBits") == 1);
      CHECK(m->opset("com.microsoft") == 1);
      const double cos = output_cosine(*original, *m, seeded_samples(*original, 2));
      CHECK(cos > (bits == 4 ? 0.99 : 0.9999));
    }
  }
}

TEST_CASE("weight-only format=qdq: blocked DequantizeLinear (opset 21) with the MatMulNBits form's codes and outputs") {
  // K = 70: two whole blocks of 32 and a short last one of 6; N = 9 makes the 4-bit weight an odd number of nibbles.
  const std::string text = matmul_text(3, 70, 9);
  for (int bits : {4, 8}) {
    for (bool symmetric : {true, false}) {
      CAPTURE(bits);
      CAPTURE(symmetric);
      quant::QuantizeConfig config;
      config.mode = quant::Mode::WeightOnly;
      config.bits = bits;
      config.block_size = 32;
      config.symmetric_weights = symmetric;
      auto nbits = parse_model(text);
      config.format = quant::Format::QOperator;
      quant::quantize_model(*nbits, config, nullptr);
      auto m = parse_model(text);
      config.format = quant::Format::QDQ;
      CHECK(error_of([&] { quant::quantize_model(*m, config, nullptr); }).find("blocked DequantizeLinear (opset 21); the model imports opset 13") != std::string::npos);
      convert::convert_opset(*m, 21);
      quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
      REQUIRE(s.nodes_quantized() == 1);
      CHECK(count_op(*m, "MatMulNBits") == 0);
      CHECK(m->opset("com.microsoft") == 0);
      REQUIRE(count_op(*m, "DequantizeLinear") == 1);
      const ir::Node* dq = m->graph().nodes().front();
      REQUIRE(dq->is_op("DequantizeLinear"));
      CHECK(dq->attribute_int("axis") == 0);
      CHECK(dq->attribute_int("block_size") == 32);
      const ir::Tensor* q = dq->input(0)->constant();
      const int32_t qtype = bits == 4 ? (symmetric ? d::kInt4 : d::kUint4) : (symmetric ? d::kInt8 : d::kUint8);
      CHECK(q->dtype() == qtype);
      CHECK(q->dims() == std::vector<int64_t>{70, 9});
      CHECK(q->data().size() == (bits == 4 ? 315u : 630u));  // 630 values, two per byte at 4 bits
      CHECK(dq->input(1)->constant()->dims() == std::vector<int64_t>{3, 9});
      CHECK((dq->input(2) != nullptr) == !symmetric);
      CHECK(s.tensors.at(0).dtype.find("blocked DequantizeLinear") != std::string::npos);
      // The same codes as the MatMulNBits form: the outputs agree up to float summation order.
      const std::vector<data::Feeds> samples = seeded_samples(*m, 2);
      const eval::Outputs a = eval::run_samples(*nbits, samples, 1), b = eval::run_samples(*m, samples, 1);
      for (size_t i = 0; i < samples.size(); ++i) CHECK(scaled_max_diff(a.per_sample[i][0], b.per_sample[i][0]) <= 1e-5);
      CHECK(output_cosine(*parse_model(text), *m, samples) > (bits == 4 ? 0.99 : 0.9999));
    }
  }
  // Symmetric int4 codes are the signed values: W's largest |value| in a block is +-7 and no code is -8.
  auto m = parse_model(text);
  convert::convert_opset(*m, 21);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  config.format = quant::Format::QDQ;
  quant::quantize_model(*m, config, nullptr);
  REQUIRE(m->graph().nodes().front()->is_op("DequantizeLinear"));
  const exec::Array codes = exec::Array::from_tensor(*m->graph().nodes().front()->input(0)->constant());
  CHECK(codes.dtype() == d::kInt8);  // held widened
  int lo = 0, hi = 0;
  for (int64_t i = 0; i < codes.numel(); ++i) {
    lo = std::min<int>(lo, codes.data<int8_t>()[i]);
    hi = std::max<int>(hi, codes.data<int8_t>()[i]);
  }
  CHECK(lo == -7);
  CHECK(hi == 7);
}

TEST_CASE("weight-only block-search=mse: a block's outlier is clipped when that lowers the squared error, never raises it") {
  // Column 0: Gaussian weights, whose few large values make the full range coarse for the rest; column 1:
  // values on the full range's own grid (multiples of 1/7, +-1 in each block), which the search must keep.
  std::vector<float> w(64 * 2);
  std::mt19937 rng(11);
  std::normal_distribution<float> gauss(0.0f, 0.3f);
  for (int64_t i = 0; i < 64; ++i) {
    w[static_cast<size_t>(i * 2)] = gauss(rng);
    w[static_cast<size_t>(i * 2 + 1)] = static_cast<float>(i % 15 - 7) / 7.0f;
  }
  float full_scale[2] = {0, 0};  // column 0's full-range scale per block
  for (int64_t i = 0; i < 64; ++i) full_scale[i / 32] = std::max(full_scale[i / 32], std::fabs(w[static_cast<size_t>(i * 2)]) / 7.0f);
  auto build = [&] { return matmul_with_weight(64, 2, w); };
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  config.block_size = 32;
  auto plain = build();
  CHECK_FALSE(quant::quantize_model(*plain, config, nullptr).weight_error);  // measured only when searching
  config.block_search = true;
  auto searched = build();
  const quant::QuantizeSummary s = quant::quantize_model(*searched, config, nullptr);
  REQUIRE(s.weight_error);
  CHECK(s.weight_error->second < s.weight_error->first);
  CHECK(s.tensors.at(0).method == "mse-searched range, symmetric blocks");
  const std::vector<float>& scales = s.tensors.at(0).scale;  // MatMulNBits order: [N, blocks]
  REQUIRE(scales.size() == 4);
  CHECK((scales[0] < full_scale[0] || scales[1] < full_scale[1]));  // column 0: some large weight clipped
  CHECK(scales[2] == doctest::Approx(1.0f / 7.0f));  // column 1: the full range, exact already (error 0)
  CHECK(scales[3] == doctest::Approx(1.0f / 7.0f));
}

TEST_CASE("weight-only: MatMulNBits codes are a scalar reference's (half to even, clamped), the same on 1 and 2 threads") {
  // K = 200 (six blocks of 32 and one of 8), N = 331 (odd, several 64-column tiles; big enough to go
  // parallel). Columns 0-9 hold exact ties: their largest |w| is 1.75, so the symmetric 4-bit scale is 0.25
  // and (j + 0.5) * 0.25 / 0.25 is a half.
  const int64_t k = 200, n = 331, blocks = 7, zp_row = 4;
  std::vector<float> w(static_cast<size_t>(k * n));
  std::mt19937 rng(5);
  std::normal_distribution<float> gauss(0.0f, 0.4f);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t c = 0; c < n; ++c)
      w[static_cast<size_t>(i * n + c)] = c < 10 ? (i % 32 == 0 ? 1.75f : (static_cast<float>(i % 14) - 6.5f) * 0.25f) : gauss(rng);
  }
  const int before = exec::thread_count();
  for (bool symmetric : {true, false}) {
    CAPTURE(symmetric);
    std::string bytes[2];
    for (int threads : {1, 2}) {
      exec::set_thread_count(threads);
      auto m = matmul_with_weight(k, n, w);
      quant::QuantizeConfig config;
      config.mode = quant::Mode::WeightOnly;
      config.block_size = 32;
      config.symmetric_weights = symmetric;
      REQUIRE(quant::quantize_model(*m, config, nullptr).nodes_quantized() == 1);
      const ir::Node* mm = nullptr;
      for (const ir::Node* node : m->graph().nodes()) {
        if (node->op_type() == "MatMulNBits") mm = node;
      }
      REQUIRE(mm != nullptr);
      const ir::Bytes packed = mm->input(1)->constant()->data();  // [N, blocks, 16 bytes]
      REQUIRE(packed.size() == static_cast<size_t>(n * blocks * 16));
      const exec::Array scales = exec::Array::from_tensor(*mm->input(2)->constant());  // [N * blocks]
      std::vector<int> zero_points(static_cast<size_t>(n * blocks), 8);
      if (!symmetric) {
        const ir::Bytes zp = mm->input(3)->constant()->data();  // [N, zp_row bytes]: two blocks per byte
        for (int64_t c = 0; c < n; ++c) {
          for (int64_t b = 0; b < blocks; ++b)
            zero_points[static_cast<size_t>(c * blocks + b)] = (static_cast<int>(zp.data()[c * zp_row + b / 2]) >> ((b % 2) * 4)) & 0xf;
        }
      }
      int64_t ties = 0;
      for (int64_t c = 0; c < n; ++c) {
        for (int64_t i = 0; i < blocks * 32; ++i) {  // K padded to whole blocks
          const int64_t b = i / 32;
          const int code = (static_cast<int>(packed.data()[(c * blocks + b) * 16 + (i % 32) / 2]) >> ((i % 2) * 4)) & 0xf;
          if (i >= k) {
            CHECK(code == 0);
            continue;
          }
          const float scale = scales.data<float>()[c * blocks + b];
          const float q = w[static_cast<size_t>(i * n + c)] / scale;
          ties += q - std::floor(q) == 0.5f;
          const int expected = std::clamp(static_cast<int>(std::nearbyint(q)) + zero_points[static_cast<size_t>(c * blocks + b)], 0, 15);
          if (code != expected) FAIL_CHECK("column " << c << " row " << i << ": code " << code << ", expected " << expected);
        }
      }
      if (symmetric) CHECK(ties > 100);
      bytes[threads - 1] = std::string(reinterpret_cast<const char*>(packed.data()), packed.size());
    }
    CHECK(bytes[0] == bytes[1]);
  }
  exec::set_thread_count(before);
}

TEST_CASE("weight-only: a NaN weight gets the code of zero and an infinite one zeroes its block, without undefined conversions") {
  // W[0][0] is NaN, W[0][1] infinite: before, their codes came from casting NaN to an integer (UB).
  std::vector<float> w(32 * 2, 0.3f);
  w[0] = std::numeric_limits<float>::quiet_NaN();
  w[1] = std::numeric_limits<float>::infinity();
  w[2] = -0.5f;
  auto m = matmul_with_weight(32, 2, w);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  config.bits = 4;
  config.block_size = 32;
  quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
  REQUIRE(s.nodes_quantized() == 1);
  const ir::Node* mm = nullptr;
  for (const ir::Node* node : m->graph().nodes()) {
    if (node->op_type() == "MatMulNBits") mm = node;
  }
  REQUIRE(mm != nullptr);
  const ir::Bytes packed = mm->input(1)->constant()->data();  // [N=2, blocks=1, 16 bytes]
  REQUIRE(packed.size() == 32);
  const auto code = [&](int64_t col, int64_t k) {
    return (static_cast<int>(packed.data()[col * 16 + k / 2]) >> ((k % 2) * 4)) & 0xf;
  };
  // Column 0: NaN, -0.5, then 0.3s; scale 0.5 / 7 (NaN takes no part in the range).
  CHECK(code(0, 0) == 8);   // NaN -> zero (symmetric 4-bit codes are offset by 8)
  CHECK(code(0, 1) == 1);   // -0.5 -> -7
  CHECK(code(0, 2) == 12);  // 0.3 -> 4.2 -> 4
  for (int64_t k = 0; k < 32; ++k) CHECK(code(1, k) == 8);  // an infinite scale: every value of column 1 reads as zero
}

TEST_CASE("weight-only: embedding Gathers become int8 rows with a scale each; shared tables and index Gathers stay") {
  // E: an embedding (quantized). U: read by two Gathers (one int8 table for both). T: also read by a
  // ReduceSum, so quantizing it would keep a float copy (left alone, with the reason). The Shape -> Gather is
  // index arithmetic, not a weight (not mentioned).
  const std::string text = fmt::format(R"(<ir_version: 8, opset_import: ["" : 13]>
g (int64[2,3] ids) => (float[2,3,8] y, float[2,3,4] u1, float[3,4] u2, float[2,3,4] t, float t_sum, int64 d) <{}, {}, {}, int64[1] i0 = {{2}}> {{
  y = Gather(E, ids)
  u1 = Gather(U, ids)
  row = Slice(ids, i0, i0)
  first = Squeeze(row)
  u2 = Gather(U, first)
  t = Gather(T, ids)
  t_sum = ReduceSum <keepdims=0> (T)
  shape = Shape(y)
  d = Gather(shape, i0)
}})",
                                       tensor_text("E", {16, 8}, 21, 3.0f), tensor_text("U", {16, 4}, 22), tensor_text("T", {16, 4}, 23));
  auto original = parse_model(text);
  auto m = parse_model(text);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
  run(*m, "eliminate-dead-code");
  ir::verify_invariants(*m);
  CHECK(ir::run_onnx_checker(*m).status == ir::CheckResult::Status::Passed);
  CHECK(s.nodes_quantized() == 3);  // y, u1, u2
  REQUIRE(s.skipped.size() == 1);
  CHECK(s.skipped[0].second.find("also read by other operators") != std::string::npos);
  int64_t int8_tables = 0, float_tables = 0;
  for (const ir::Value* v : m->graph().initializers()) {
    const ir::Tensor& t = *v->initializer();
    if (t.dtype() == d::kInt8) ++int8_tables;
    if (t.dtype() == d::kFloat && t.dims().size() == 2 && t.dims()[1] > 1) ++float_tables;
  }
  CHECK(int8_tables == 2);   // E and U, U once for its two Gathers
  CHECK(float_tables == 1);  // T
  CHECK(count_op(*m, "Cast") == 3);
  CHECK(count_op(*m, "Mul") == 3);

  // Every value is within half a step (max|row| / 254) of the float one, at any index, negative ones included.
  std::vector<int64_t> ids = {0, 15, 7, -1, 3, -16};
  data::Feeds feeds = {{"ids", exec::Array::vector(d::kInt64, ids).reshaped({2, 3})}};
  const eval::Outputs a = eval::run_samples(*original, {feeds}, 1), b = eval::run_samples(*m, {feeds}, 1);
  const exec::Array &fy = a.per_sample[0][0], &qy = b.per_sample[0][0];
  auto e = original->graph().find_local("E")->constant();
  exec::Array table = exec::Array::from_tensor(*e);
  for (int64_t r = 0; r < 6; ++r) {
    const int64_t row = ids[static_cast<size_t>(r)] < 0 ? ids[static_cast<size_t>(r)] + 16 : ids[static_cast<size_t>(r)];
    float absmax = 0;
    for (int64_t c = 0; c < 8; ++c) absmax = std::max(absmax, std::fabs(table.data<float>()[row * 8 + c]));
    for (int64_t c = 0; c < 8; ++c) {
      const float want = fy.data<float>()[r * 8 + c], got = qy.data<float>()[r * 8 + c];
      CHECK(std::fabs(got - want) <= absmax / 254.0f * 1.0001f + 1e-7f);
    }
  }
  CHECK(output_cosine(*original, *m, {feeds}) > 0.9999);
  // T was left float: its Gather and ReduceSum give exactly what they gave; so does the index Gather.
  for (size_t o : {3, 4, 5}) CHECK(a.per_sample[0][o].to_doubles() == b.per_sample[0][o].to_doubles());

  SUBCASE("a table with a NaN is left alone, with the reason") {
    auto n = parse_model(R"(<ir_version: 8, opset_import: ["" : 13]>
g (int64[2] ids) => (float[2,2] y) <float[3,2] N = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}> {
  y = Gather(N, ids)
})");
    // ONNX's text syntax has no NaN literal: the Gather reads a table with one instead.
    ir::Node* gather = n->graph().find_local("y")->producer();
    gather->set_input(0, rewrite::add_constant(n->graph(), "N_nan", quant::make_float_tensor("", {3, 2}, {1, 2, 3, NAN, 5, 6})));
    run(*n, "eliminate-dead-code");
    quant::QuantizeSummary ns = quant::quantize_model(*n, config, nullptr);
    CHECK(ns.nodes_quantized() == 0);
    REQUIRE(ns.skipped.size() == 1);
    CHECK(ns.skipped[0].second == "its table holds NaN or infinite values");
    CHECK(count_op(*n, "Cast") == 0);
  }

  SUBCASE("other modes leave Gathers alone, and --op-types Gather selects only them") {
    auto dyn = parse_model(text);
    quant::QuantizeConfig c;
    c.op_types = {"Gather"};
    CHECK(error_of([&] { quant::quantize_model(*dyn, c, nullptr); }).find("not supported: quantizing Gather in dynamic mode") != std::string::npos);
    c.mode = quant::Mode::WeightOnly;
    CHECK(quant::quantize_model(*dyn, c, nullptr).nodes_quantized() == 3);
  }
}

TEST_CASE("quantization refuses bad configurations clearly") {
  auto m = parse_model(small_cnn());
  quant::QuantizeConfig config;
  config.op_types = {"Softmax"};
  CHECK(error_of([&] { quant::quantize_model(*m, config, nullptr); }).find("not supported: quantizing Softmax in dynamic mode") != std::string::npos);
  config = {};
  config.mode = quant::Mode::Static;
  CHECK(error_of([&] { quant::quantize_model(*m, config, nullptr); }).find("needs calibration data") != std::string::npos);
  config = {};
  config.mode = quant::Mode::WeightOnly;
  config.bits = 3;
  CHECK(error_of([&] { quant::quantize_model(*m, config, nullptr); }).find("--bits 4 or 8") != std::string::npos);
  CHECK(error_of([] { quant::parse_calibration_method("kl"); }).find("unknown calibration method 'kl'") != std::string::npos);
}

// ---------------------------------------------------------------- real models (quality bar)

namespace {

struct Measured {
  eval::Comparison comparison;
  double weight_ratio;  // parameter bytes after / before
};

Measured quantize_real(const std::string& model, const std::string& pipeline, const std::string& data,
                       const std::string& labels = "") {
  auto original = io::load_model(kModels / model);
  auto m = io::load_model(kModels / model);
  const uint64_t before = report::collect_stats(*m).parameter_bytes;
  run(*m, pipeline);
  ir::verify_invariants(*m);
  eval::Evaluation e;
  e.samples = data::load_samples(*original, (kModels / data).string());
  e.reference = eval::run_samples(*original, e.samples);
  if (!labels.empty()) e.labels = data::read_npy((kModels / labels).string());
  return {e.evaluate(*m), static_cast<double>(report::collect_stats(*m).parameter_bytes) / static_cast<double>(before)};
}

}  // namespace

TEST_CASE("real models: accuracy and size after quantization" * doctest::skip(!fs::exists(kModels))) {
  const std::string calib = (kModels / "trained/digits_train_x.npy").string();
  SUBCASE("digits_cnn static int8: labelled drop <= 1 point, weights <= 0.27x") {
    Measured r = quantize_real("trained/digits_cnn.onnx", "quantize(mode=static,target=portable,data=\"" + calib + "\"),eliminate-dead-code",
                               "trained/digits_test_x.npy", "trained/digits_test_y.npy");
    REQUIRE(r.comparison.labels);
    CHECK(r.comparison.labels->drop() * 100 <= 1.0);
    CHECK(r.weight_ratio <= 0.27);
  }
  SUBCASE("digits_mlp and digits_vit dynamic int8: drop <= 1 point") {
    Measured mlp = quantize_real("trained/digits_mlp.onnx", "quantize,eliminate-dead-code", "trained/digits_test_xflat.npy",
                                 "trained/digits_test_y.npy");
    CHECK(mlp.comparison.labels->drop() * 100 <= 1.0);
    CHECK(mlp.weight_ratio <= 0.27);
    Measured vit = quantize_real("trained/digits_vit.onnx", "quantize,eliminate-dead-code", "trained/digits_test_x.npy",
                                 "trained/digits_test_y.npy");
    CHECK(vit.comparison.labels->drop() * 100 <= 1.0);
  }
  SUBCASE("digits_vit int4 weight-only: MatMul weights <= 0.16x, drop <= 2 points") {
    auto m = io::load_model(kModels / "trained/digits_vit.onnx");
    uint64_t matmul_before = 0;
    for (const ir::Node* n : m->graph().nodes()) {
      if (n->is_op("MatMul") && n->input(1)->constant()) matmul_before += n->input(1)->constant()->nbytes();
    }
    quant::QuantizeConfig config;
    config.mode = quant::Mode::WeightOnly;
    quant::QuantizeSummary s = quant::quantize_model(*m, config, nullptr);
    uint64_t matmul_after = 0;
    for (const ir::Node* n : m->graph().nodes()) {
      if (n->op_type() != "MatMulNBits") continue;
      for (size_t i = 1; i < n->inputs().size(); ++i) matmul_after += n->input(i)->constant()->nbytes();
    }
    CHECK(s.nodes_quantized() > 0);
    CHECK(static_cast<double>(matmul_after) / static_cast<double>(matmul_before) <= 0.16);
    Measured r = quantize_real("trained/digits_vit.onnx", "quantize(mode=weight-only),eliminate-dead-code", "trained/digits_test_x.npy",
                               "trained/digits_test_y.npy");
    CHECK(r.comparison.labels->drop() * 100 <= 2.0);
    // The mse block search: 11% less weight rounding error (0.0917 -> 0.0816), and outputs closer to float
    // (cosine 0.99204 -> 0.99342 on the 360 test digits).
    auto searched = io::load_model(kModels / "trained/digits_vit.onnx");
    config.block_search = true;
    const quant::QuantizeSummary ss = quant::quantize_model(*searched, config, nullptr);
    REQUIRE(ss.weight_error);
    CHECK(ss.weight_error->second < 0.95 * ss.weight_error->first);
    Measured rs = quantize_real("trained/digits_vit.onnx", "quantize(mode=weight-only,block-search=mse),eliminate-dead-code",
                                "trained/digits_test_x.npy", "trained/digits_test_y.npy");
    CHECK(rs.comparison.outputs.at(0).cosine.value() > r.comparison.outputs.at(0).cosine.value());
    CHECK(rs.comparison.labels->drop() * 100 <= 2.0);
  }
  SUBCASE("squeezenet (opset 7) static int8 per-channel: still tench and tabby") {
    for (const char* image : {"squeezenet_fish_fp32", "squeezenet_kitten_224_fp32"}) {
      CAPTURE(image);
      const std::string data = (kModels / "vision/inputs" / image).string();
      Measured r = quantize_real("vision/squeezenet1.1_fp32.onnx",
                                 "quantize(mode=static,per-channel=true,data=\"" + data + "\"),eliminate-dead-code",
                                 std::string("vision/inputs/") + image);
      CHECK(r.comparison.outputs.at(0).top1_agreement == 1.0);
      CHECK(r.weight_ratio <= 0.27);
    }
  }
}

TEST_CASE("accuracy-aware fallback keeps the most sensitive layers float until the target holds" * doctest::skip(!fs::exists(kModels))) {
  // int4 weights cost digits_vit a little accuracy; a target of 0 points forces the fallback to act.
  auto m = io::load_model(kModels / "trained/digits_vit.onnx");
  eval::Evaluation e;
  e.samples = data::load_samples(*m, (kModels / "trained/digits_test_x.npy").string());
  e.reference = eval::run_samples(*m, e.samples);
  e.labels = data::read_npy((kModels / "trained/digits_test_y.npy").string());
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  quant::FallbackTarget target;
  target.max_drop = 0.0;
  quant::FallbackResult r = quant::accuracy_aware_exclusions(*m, config, nullptr, e, target);
  CHECK(*r.initial.drop > 0);
  CHECK(*r.final_score.drop <= 0.0 + 1e-9);
  CHECK(!r.kept_float.empty());
  const size_t layers = r.sensitivity.size();
  CHECK(layers == 9);
  // Bounded: one full run, one per layer, a binary search over the count.
  CHECK(r.evaluations <= 1 + static_cast<int>(layers) + static_cast<int>(std::ceil(std::log2(layers))) + 1);
  for (size_t i = 1; i < layers; ++i) CHECK(r.sensitivity[i - 1].second >= r.sensitivity[i].second);
  // Deterministic.
  quant::FallbackResult again = quant::accuracy_aware_exclusions(*m, config, nullptr, e, target);
  CHECK(again.kept_float == r.kept_float);
}

TEST_CASE("accuracy-aware fallback towards a cosine: no labels needed, the lowest output cosine must reach the target" *
          doctest::skip(!fs::exists(kModels))) {
  auto m = io::load_model(kModels / "trained/digits_vit.onnx");
  eval::Evaluation e;
  e.samples = data::load_samples(*m, (kModels / "trained/digits_test_x.npy").string());
  e.reference = eval::run_samples(*m, e.samples);
  quant::QuantizeConfig config;
  config.mode = quant::Mode::WeightOnly;
  quant::FallbackTarget target;
  target.min_cosine = 0.999;  // int4 weights alone give about 0.992
  quant::FallbackResult r = quant::accuracy_aware_exclusions(*m, config, nullptr, e, target);
  REQUIRE(r.initial.cosine);
  CHECK(*r.initial.cosine < 0.999);
  CHECK(!r.initial.drop);  // no drop measured: no labels asked for
  REQUIRE(r.final_score.cosine);
  CHECK(*r.final_score.cosine >= 0.999);
  CHECK(r.final_score.meets(target));
  CHECK(!r.kept_float.empty());
  CHECK(r.kept_float.size() < r.sensitivity.size());  // not simply everything
  const nlohmann::json j = r.to_json();
  CHECK(j["met"] == true);
  CHECK(j["target_cosine"] == 0.999);
  CHECK(!j.contains("target_drop_pp"));
  // A score with an undefined cosine never meets a cosine target.
  quant::FallbackScore undefined;
  CHECK(!undefined.meets(target));
}

TEST_CASE("the weight layout names output and reduction axes; per-channel scales lie along the output channels") {
  const auto matmul = parse_model(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2,3,4] x) => (float[2,3,5] y) {
  w = RandomNormal <shape=[2,4,5], seed=1.0> ()
  y = MatMul(x, w)
})");
  const ir::Node* node = nullptr;
  for (const ir::Node* n : matmul->graph().nodes()) node = n->is_op("MatMul") ? n : node;
  REQUIRE(node != nullptr);
  const std::optional<rewrite::WeightLayout> three = rewrite::weight_layout(*node, 3), two = rewrite::weight_layout(*node, 2);
  REQUIRE((three && two));
  CHECK(three->output_axis == 2);
  CHECK(three->reduction_axis == 1);
  CHECK(two->output_axis == 1);
  CHECK(!rewrite::weight_layout(*node, 1));
  auto m = parse_model(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[3,4] x) => (float[3,5] y) <float[4,5] w = {)" + [] {
    std::string v;
    for (int i = 0; i < 20; ++i) v += (i ? ", " : "") + std::to_string((i % 7) * 0.25 - 0.6);
    return v;
  }() + R"(}> {
  y = MatMul(x, w)
})");
  quant::QuantizeConfig config;
  config.per_channel = true;
  const quant::QuantizeSummary s = quantize_static(*m, seeded_samples(*m, 4), config);
  CHECK(s.nodes_quantized() == 1);
  const ir::Node* dq = nullptr;
  for (const ir::Node* n : m->graph().nodes()) {
    if (n->is_op("DequantizeLinear") && n->input(0)->constant() && n->input(0)->constant()->dims().size() == 2) dq = n;
  }
  REQUIRE(dq != nullptr);
  CHECK(dq->attribute_int("axis") == std::optional<int64_t>(1));
  CHECK(dq->input(1)->constant()->dims() == std::vector<int64_t>{5});
}
