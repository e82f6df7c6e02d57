// convert: float16/bfloat16 weights and counts (the golden cases cannot write float16 tensors), named
// block lists, subgraphs and Constant-node weights, the real models' accuracy after float16, opset
// conversion up and down, static shapes and their errors, and auto-mixed precision. ONNX Runtime loads
// and runs the converted real models in ort_interop.sh.
#include <doctest/doctest.h>

#include <onnx/shape_inference/implementation.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "convert/auto_mixed.h"
#include "convert/float_precision.h"
#include "convert/shapes.h"
#include "convert/versions.h"
#include "driver/optimize.h"
#include "helpers.h"
#include "pass/pipeline.h"

using namespace mopt;
using namespace mopt::test;

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;

std::vector<uint16_t> bits_of(const ir::Tensor& t) {
  const ir::Bytes b = t.data();
  std::vector<uint16_t> out(b.size() / 2);
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

const ir::Tensor* initializer(const ir::Model& m, const std::string& name) {
  const ir::Value* v = m.graph().find_local(name);
  return v ? v->initializer() : nullptr;
}

double worst_cosine(const ir::Model& a, const ir::Model& b, const std::vector<data::Feeds>& samples) {
  const eval::Comparison c = eval::compare_outputs(eval::run_samples(a, samples, 1), eval::run_samples(b, samples, 1));
  return eval::lowest_cosine(c).value_or(-1.0);  // new NaN/Inf or an undefined cosine fail every threshold
}

std::vector<data::Feeds> samples_of(const ir::Model& model, const std::string& source) {
  driver::AccuracyRequest request;
  request.source = source;
  request.random_samples = 2;
  request.source_explicit = true;
  return driver::load_or_generate_samples(model, request, nullptr);
}

// ONNX's own shape inference with type checking: a converted model whose declared types disagree
// (an If output float16 while its branch yields float32) fails here, as it would in ONNX Runtime.
void check_types(const ir::Model& model) {
  onnx::ModelProto proto = ir::export_for_analysis(model);
  onnx::ShapeInferenceOptions options(/*check_type=*/true, /*strict_mode=*/1, false);
  onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), options);
}

const char* kMatMul = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2,2] X) => (float[2,2] Y) <float[2,2] W = {0.5, -1.0, 2.0, 0.25}> {
  Y = MatMul(X, W)
})";

}  // namespace

TEST_CASE("half_to_floats gives half_to_float's bits for every float16, NaN payloads and odd lengths included") {
  std::vector<uint16_t> halves(65536 + 5);
  for (size_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<uint16_t>(i * 40503u);  // every value, shuffled
  for (size_t offset : {size_t{0}, size_t{3}}) {  // a tail shorter than a vector, and unaligned starts
    const std::span<const uint16_t> in(halves.data() + offset, halves.size() - offset);
    std::vector<float> bulk(in.size());
    exec::half_to_floats(in, bulk);
    int64_t differ = 0;
    for (size_t i = 0; i < in.size(); ++i) differ += std::bit_cast<uint32_t>(bulk[i]) != std::bit_cast<uint32_t>(exec::half_to_float(in[i]));
    CHECK(differ == 0);
  }
}

TEST_CASE("floats_to_half gives float_to_half's bits for every kind of float, NaN and odd lengths included") {
  std::vector<float> values;
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 4093) values.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  for (float v : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 5.9604644775390625e-08f, 2.98e-08f, 2.9802322387695312e-08f,
                  6.1035156e-05f, 6.1035149e-05f, 1.0009765625f, 1.00048828125f, 1.00146484375f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), std::bit_cast<float>(0xff812345u)})
    values.push_back(v);
  REQUIRE(std::count_if(values.begin(), values.end(), [](float v) { return std::isnan(v); }) > 1000);
  for (size_t offset : {size_t{0}, size_t{3}}) {  // a tail shorter than a vector, and unaligned starts
    const std::span<const float> in(values.data() + offset, values.size() - offset);
    std::vector<uint16_t> bulk(in.size());
    exec::floats_to_half(in, bulk);
    size_t mismatches = 0;
    for (size_t i = 0; i < in.size(); ++i) mismatches += bulk[i] != exec::float_to_half(in[i]);
    CHECK(mismatches == 0);
  }
  CHECK(exec::float_to_half(65520.0f) == 0x7c00);          // rounds to infinity
  CHECK(exec::float_to_half(2.9802322387695312e-08f) == 0);  // half the smallest subnormal: ties to even (zero)
  CHECK(exec::float_to_half(1.00048828125f) == 0x3c00);     // a tie between 1 and the next half: even wins
}

TEST_CASE("float16 converts weights in place with exact bits and counts what it did") {
  auto model = parse_model(kMatMul);
  const auto original = parse_model(kMatMul);
  const pass::PipelineResult r = run(*model, "convert(to=fp16)");
  const ir::Tensor* w = initializer(*model, "W");
  REQUIRE(w != nullptr);
  CHECK(w->dtype() == ir::dtype::kFloat16);
  CHECK(bits_of(*w) == std::vector<uint16_t>{0x3800, 0xbc00, 0x4000, 0x3400});
  CHECK(counter(r, "tensors-converted") == 1);
  CHECK(counter(r, "nodes-converted") == 1);
  CHECK(counter(r, "casts-inserted") == 2);  // X in, Y out
  CHECK(model->graph().outputs()[0]->name() == "Y");
  CHECK(rewrite::elem_type(*model->graph().outputs()[0]) == ir::dtype::kFloat);
  check_types(*model);
  CHECK(output_difference(*original, *model, 2e-3).empty());
}

TEST_CASE("float16 duplicates a weight that a float32 node reads too") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2,2] X) => (float[2,2] Y, float[2,2] Z) <float[2,2] W = {0.5, -1.0, 2.0, 0.25}> {
  Y = MatMul(X, W)
  Z = Max(X, W)
})";
  auto model = parse_model(text);
  const pass::PipelineResult r = run(*model, "convert(to=fp16)");
  CHECK(counter(r, "tensors-duplicated") == 1);
  CHECK(initializer(*model, "W")->dtype() == ir::dtype::kFloat);  // Max (blocked) reads the original
  REQUIRE(initializer(*model, "W_fp16") != nullptr);
  CHECK(initializer(*model, "W_fp16")->dtype() == ir::dtype::kFloat16);
  check_types(*model);
  CHECK(output_difference(*parse_model(text), *model, 2e-3).empty());
}

TEST_CASE("weights beyond the float16 range keep their node float32 unless clamping is asked for") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2] X) => (float[2] Y) <float[2] W = {100000.0, 1e-9}> {
  A = Relu(X)
  Y = Mul(A, W)
})";
  auto kept = parse_model(text);
  pass::PipelineResult r = run(*kept, "convert(to=fp16)");
  CHECK(initializer(*kept, "W")->dtype() == ir::dtype::kFloat);
  CHECK(counter(r, "nodes-kept-float32") == 1);
  CHECK(counter(r, "values-clamped") == 0);
  CHECK(output_difference(*parse_model(text), *kept, 2e-3).empty());

  auto clamped = parse_model(text);
  r = run(*clamped, "convert(to=fp16, out-of-range=clamp)");
  CHECK(counter(r, "values-clamped") == 1);
  CHECK(counter(r, "values-raised-to-min-subnormal") == 1);  // 1e-9 would become 0: it becomes 2^-24
  CHECK(bits_of(*initializer(*clamped, "W")) == std::vector<uint16_t>{0x7bff, 0x0001});
  REQUIRE(!r.warnings.empty());
  CHECK(r.warnings[0].find("clamped") != std::string::npos);
}

TEST_CASE("the node block list keeps named nodes float32 with Casts around them") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2] X) => (float[2] Y) {
  A = Relu(X)
  B = Sigmoid(A)
  Y = Tanh(B)
})";
  auto model = parse_model(text);
  model->graph().nodes()[1]->mutable_proto().set_name("keep_me");
  const pass::PipelineResult r = run(*model, "convert(to=fp16, node-block-list=keep_me)");
  CHECK(counter(r, "nodes-converted") == 2);
  CHECK(counter(r, "nodes-kept-float32") == 1);
  const ir::Node* kept = nullptr;
  for (const ir::Node* n : model->graph().nodes()) kept = n->name() == "keep_me" ? n : kept;
  REQUIRE(kept != nullptr);
  CHECK(rewrite::elem_type(*kept->input(0)) == ir::dtype::kFloat);
  CHECK(kept->input(0)->producer()->op_type() == "Cast");
  CHECK(rewrite::elem_type(*kept->output(0)) == ir::dtype::kFloat);
  check_types(*model);
  CHECK(output_difference(*parse_model(text), *model, 2e-3).empty());
}

TEST_CASE("float16 converts If branches and Constant-node weights, with matching types") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (bool C, float[2] X) => (float[2] Y) {
  K = Constant<value = float[2] {0.5, 2.0}>()
  A = Mul(X, K)
  Y = If(C) <
    then_branch = t () => (float[2] T) { T = Relu(A) },
    else_branch = e () => (float[2] E) { E = Neg(A) }
  >
})";
  auto model = parse_model(text);
  const pass::PipelineResult r = run(*model, "convert(to=fp16)");
  const ir::Node* constant = model->graph().nodes()[0]->is_op("Constant") ? model->graph().nodes()[0] : nullptr;
  for (const ir::Node* n : model->graph().nodes()) constant = n->is_op("Constant") ? n : constant;
  REQUIRE(constant != nullptr);
  CHECK(constant->attribute("value")->tensor->dtype() == ir::dtype::kFloat16);
  for (const ir::Node* n : model->graph().nodes()) {
    if (!n->is_op("If")) continue;
    CHECK(rewrite::elem_type(*n->output(0)) == ir::dtype::kFloat16);
    for (const ir::Graph* g : n->subgraphs()) CHECK(rewrite::elem_type(*g->outputs()[0]) == ir::dtype::kFloat16);
  }
  CHECK(counter(r, "nodes-converted") == 4);  // Mul, If, Relu, Neg
  check_types(*model);
  CHECK(output_difference(*parse_model(text), *model, 2e-3).empty());
}

TEST_CASE("a blocked If keeps float32 branch outputs; the branches still convert inside") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (bool C, float[2] X) => (float[2] Y) {
  Y = If(C) <
    then_branch = t () => (float[2] T) { T = Relu(X) },
    else_branch = e () => (float[2] E) { E = Neg(X) }
  >
})";
  auto model = parse_model(text);
  run(*model, "convert(to=fp16, op-block-list=If)");
  for (const ir::Node* n : model->graph().nodes()) {
    if (!n->is_op("If")) continue;
    CHECK(rewrite::elem_type(*n->output(0)) == ir::dtype::kFloat);
    for (const ir::Graph* g : n->subgraphs()) {
      CHECK(rewrite::elem_type(*g->outputs()[0]) == ir::dtype::kFloat);
      CHECK(g->outputs()[0]->producer()->is_op("Cast"));
    }
  }
  check_types(*model);
  CHECK(output_difference(*parse_model(text), *model, 2e-3).empty());
}

TEST_CASE("the executor runs bfloat16: casts round to nearest even and models compute through float32") {
  exec::Array f(ir::dtype::kFloat, {3});
  f.data<float>()[0] = 1.0f;
  f.data<float>()[1] = 1.00390625f;  // halfway between two bfloat16 values: rounds to even (1.0)
  f.data<float>()[2] = 1.01171875f;  // halfway, rounds up to the even 1.015625
  const exec::Array b = exec::cast(f, ir::dtype::kBfloat16);
  CHECK(b.data<uint16_t>()[0] == 0x3f80);
  CHECK(b.data<uint16_t>()[1] == 0x3f80);
  CHECK(b.data<uint16_t>()[2] == 0x3f82);
  CHECK(exec::cast(b, ir::dtype::kFloat).data<float>()[2] == 1.015625f);

  auto model = io::load_model(kModels / "trained/digits_mlp.onnx");
  const auto original = io::load_model(kModels / "trained/digits_mlp.onnx");
  run(*model, "convert(to=bf16)");
  check_types(*model);
  CHECK(worst_cosine(*original, *model, samples_of(*original, (kModels / "trained/digits_test_xflat.npy").string())) > 0.999);
}

TEST_CASE("float16 of the shared real models: half the size, outputs within cosine 0.999") {
  struct Case {
    const char* model;
    const char* data;
  };
  for (const Case& c : {Case{"trained/digits_cnn.onnx", "trained/digits_test_x.npy"},
                        Case{"trained/digits_vit.onnx", "trained/digits_test_x.npy"},
                        Case{"vision/squeezenet1.1_fp32.onnx", "vision/inputs/squeezenet_fish_fp32"},
                        Case{"audio/silero_vad_v5_16k_op15.onnx", "audio/inputs/silero_v5_x1"},
                        Case{"ocr/ppocrv4_det.onnx", "ocr/inputs/det"}}) {
    CAPTURE(c.model);
    auto model = io::load_model(kModels / c.model);
    const auto original = io::load_model(kModels / c.model);
    const pass::PipelineResult r = run(*model, "convert(to=fp16)");
    const uint64_t before = io::save_model_to_bytes(*original).size(), after = io::save_model_to_bytes(*model).size();
    CHECK(static_cast<double>(after) < 0.56 * static_cast<double>(before));
    // The converted weights are produced while they are written (the save above streamed them): none
    // was built in memory.
    auto count_built = [&] {
      int64_t unbuilt = 0, built = 0;
      std::vector<const ir::Value*> constants;
      for (const ir::Value* v : model->graph().initializers()) constants.push_back(v);
      for (const ir::Node* n : model->graph().nodes()) constants.insert(constants.end(), n->outputs().begin(), n->outputs().end());
      for (const ir::Value* v : constants) {
        const ir::Tensor* t = v ? v->constant() : nullptr;
        if (t && t->dtype() == ir::dtype::kFloat16) (t->raw().unbuilt() ? unbuilt : built) += 1;
      }
      return std::pair(unbuilt, built);
    };
    CHECK(count_built().first > 0);
    CHECK(count_built().second == 0);
    CHECK(counter(r, "nodes-converted") > 0);
    check_types(*model);
    const int64_t built_before_runs = count_built().second;
    const std::vector<data::Feeds> samples = samples_of(*original, (kModels / c.data).string());
    CHECK(worst_cosine(*original, *model, samples) >= 0.999);
    // The executor made them per node (float32 straight from the float16 being made), leaving them unbuilt
    // (check_types exported the small ones), and computes what it computes from the written file.
    CHECK(count_built().second == built_before_runs);
    const auto saved = io::load_model_from_bytes(io::save_model_to_bytes(*model));
    const std::vector<exec::Array> in_memory = exec::Executor(*model).run(samples[0]), from_file = exec::Executor(*saved).run(samples[0]);
    REQUIRE(in_memory.size() == from_file.size());
    for (size_t i = 0; i < in_memory.size(); ++i) CHECK(std::memcmp(in_memory[i].bytes(), from_file[i].bytes(), from_file[i].nbytes()) == 0);
  }
}

TEST_CASE("a produced float16 weight is made for each run from blocks of any size, values split between blocks included") {
  // GraphRunner converts a produced float16 initializer to float32 as its blocks arrive; blocks of 1, 2 and
  // 3 bytes split values between them. Every run computes what the same weight in a plain payload gives.
  const char* text = R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[7] x) => (float[7] y) <float[7] w = {1.5, -2.25, 3.0, 0.0, -0.5, 65504.0, 0.000061035156}> { y = Add(x, w) })";
  auto produced = parse_model(text);
  run(*produced, "convert(to=fp16)");
  ir::Tensor& w = *produced->graph().find_local("w")->initializer();
  REQUIRE(w.dtype() == ir::dtype::kFloat16);
  REQUIRE(w.raw().unbuilt());
  const ir::Bytes converted = w.raw();
  w.set_raw(ir::Bytes::produced(converted.size(), [converted](const ir::ByteSink& sink) {
    converted.stream([&](std::span<const std::byte> block) {
      for (size_t first = 0, step = 1; first < block.size(); first += step, step = step % 3 + 1)
        sink(block.subspan(first, std::min(step, block.size() - first)));
    });
  }));
  auto plain = io::load_model_from_bytes(io::save_model_to_bytes(*produced));  // the same weight, written out
  REQUIRE(w.raw().unbuilt());
  exec::Array x(ir::dtype::kFloat, {7});
  for (int i = 0; i < 7; ++i) x.data<float>()[i] = 0.25f * static_cast<float>(i);
  const std::vector<exec::Array> want = exec::Executor(*plain).run({{"x", x}});
  exec::Executor executor(*produced);
  for (int run = 0; run < 2; ++run) {
    const std::vector<exec::Array> got = executor.run({{"x", x}});
    CHECK(std::memcmp(got[0].bytes(), want[0].bytes(), want[0].nbytes()) == 0);
  }
  CHECK(w.raw().unbuilt());
}

TEST_CASE("ppocrv4_det: the BatchNormalization whose variance exceeds float16 stays float32") {
  auto model = io::load_model(kModels / "ocr/ppocrv4_det.onnx");
  convert::FloatPrecisionOptions options;
  options.op_block_list = convert::default_op_block_list();
  const convert::FloatPrecisionResult r = convert::convert_float_precision(*model, options);
  CHECK(r.nodes_kept.at("weights beyond the float16 range") == 1);
  CHECK(r.values_clamped == 0);
  CHECK(r.nodes_kept.at("blocked operator") == 6);  // Resize
}

TEST_CASE("opset conversion: up keeps outputs identical, down names what ONNX's converter cannot do") {
  const char* squeeze = R"(<ir_version: 6, opset_import: ["" : 11]>
g (float[1,2] X) => (float[2] Y) {
  Y = Squeeze<axes = [0]>(X)
})";
  auto model = parse_model(squeeze);
  run(*model, "convert(opset=13)");
  CHECK(model->opset() == 13);
  CHECK(model->ir_version() == 7);
  REQUIRE(model->graph().nodes().back()->is_op("Squeeze"));
  CHECK(model->graph().nodes().back()->inputs().size() == 2);  // axes became an input
  CHECK(output_difference(*parse_model(squeeze), *model).empty());

  // IR 3, opset 7: initializers listed as inputs stop being inputs when the IR version rises.
  auto squeezenet = io::load_model(kModels / "vision/squeezenet1.1_fp32.onnx");
  const auto original = io::load_model(kModels / "vision/squeezenet1.1_fp32.onnx");
  REQUIRE(squeezenet->graph().inputs().size() > 1);
  run(*squeezenet, "convert(opset=17)");
  CHECK(squeezenet->opset() == 17);
  CHECK(squeezenet->ir_version() == 8);
  CHECK(squeezenet->graph().inputs().size() == 1);
  CHECK(output_difference(*original, *squeezenet).empty());

  auto vit = io::load_model(kModels / "trained/digits_vit.onnx");
  try {
    run(*vit, "convert(opset=13)");
    FAIL("the downgrade should have failed");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("LayerNormalization does not exist in the older opset") != std::string::npos);
  }
  CHECK(vit->opset() == 17);  // unchanged
}

TEST_CASE("opset 9 -> 13: Softmax, LogSoftmax and Hardmax keep their coerced-2D meaning on unshaped inputs") {
  // S has no inferable shape (Squeeze without axes on a symbolic batch may drop any dimension), so
  // ONNX's own adapter fails ("input shape is unknown"); mopt's rewrite needs none. Each output
  // normalizes rows of S coerced to 2-D at its axis.
  const char* old = R"(<ir_version: 4, opset_import: ["" : 9]>
g (float[N,3,4] X) => (float[N,3,4] A, float[N,3,4] B, float[N,3,4] C, float[N,3,4] D) {
  S = Squeeze(X)
  A = Softmax(S)
  B = LogSoftmax<axis = 2>(S)
  C = Hardmax<axis = 0>(S)
  D = Softmax<axis = -1>(S)
})";
  auto model = parse_model(old);
  auto original = parse_model(old);
  run(*model, "convert-opset(opset=13)");
  CHECK(model->opset() == 13);
  CHECK(count_op(*model, "Flatten") == 3);  // A, B, C; D is already along the last axis
  CHECK(count_op(*model, "Reshape") == 3);
  ir::verify_invariants(*model);
  const ir::CheckResult checked = ir::run_onnx_checker(*model);
  CHECK_MESSAGE(checked.status == ir::CheckResult::Status::Passed, checked.message);
  for (const ir::Node* n : model->graph().nodes()) {
    if (n->op_type().find("max") != std::string::npos) CHECK(n->attribute_int("axis") == -1);
  }
  // Graph outputs keep their names.
  for (size_t i = 0; i < 4; ++i) CHECK(model->graph().outputs()[i]->name() == original->graph().outputs()[i]->name());
  data::Feeds feeds;
  exec::Array x(ir::dtype::kFloat, {2, 3, 4});
  float* px = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) px[i] = std::sin(0.7f * static_cast<float>(i)) * 3.0f;
  feeds.emplace("X", std::move(x));
  const eval::Outputs a = eval::run_samples(*original, {feeds}, 1), b = eval::run_samples(*model, {feeds}, 1);
  REQUIRE(a.names.size() == 4);
  for (size_t o = 0; o < 4; ++o) {
    CHECK(b.per_sample[0][o].shape() == exec::Shape{2, 3, 4});
    CHECK(scaled_max_diff(a.per_sample[0][o], b.per_sample[0][o]) <= 1e-6);
  }
  // Old semantics, checked directly: A's 12 values per batch row sum to 1 (not each last-axis row of 4).
  const float* pa = b.per_sample[0][0].data<float>();
  double row = 0;
  for (int i = 0; i < 12; ++i) row += pa[i];
  CHECK(row == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("opset 13 -> 21 with mopt's own adapter: Reduce axes become inputs, Split gets num_outputs, outputs identical") {
  const char* text = R"(<ir_version: 7, opset_import: ["" : 13]>
g (float[2,6,4] X) => (float[2,4] A, float[1,1,1] B, float[2,2,4] C, float[2,2,4] D, float[2,2,4] E, float[2,6] F) {
  A = ReduceMean<axes = [1], keepdims = 0>(X)
  B = ReduceMax(X)
  C, D, E = Split<axis = 1>(X)
  F = ReduceSum<keepdims = 0>(X, K)
  K = Constant<value = int64[1] {2}>()
})";
  auto model = parse_model(text);
  run(*model, "convert-opset(opset=21)");
  CHECK(model->opset() == 21);
  CHECK(model->ir_version() == 10);  // released with opset 21
  for (const ir::Node* n : model->graph().nodes()) {
    if (n->is_op("ReduceMean")) {
      CHECK(n->attribute("axes") == nullptr);
      REQUIRE(n->inputs().size() == 2);
      CHECK(rewrite::constant_ints(n->input(1)) == std::vector<int64_t>{1});
    }
    if (n->is_op("ReduceMax")) CHECK(n->inputs().size() == 1);  // no axes: still every axis
    if (n->is_op("Split")) CHECK(n->attribute_int("num_outputs") == 3);
  }
  ir::verify_invariants(*model);
  bool ran = false;
  CHECK(output_difference(*parse_model(text), *model, 0, &ran).empty());
  CHECK(ran);

  // Opset 9 through ONNX's converter to 17, then the adapter; GridSample's modes are renamed at 20.
  auto grid = parse_model(R"(<ir_version: 7, opset_import: ["" : 16]>
g (float[1,1,4,4] X, float[1,2,2,2] G) => (float[1,1,2,2] Y, float[1,1,2,2] Z) {
  Y = GridSample<mode = "bilinear">(X, G)
  Z = GridSample<mode = "bicubic">(X, G)
})");
  run(*grid, "convert-opset(opset=20)");
  CHECK(grid->opset() == 20);
  CHECK(rewrite::attr_string(*grid->graph().nodes()[0], "mode", "") == "linear");
  CHECK(rewrite::attr_string(*grid->graph().nodes()[1], "mode", "") == "cubic");

  // DFT's axis became an input at 20: refused by name, the model unchanged.
  auto dft = parse_model(R"(<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,1] X) => (float[1,8,2] Y) {
  Y = DFT<axis = 1>(X)
})");
  const std::string error = error_of([&] { run(*dft, "convert-opset(opset=21)"); });
  CHECK(error.find("not supported: converting DFT") != std::string::npos);
  CHECK(dft->opset() == 17);
  // Down from above 17 is refused (ONNX 1.12 cannot read such a model).
  CHECK(error_of([&] { run(*model, "convert-opset(opset=13)"); }).find("not supported: converting down from opset 21") != std::string::npos);
}

TEST_CASE("static shapes: errors name the problem") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[N,2] X) => (float[N,2] Y) {
  Y = Relu(X)
})";
  auto model = parse_model(text);
  auto attempt = [&](const std::string& pipeline) {
    try {
      run(*model, pipeline);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Usage);
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(attempt("convert(shapes=\"Z=1,2\")").find("no input named 'Z'") != std::string::npos);
  CHECK(attempt("convert(shapes=\"X=1,2,3\")").find("rank 2") != std::string::npos);
  CHECK(attempt("convert(shapes=\"X=4,3\")").find("fixed at 2") != std::string::npos);
  CHECK(attempt("convert(shapes=\"X=4,2\", dims=\"N=5\")").find("both") != std::string::npos);
  CHECK(attempt("convert(ir-version=3)").find("too old") != std::string::npos);
  CHECK(attempt("convert()").find("nothing to do") != std::string::npos);

  run(*model, "convert(dims=\"N=3\")");
  CHECK(rewrite::static_shape(*model->graph().inputs()[0]) == std::vector<int64_t>{3, 2});
  CHECK(rewrite::static_shape(*model->graph().outputs()[0]) == std::vector<int64_t>{3, 2});
}

TEST_CASE("auto-mixed keeps the float16 overflow in float32 with a few evaluations") {
  // exp(20 x) overflows float16 for x > 0.55; the Log brings it back. Everything else converts.
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,64] X) => (float[1,64] Y) <float[1] S = {20.0}, float[1] H = {0.05}> {
  A = Mul(X, S)
  B = Exp(A)
  C = Log(B)
  D = Relu(C)
  Y = Mul(D, H)
})";
  auto model = parse_model(text);
  eval::Evaluation evaluation;
  for (uint64_t seed = 0; seed < 3; ++seed) evaluation.samples.push_back(data::random_feeds(*model, {}, seed));
  evaluation.reference = eval::run_samples(*model, evaluation.samples, 1);
  convert::FloatPrecisionOptions options;
  options.op_block_list = convert::default_op_block_list();
  const convert::MixedPrecisionResult r = convert::choose_float32_nodes(*model, options, evaluation, convert::MixedTarget{});
  CHECK(r.initial < 0.999);
  CHECK(r.met);
  CHECK(r.final >= 0.999);
  REQUIRE(!r.sensitivity.empty());
  CHECK(r.sensitivity[0].first.rfind("Exp", 0) == 0);
  CHECK(r.kept_float32.size() <= 2);
  CHECK(r.evaluations <= 2 + 3);  // everything, all ranked kept, then a binary search over 5 nodes

  // Without accuracy data there is nothing to measure: a usage error, not a guess.
  auto converted = parse_model(text);
  CHECK_THROWS_WITH_AS(run(*converted, "convert(to=fp16, auto-mixed=true)"), doctest::Contains("accuracy"), Error);
}
