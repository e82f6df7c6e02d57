// Accuracy you can trust: metrics that cannot lie (new NaN/Inf, near-zero outputs, collapses), the
// DEGRADED verdict, classifier selection, random-feed overrides checked against the model, calibration
// hold-out, verdicts refused on random data nobody asked for, and commands that did not do their job.
#include <doctest/doctest.h>

#include <cmath>

#include "data/npy.h"
#include "driver/optimize.h"
#include "eval/layers.h"
#include "helpers.h"

using namespace mopt;
using namespace mopt::test;
namespace d = ir::dtype;

namespace {

eval::Outputs outputs_of(const std::string& name, exec::Array a) {
  eval::Outputs o;
  o.names = {name};
  o.per_sample = {{std::move(a)}};
  return o;
}

// y = Exp(20 x) / (Exp(20 x) + 1): about 1 in float32 for x near 1; in float16 Exp overflows to Inf and
// Inf / Inf is NaN.
const std::string kOverflowsInFp16 = read_file(fs::path(MOPT_SOURCE_DIR) / "testdata/fp16/overflow_inside.onnxtxt");

// Its float16 output overflows (e^20 > 65504) in every runtime, ONNX Runtime's CPU provider included:
// converted with float16 inputs and outputs, the output itself is stored in float16.
const char* kOutputOverflowsInFp16 = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4] x) => (float[1,4] y) <float k = {20.0}> {
  s = Mul(x, k)
  y = Exp(s)
})";

// A Conv-only network: dynamic quantization has nothing to quantize in it.
const char* kConvOnly = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <float[2,1,1,1] w = {0.5, -1.0}> {
  y = Conv(x, w)
})";

driver::OptimizeRequest request_for(const fs::path& input, const std::string& pipeline) {
  driver::OptimizeRequest r;
  r.input = input;
  r.pipeline = pass::parse_pipeline(pipeline);
  r.compressed_size = false;
  return r;
}

fs::path write_model(const TempDir& dir, const std::string& name, const char* text) {
  const fs::path path = dir / name;
  io::save_model(*parse_model(text), path, {});
  return path;
}

}  // namespace

TEST_CASE("new NaN/Inf in the optimized output is a failed comparison: every metric and every gate says so") {
  const eval::Outputs ref = outputs_of("y", array<float>(d::kFloat, {1, 4}, {0.5f, 1, 1, 1}));
  const eval::Outputs bad = outputs_of("y", array<float>(d::kFloat, {1, 4}, {0.5f, NAN, INFINITY, 1}));
  const eval::Comparison c = eval::compare_outputs(ref, bad);
  const eval::OutputMetrics& m = c.outputs.at(0);
  CHECK(m.broken());
  CHECK(m.new_nonfinite == 2);
  CHECK(std::isinf(m.max_abs_error));
  CHECK(std::isinf(m.relative_l2));
  CHECK_FALSE(m.cosine.has_value());
  CHECK_FALSE(m.snr_db.has_value());
  CHECK(m.undefined_reason.find("2 NaN/Inf values") != std::string::npos);
  CHECK(eval::judge(c).degraded());
  CHECK_FALSE(eval::lowest_cosine(c).has_value());

  eval::Gates gates;
  gates.min_cosine = 0.0;
  gates.max_accuracy_drop = 100.0;
  gates.max_size = 1ull << 40;
  gates.fail_on_degraded = true;
  const std::vector<eval::GateResult> results = eval::check_gates(gates, &c, 10);
  REQUIRE(results.size() == 4);
  for (const eval::GateResult& g : results) {
    CAPTURE(g.gate);
    CHECK_FALSE(g.passed);
  }
  // NaN in both models is not a new failure; NaN fixed by the optimization is a mismatch but not broken.
  const eval::Comparison same = eval::compare_outputs(bad, bad);
  CHECK_FALSE(same.outputs[0].broken());
  CHECK(eval::compare_outputs(bad, ref).outputs[0].nonfinite_mismatches == 2);
  CHECK_FALSE(eval::compare_outputs(bad, ref).outputs[0].broken());
}

TEST_CASE("cosine and SNR of near-zero outputs are undefined, not 0 or 1; a collapse to zero scores 0") {
  const eval::Outputs tiny_a = outputs_of("y", array<float>(d::kFloat, {1, 3}, {1e-9f, 0, 2e-9f}));
  const eval::Outputs tiny_b = outputs_of("y", array<float>(d::kFloat, {1, 3}, {0, 3e-9f, 0}));
  const eval::Comparison c = eval::compare_outputs(tiny_a, tiny_b, nullptr, "none");
  CHECK_FALSE(c.outputs[0].cosine.has_value());
  CHECK(c.outputs[0].undefined_reason.find("near zero") != std::string::npos);
  const eval::Verdict v = eval::judge(c);
  CHECK(v.status == "not-judged");
  eval::Gates gates;
  gates.min_cosine = 0.5;
  const auto g = eval::check_gates(gates, &c, 0);
  CHECK_FALSE(g.at(0).passed);
  CHECK_FALSE(g.at(0).measured.has_value());
  CHECK(g.at(0).unmeasured_reason == "not measurable");

  const eval::Outputs real = outputs_of("y", array<float>(d::kFloat, {1, 3}, {0.2f, -0.5f, 0.9f}));
  const eval::Outputs zero = outputs_of("y", array<float>(d::kFloat, {1, 3}, {0, 0, 0}));
  const eval::Comparison collapsed = eval::compare_outputs(real, zero, nullptr, "none");
  REQUIRE(collapsed.outputs[0].cosine.has_value());
  CHECK(*collapsed.outputs[0].cosine == 0.0);
  CHECK(eval::judge(collapsed).degraded());
  CHECK(eval::judge(eval::compare_outputs(real, real, nullptr, "none")).status == "ok");
}

TEST_CASE("the verdict: thresholds on cosine and top-1 agreement, worst first, and the classifier is stated") {
  // Two rows of logits; row 2's argmax moves: 50% top-1 agreement, cosine still high.
  const eval::Outputs a = outputs_of("logits", array<float>(d::kFloat, {2, 3}, {1, 2, 3, 3, 2.9f, 1}));
  const eval::Outputs b = outputs_of("logits", array<float>(d::kFloat, {2, 3}, {1, 2, 3, 2.9f, 3, 1}));
  const eval::Comparison c = eval::compare_outputs(a, b);
  CHECK(c.classifier_note.find("'logits' [2,3]") != std::string::npos);
  const eval::Verdict v = eval::judge(c);
  CHECK(v.degraded());
  REQUIRE_FALSE(v.reasons.empty());
  CHECK(v.reasons[0].find("top-1 disagreement") != std::string::npos);
  // Not a classifier: the same numbers pass on cosine alone.
  const eval::Comparison plain = eval::compare_outputs(a, b, nullptr, "none");
  CHECK_FALSE(plain.outputs[0].classifier);
  CHECK(eval::judge(plain).status == "ok");
  CHECK(error_of([&] { eval::compare_outputs(a, b, nullptr, "probs"); }).find("no output named 'probs'") != std::string::npos);
  const eval::Outputs image = outputs_of("mask", exec::Array(d::kFloat, {1, 1, 4, 4}));
  CHECK(error_of([&] { eval::compare_outputs(image, image, nullptr, "mask"); }).find("neither [N, C]") != std::string::npos);

  // One probability per row is a binary decision (p > 0.5): a VAD whose speech flag flips is degraded
  // even when its numbers stay close.
  const eval::Outputs p = outputs_of("speech", array<float>(d::kFloat, {4, 1}, {0.1f, 0.49f, 0.7f, 0.9f}));
  const eval::Outputs q = outputs_of("speech", array<float>(d::kFloat, {4, 1}, {0.1f, 0.51f, 0.7f, 0.9f}));
  const eval::Comparison flips = eval::compare_outputs(p, q);
  CHECK(flips.outputs[0].classifier);
  CHECK(flips.outputs[0].top1_agreement == doctest::Approx(0.75));
  CHECK(flips.classifier_note.find("binary decision") != std::string::npos);
  CHECK(eval::judge(flips).degraded());
  const eval::Outputs logits = outputs_of("score", array<float>(d::kFloat, {2, 1}, {-3.0f, 4.0f}));
  CHECK_FALSE(eval::compare_outputs(logits, logits).outputs[0].classifier);  // not probabilities
}

TEST_CASE("--shape, --dim and --value-range names are checked against the model; defaulted dims are listed") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[batch,3,H,W] x, int64[N] ids) => (float[batch,3,H,W] y) {
  y = Identity(x)
})";
  auto model = parse_model(text);
  data::ShapeOverrides o;
  o.add_shape("nosuch=1,2");
  CHECK(error_of([&] { o.validate(*model); }) == "--shape nosuch: the model has no input named 'nosuch' (inputs: x, ids)");
  data::ShapeOverrides dim;
  dim.add_dim("nosuch=8");
  CHECK(error_of([&] { dim.validate(*model); }).find("--dim nosuch: no input has a dimension named 'nosuch'") == 0);
  data::ShapeOverrides range;
  range.add_range("nosuch=0:1");
  CHECK(error_of([&] { range.validate(*model); }).find("--value-range nosuch: the model has no input") == 0);
  CHECK(error_of([&] { range.add_range("x=3:1"); }).find("LO must not exceed HI") != std::string::npos);
  CHECK(error_of([&] { range.add_range("x=a:1"); }).find("'a' is not a number") != std::string::npos);

  data::ShapeOverrides good;
  good.add_dim("batch=2");
  good.add_range("x=10:20");
  good.add_range("ids=3:3");
  good.validate(*model);
  CHECK(data::defaulted_dims(*model, good) == std::vector<std::string>{"x[2] ('H')", "x[3] ('W')", "ids[0] ('N')"});
  const data::Feeds f = data::random_feeds(*model, good, 0);
  for (double v : f.at("x").to_doubles()) CHECK((v >= 10 && v <= 20));
  for (int64_t v : f.at("ids").to_int64s()) CHECK(v == 3);
}

TEST_CASE("calibration hold-out: every 5th sample once there are 10, else every 5th row of one batched sample") {
  auto numbered = [](size_t n) {
    std::vector<data::Feeds> samples(n);
    for (size_t i = 0; i < n; ++i) samples[i]["i"] = array<int64_t>(d::kInt64, {1}, {static_cast<int64_t>(i)});
    return samples;
  };
  CHECK(data::split_holdout(numbered(9)).held_out.empty());
  CHECK(data::split_holdout(numbered(9)).calibration.size() == 9);
  const data::Holdout twelve = data::split_holdout(numbered(12));
  REQUIRE(twelve.held_out.size() == 2);
  REQUIRE(twelve.calibration.size() == 10);
  CHECK(twelve.held_out[0].at("i").to_int64s()[0] == 4);
  CHECK(twelve.held_out[1].at("i").to_int64s()[0] == 9);
  CHECK(twelve.calibration[4].at("i").to_int64s()[0] == 5);
  CHECK(twelve.how == "samples 4, 9, ... (every 5th, 2 of 12)");

  // One sample of 12 rows, two inputs batched along axis 0: rows 4 and 9 are held out of both.
  std::vector<int64_t> ids(12);
  std::vector<float> x(24);
  for (int64_t i = 0; i < 12; ++i) {
    ids[static_cast<size_t>(i)] = i;
    x[static_cast<size_t>(2 * i)] = static_cast<float>(i);
    x[static_cast<size_t>(2 * i + 1)] = -static_cast<float>(i);
  }
  const data::Holdout rows = data::split_holdout({{{"ids", array<int64_t>(d::kInt64, {12}, ids)}, {"x", array<float>(d::kFloat, {12, 2}, x)}}});
  REQUIRE(rows.held_out.size() == 1);
  CHECK(rows.held_out[0].at("ids").to_int64s() == std::vector<int64_t>{4, 9});
  CHECK(rows.held_out[0].at("x").to_doubles() == std::vector<double>{4, -4, 9, -9});
  CHECK(rows.calibration[0].at("x").shape() == exec::Shape{10, 2});
  CHECK(rows.calibration[0].at("ids").to_int64s()[4] == 5);
  // Inputs that disagree on dim 0 are not rows of one batch: no split.
  CHECK(data::split_holdout({{{"a", exec::Array(d::kFloat, {12})}, {"b", exec::Array(d::kFloat, {11})}}}).held_out.empty());
}

TEST_CASE("accuracy is measured on held-out calibration data by default, and calibration leaves it out") {
  TempDir dir;
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4] x) => (float[1,4] y) <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}> {
  y = MatMul(x, w)
})";
  const fs::path model = write_model(dir, "m.onnx", text);
  fs::create_directories(dir / "calib");
  for (int i = 0; i < 10; ++i) {
    const fs::path sample = dir / "calib" / fmt::format("s{:02}", i);
    fs::create_directories(sample);
    data::write_npy((sample / "x.npy").string(),
                    array<float>(d::kFloat, {1, 4}, {0.1f * static_cast<float>(i), 1, -1, 0.5f}));
  }
  driver::OptimizeRequest r = request_for(model, fmt::format("quantize(mode=static,data={})", (dir / "calib").string()));
  r.accuracy.calibration = (dir / "calib").string();
  const driver::OptimizeResult result = driver::run_optimize(r);
  const nlohmann::json& data = result.run.accuracy.at("data");
  CHECK(data.at("kind") == "calibration-holdout");
  CHECK(result.run.accuracy.at("samples") == 2);
  CHECK(data.at("note").get<std::string>().find("4, 9") != std::string::npos);
  bool found = false;
  for (const pass::PassRun& p : result.run.pipeline_result.passes) {
    if (p.name != "quantize") continue;
    found = true;
    CHECK(p.details.at("calibration").at("samples") == 8);  // the 2 held out are not calibrated on
  }
  CHECK(found);

  // Too few samples to hold out: the calibration samples themselves, and the report says they are not independent.
  fs::remove_all(dir / "calib" / "s09");
  const driver::OptimizeResult small = driver::run_optimize(r);
  CHECK(small.run.accuracy.at("data").at("kind") == "calibration");
  CHECK(small.run.accuracy.at("data").at("note").get<std::string>().find("not independent") != std::string::npos);
  CHECK(small.run.accuracy.at("samples") == 9);
  // An explicit source wins over the calibration data.
  r.accuracy.source = "random";
  r.accuracy.source_explicit = true;
  CHECK(driver::run_optimize(r).run.accuracy.at("data").at("kind") == "random");
}

TEST_CASE("decisions on random data nobody asked for are refused before any work; asked-for random is accepted") {
  TempDir dir;
  const fs::path model = write_model(dir, "m.onnx", kOverflowsInFp16.c_str());
  driver::OptimizeRequest r = request_for(model, "convert(to=fp16)");
  r.output = dir / "out.onnx";
  r.gates.min_cosine = 0.99;
  r.accuracy.decisions = {"--min-cosine"};
  const std::string refused = error_of([&] { driver::run_optimize(r); });
  CHECK(refused.find("--min-cosine would decide on random inputs") == 0);
  CHECK(refused.find("--accuracy random") != std::string::npos);
  CHECK_FALSE(fs::exists(r.output));
  r.accuracy.source_explicit = true;  // --accuracy random
  const driver::OptimizeResult result = driver::run_optimize(r);
  CHECK(result.run.accuracy.at("data").at("kind") == "random");
  CHECK(fs::exists(r.output));
}

TEST_CASE("an fp16 conversion whose outputs become NaN is reported DEGRADED and fails its gate") {
  TempDir dir;
  const fs::path model = write_model(dir, "m.onnx", kOutputOverflowsInFp16);
  fs::create_directories(dir / "data");
  data::write_npy((dir / "data" / "x.npy").string(), array<float>(d::kFloat, {1, 4}, {1.0f, 0.9f, 1.1f, 0.95f}));
  driver::OptimizeRequest r = request_for(model, "convert(to=fp16, keep-io-types=false)");
  r.accuracy.source = (dir / "data").string();
  r.accuracy.source_explicit = true;
  r.gates.min_cosine = 0.99;
  const driver::OptimizeResult result = driver::run_optimize(r);
  CHECK(result.run.degraded);
  CHECK(result.run.verdict_summary.find("verdict: DEGRADED") == 0);
  CHECK(result.run.verdict_summary.find("NaN/Inf") != std::string::npos);
  const nlohmann::json& out = result.run.accuracy.at("outputs").at(0);
  CHECK(out.at("cosine_similarity").is_null());
  CHECK(out.at("new_nonfinite") == 4);
  CHECK(result.run.accuracy.at("verdict").at("status") == "degraded");
  REQUIRE(result.gates.size() == 1);
  CHECK_FALSE(result.gates[0].passed);
}

TEST_CASE("float16 verdicts follow ONNX Runtime's CPU provider: an intermediate float16 overflow is no alarm there") {
  // e^20 overflows float16, but ONNX Runtime 1.30 (CPU) computes Exp, Add and Div of this float16 model in
  // float32 and gives 1.0 like the original (checked in ort_interop.sh); a runtime rounding each operator
  // would give NaN (inf / inf).
  TempDir dir;
  const fs::path model = write_model(dir, "m.onnx", kOverflowsInFp16.c_str());
  fs::create_directories(dir / "data");
  data::write_npy((dir / "data" / "x.npy").string(), array<float>(d::kFloat, {1, 4}, {1.0f, 0.9f, 1.1f, 0.95f}));
  driver::OptimizeRequest r = request_for(model, "convert(to=fp16)");
  r.output = dir / "out.onnx";
  r.accuracy.source = (dir / "data").string();
  r.accuracy.source_explicit = true;
  r.gates.min_cosine = 0.99;
  const driver::OptimizeResult result = driver::run_optimize(r);
  CHECK_FALSE(result.run.degraded);
  CHECK(result.run.accuracy.at("outputs").at(0).at("new_nonfinite") == 0);
  REQUIRE(result.gates.size() == 1);
  CHECK(result.gates[0].passed);
  // The same float16 model with every operator rounded is broken.
  auto converted = io::load_model(r.output);
  eval::Evaluation evaluation;
  evaluation.samples.push_back({{"x", array<float>(d::kFloat, {1, 4}, {1.0f, 0.9f, 1.1f, 0.95f})}});
  auto original = io::load_model(model);
  evaluation.reference = eval::run_samples(*original, evaluation.samples);
  CHECK(evaluation.evaluate(*converted, exec::Float16Compute::kRoundEachOperator).outputs.at(0).broken());
  CHECK_FALSE(evaluation.evaluate(*converted).outputs.at(0).broken());
}

TEST_CASE("a command whose pass changed nothing fails with the reason and writes nothing") {
  TempDir dir;
  const fs::path model = write_model(dir, "m.onnx", kConvOnly);
  driver::OptimizeRequest r = request_for(model, "quantize");
  r.command = "quantize";
  r.required_change = {"quantize"};
  r.output = dir / "out.onnx";
  const std::string message = error_of([&] { driver::run_optimize(r); });
  CHECK(message.find("quantize changed nothing") == 0);
  CHECK(message.find("Conv is quantized only in static mode: pass --data") != std::string::npos);
  CHECK_FALSE(fs::exists(r.output));
  CHECK_FALSE(fs::exists(dir / "out.onnx.report.json"));
  r.allow_unchanged = true;
  driver::run_optimize(r);
  CHECK(fs::exists(r.output));

  // Every Conv/MatMul/Gemm left in float is listed with its reason.
  auto conv = parse_model(kConvOnly);
  const pass::PipelineResult pr = run(*conv, "quantize");
  REQUIRE(pr.passes.size() == 1);
  CHECK_FALSE(pr.passes[0].changed);
  CHECK(pr.passes[0].details.at("skipped").size() == 1);
}

TEST_CASE("per-layer error matches values by name, through folded Relus, worst first, by original node name") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <float[2,1,1,1] w = {0.5, -1.0}, float[2] b = {0.1, -0.2}> {
  c = Conv <pads = [0, 0, 0, 0]> (x, w, b)
  y = Relu(c)
})";
  auto original = parse_model(text);
  for (ir::Node* n : original->graph().nodes()) n->mutable_proto().set_name(n->op_type() == "Conv" ? "conv1" : "relu1");
  std::vector<data::Feeds> samples;
  for (uint64_t s = 0; s < 3; ++s) samples.push_back(data::random_feeds(*original, {}, s));

  // Identical models: every value compared, all exact.
  const eval::LayerReport same = eval::compare_layers(*original, *parse_model(text), samples);
  CHECK(same.samples == 3);
  CHECK(same.values == 2);
  REQUIRE(same.layers.size() == 2);
  for (const eval::LayerError& l : same.layers) CHECK(l.metrics.max_abs_error == 0);

  // Static int8: the Relu is folded into the QuantizeLinear after the Conv; its counterpart is the DequantizeLinear.
  TempDir dir;
  for (size_t s = 0; s < samples.size(); ++s) {
    const fs::path sample = dir / "calib" / fmt::format("s{}", s);
    fs::create_directories(sample);
    data::write_npy((sample / "x.npy").string(), samples[s].at("x"));
  }
  auto quantized = parse_model(text);
  for (ir::Node* n : quantized->graph().nodes()) n->mutable_proto().set_name(n->op_type() == "Conv" ? "conv1" : "relu1");
  run(*quantized, fmt::format("quantize(mode=static,target=portable,data={}),eliminate-dead-code", (dir / "calib").string()));
  const eval::LayerReport q = eval::compare_layers(*original, *quantized, samples);
  REQUIRE(q.layers.size() == 2);
  CHECK(q.unmatched == 0);
  for (const eval::LayerError& l : q.layers) {
    CAPTURE(l.value);
    CHECK(l.metrics.relative_l2 > 0);
    CHECK(l.metrics.relative_l2 < 0.05);
    CHECK((l.node == "conv1" || l.node == "relu1"));
  }
  CHECK(q.layers[0].metrics.relative_l2 >= q.layers[1].metrics.relative_l2);
  const nlohmann::json j = eval::to_json(q);
  CHECK(j.at("compared") == 2);
  CHECK(j.at("worst_first").size() == 2);
  CHECK(eval::summary(q).find("worst layers (2 of 2 values compared on 3 samples") == 0);

  // A removed value (the Conv output, after Conv -> Relu became one node) is unmatched, not compared to the wrong tensor.
  const char* fused = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <float[2,1,1,1] w = {0.5, -1.0}, float[2] b = {0.1, -0.2}> {
  y = Conv <pads = [0, 0, 0, 0]> (x, w, b)
})";
  const eval::LayerReport f = eval::compare_layers(*original, *parse_model(fused), samples);
  CHECK(f.unmatched == 1);
  REQUIRE(f.layers.size() == 1);
  CHECK(f.layers[0].node == "relu1");
  CHECK(f.layers[0].metrics.max_abs_error > 0);  // the "fused" model lost the Relu: it shows

  // A tiny capture budget still compares every value, in more rounds.
  eval::LayerOptions tiny;
  tiny.max_bytes = 16;
  const eval::LayerReport rounds = eval::compare_layers(*original, *quantized, samples, tiny);
  CHECK(rounds.layers.size() == 2);
  CHECK(rounds.note.empty());
}

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;

}  // namespace

TEST_CASE("per-layer error after fusions: a Conv that absorbed a BatchNormalization carries its name, not the Conv's") {
  // digits_cnn: Conv -> BatchNormalization x3. The folded Conv computes what the BN did; under the Conv's
  // old name it was compared with the pre-normalization tensor and reported as the worst layer (rel-L2 2.8)
  // of a fusion that changes nothing.
  auto original = io::load_model(kModels / "trained/digits_cnn.onnx");
  auto fused = io::load_model(kModels / "trained/digits_cnn.onnx");
  run(*fused, "fuse");
  size_t bns = 0;
  for (const ir::Node* n : fused->graph().nodes()) bns += n->is_op("BatchNormalization") ? 1 : 0;
  REQUIRE(bns == 0);
  data::ShapeOverrides shapes;
  shapes.add_dim("batch=4");
  const std::vector<data::Feeds> samples = {data::random_feeds(*original, shapes, 0)};
  const eval::LayerReport report = eval::compare_layers(*original, *fused, samples);
  CHECK(report.unmatched == 3);  // the three pre-normalization Conv outputs exist no more
  size_t batchnorm_outputs = 0;
  for (const eval::LayerError& l : report.layers) {
    CAPTURE(l.value);
    CHECK(l.metrics.relative_l2 < 1e-5);
    batchnorm_outputs += l.node.find("BatchNormalization") != std::string::npos ? 1 : 0;
  }
  CHECK(batchnorm_outputs == 3);
}

namespace {

// The shared 60 s of speech as silero v5's stream: chunks of 512 samples with the previous 64 as context,
// the sample rate, and a zero state for the first chunk (the state of the others comes by --feedback).
fs::path write_vad_stream(const TempDir& dir, size_t chunks) {
  const std::vector<double> audio = data::read_npy((kModels / "audio/silero_test_16k.npy").string()).to_doubles();
  const fs::path root = dir / "stream";
  for (size_t c = 0; c < chunks; ++c) {
    std::vector<float> window(576, 0.0f);
    for (size_t i = 0; i < 576; ++i) {
      const int64_t at = static_cast<int64_t>(c * 512 + i) - 64;
      if (at >= 0 && static_cast<size_t>(at) < audio.size()) window[i] = static_cast<float>(audio[static_cast<size_t>(at)]);
    }
    const fs::path sample = root / fmt::format("chunk_{:04}", c);
    fs::create_directories(sample);
    data::write_npy((sample / "input.npy").string(), array<float>(d::kFloat, {1, 576}, window));
    data::write_npy((sample / "sr.npy").string(), array<int64_t>(d::kInt64, {}, {16000}));
    data::write_npy((sample / "state.npy").string(), array<float>(d::kFloat, {2, 1, 128}, std::vector<float>(256, 0.0f)));
  }
  return root;
}

}  // namespace

TEST_CASE("--feedback runs a VAD as a stream: state carried for calibration and accuracy, decisions over the sequence") {
  if (!fs::exists(kModels / "audio/silero_test_16k.npy")) return;
  TempDir dir;
  const fs::path stream = write_vad_stream(dir, 150);
  const fs::path model = kModels / "audio/silero_vad_v5_16k_op15.onnx";
  auto vad = io::load_model(model);
  const std::vector<data::Feeds> samples = data::load_samples(*vad, stream.string());
  REQUIRE(samples.size() == 150);
  const eval::Feedback feedback = {eval::parse_feedback(*vad, "stateN=state")};
  CHECK(error_of([&] { eval::parse_feedback(*vad, "nosuch=state"); }).find("no output named 'nosuch'") != std::string::npos);
  CHECK(error_of([&] { eval::parse_feedback(*vad, "stateN=nosuch"); }).find("no input named 'nosuch'") != std::string::npos);
  // Carried state changes what the model says: the stream is not 150 independent chunks.
  const eval::Outputs carried = eval::run_samples(*vad, samples, 0, feedback);
  const eval::Outputs independent = eval::run_samples(*vad, samples, 0);
  const eval::Comparison c = eval::compare_outputs(independent, carried, nullptr, "output");
  CHECK(c.outputs[0].max_abs_error > 0.05);
  const std::vector<data::Feeds> fed = eval::carry_state(*vad, samples, feedback);
  CHECK(fed[1].at("state").to_doubles() == carried.per_sample[0][1].to_doubles());
  // The speech decisions of a static int8 model, streamed, against the float model streamed.
  // --target portable: one 512-sample chunk is too small for int8 to pay off in ONNX Runtime, so ort-cpu
  // would keep it float; the check is about the streamed verdict of a quantized model.
  driver::OptimizeRequest r = request_for(model, fmt::format("quantize(mode=static,target=portable,data={})", stream.string()));
  r.output = dir / "vad.int8.onnx";
  r.accuracy.calibration = stream.string();
  r.accuracy.feedback = {"stateN=state"};
  r.accuracy.classifier_output = "output";
  r.per_layer = false;
  const driver::OptimizeResult result = driver::run_optimize(r);
  const nlohmann::json& a = result.run.accuracy;
  CHECK(a.at("data").at("kind") == "calibration");
  CHECK(a.at("data").at("note").get<std::string>().find("run as one sequence of 150 samples, feeding back stateN -> state") !=
        std::string::npos);
  CHECK(a.at("samples") == 150);
  const nlohmann::json& speech = a.at("outputs").at(0);
  CHECK(speech.at("rows") == 150);
  MESSAGE("silero static int8, streamed 150 chunks: decision agreement " << speech.at("top1_agreement") << ", cosine "
                                                                         << speech.at("cosine_similarity") << "; verdict "
                                                                         << result.run.verdict_summary);
  // Streamed, static int8 loses the speech decisions (the one-chunk view hides it): the verdict says so.
  CHECK(result.run.degraded);
  CHECK(result.run.degraded == (speech.at("top1_agreement").get<double>() < 0.99 ||
                                speech.at("cosine_similarity").get<double>() < 0.99));
}
