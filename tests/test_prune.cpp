// Pruning and clipping: the selection arithmetic (smallest magnitudes, N:M groups along the reduction
// axis), what is skipped and why, settings that are refused, and the quality bars on the real models
// (digits_cnn and digits_mlp at 50% magnitude sparsity lose at most 2 points of labelled accuracy; the
// 2:4 pattern holds on every pruned tensor; clipping before quantization helps squeezenet).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "data/npy.h"
#include "helpers.h"
#include "pass/pipeline.h"
#include "prune/channels.h"
#include "prune/prune.h"
#include "rewrite/rewrite.h"

using namespace mopt;
using namespace mopt::test;

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;

std::vector<float> weight_values(const ir::Node& node) {
  exec::Array a = exec::Array::from_tensor(*node.input(1)->constant());
  return {a.data<float>(), a.data<float>() + a.numel()};
}

double zero_fraction(const std::vector<float>& v) {
  return static_cast<double>(std::count(v.begin(), v.end(), 0.0f)) / static_cast<double>(v.size());
}

}  // namespace

TEST_CASE("zero_smallest zeroes exactly the k smallest magnitudes, ties by index") {
  std::vector<float> v = {0.9f, -0.1f, 0.05f, -0.7f, 0.1f, 0.3f};
  prune::zero_smallest(v, 3);
  CHECK(v == std::vector<float>{0.9f, 0.0f, 0.0f, -0.7f, 0.0f, 0.3f});
  std::vector<float> ties = {1, -1, 1, -1};
  prune::zero_smallest(ties, 2);
  CHECK(ties == std::vector<float>{0, 0, 1, -1});
}

TEST_CASE("zero_smallest agrees with a stable sort by magnitude, with ties, zeros, -0, subnormals and NaN") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(20000);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = i % 13 == 0 ? 0.0f : i % 17 == 0 ? -0.0f : i % 19 == 0 ? 1e-40f : i % 23 == 0 ? 0.0125f : normal(rng);
  }
  values[5] = std::numeric_limits<float>::quiet_NaN();
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const float x = std::abs(values[a]), y = std::abs(values[b]);
    return std::isnan(y) ? !std::isnan(x) : x < y;  // NaN above everything, as magnitude bits order it
  });
  for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{900}, int64_t{1500}, int64_t{10000}, int64_t{19999}, int64_t{20000}}) {
    CAPTURE(count);
    std::vector<float> expected = values;
    for (int64_t i = 0; i < count; ++i) expected[order[static_cast<size_t>(i)]] = 0.0f;
    std::vector<float> got = values;
    prune::zero_smallest(got, count);
    int mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const bool same = std::isnan(expected[i]) ? std::isnan(got[i]) : std::bit_cast<uint32_t>(got[i]) == std::bit_cast<uint32_t>(expected[i]);
      mismatches += !same;
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("MagnitudeSelection over several tensors agrees with a stable sort of them all, ties by tensor then index") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> a(5000), b(3001), c(700);
  for (float& v : a) v = normal(rng);
  for (size_t i = 0; i < b.size(); ++i) b[i] = i % 5 == 0 ? 0.0f : i % 7 == 0 ? -0.0f : i % 11 == 0 ? 1e-40f : normal(rng);
  for (size_t i = 0; i < c.size(); ++i) c[i] = i % 3 == 0 ? a[i] : -b[i];  // ties across tensors, both ways
  b[17] = -a[3];
  const std::vector<std::vector<float>*> tensors = {&a, &b, &c};
  std::vector<float> all;  // concatenated in tensor order
  for (const auto* t : tensors) all.insert(all.end(), t->begin(), t->end());
  std::vector<size_t> order(all.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return std::abs(all[x]) < std::abs(all[y]); });
  for (uint64_t k : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{700}, uint64_t{4000}, uint64_t{8000}, static_cast<uint64_t>(all.size()),
                     static_cast<uint64_t>(all.size()) + 5}) {
    CAPTURE(k);
    std::vector<float> expected = all;
    for (uint64_t i = 0; i < std::min<uint64_t>(k, all.size()); ++i) expected[order[i]] = 0.0f;
    prune::MagnitudeSelection selection(k);
    int64_t zeros_in = 0, zeros_out = 0;
    for (const auto* t : tensors) zeros_in += selection.histogram(*t);
    for (const auto* t : tensors) selection.refine(*t);
    prune::Cut cut = selection.cut();
    std::vector<std::vector<float>> out;
    for (const auto* t : tensors) {
      out.emplace_back(t->size());
      // In blocks, as the writer streams a tensor: the cut's ties carry from block to block.
      for (size_t first = 0; first < t->size(); first += 1000) {
        const size_t n = std::min<size_t>(1000, t->size() - first);
        zeros_out += prune::copy_pruned(std::span(*t).subspan(first, n), std::span(out.back()).subspan(first, n), cut);
      }
    }
    CHECK(selection.count() == std::min<uint64_t>(k, all.size()));
    std::vector<float> got;
    for (const auto& o : out) got.insert(got.end(), o.begin(), o.end());
    int mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(expected[i]);
    CHECK(mismatches == 0);
    CHECK(zeros_in == std::count(all.begin(), all.end(), 0.0f));
    CHECK(zeros_out == std::count(expected.begin(), expected.end(), 0.0f));
  }
}

TEST_CASE("prune_n_m keeps the n largest of every m along the chosen axis") {
  // [K=4, N=2], axis 0: column 0 is {1, -4, 3, 2} -> keeps -4 and 3; column 1 is {5, 6, -7, 8} -> 8, -7.
  std::vector<float> w = {1, 5, -4, 6, 3, -7, 2, 8};
  prune::prune_n_m(w, {4, 2}, 0, 2, 4);
  CHECK(w == std::vector<float>{0, 0, -4, 0, 3, -7, 0, 8});
  CHECK(prune::has_n_m_pattern(w, {4, 2}, 0, 2, 4));
  CHECK_FALSE(prune::has_n_m_pattern(std::vector<float>{1, 1, 1, 0}, {4}, 0, 2, 4));
}

TEST_CASE("magnitude pruning rewrites the selected weights and reports what it skipped") {
  auto model = parse_model(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[2,4] X) => (float[2,4] Y, float[2,4] Z)
<float[4,4] W = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16},
 float[4,4] S = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}>
{
  A = MatMul(X, W)
  Y = MatMul(A, S)
  Z = MatMul(X, S)
})");
  prune::PruneConfig config;
  config.sparsity = 0.25;
  const prune::PruneSummary s = prune::prune_model(*model, config);
  REQUIRE(s.tensors.size() == 1);  // S is shared by two MatMuls
  CHECK(s.tensors[0].zeros_after == 4);
  CHECK(weight_values(*model->graph().nodes()[0]) ==
        std::vector<float>{0, 0, 0, 0, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16});
  REQUIRE(s.skipped.size() == 2);
  CHECK(s.skipped[0].second == "the weight is shared with other nodes");
  ir::verify_invariants(*model);
  CHECK(ir::run_onnx_checker(*model).status == ir::CheckResult::Status::Passed);
}

TEST_CASE("pruned weights are made while the file is written, and hold what the report counts") {
  // Magnitude-pruned weights are produced on demand (ir::Bytes::produced): after prune_model and a save
  // none of them was built in memory, and the file holds, per tensor, the zero_smallest reference (layer
  // scope) or the count the report gives (global scope, one tensor with its own sparsity).
  TempDir dir;
  const fs::path source = kModels / "trained/digits_cnn.onnx";
  auto original = io::load_model(source);
  std::map<std::string, std::vector<float>> before;  // by node
  for (const ir::Node* n : original->graph().nodes())
    if (n->inputs().size() > 1 && n->input(1) && n->input(1)->constant()) before[rewrite::describe(*n)] = weight_values(*n);
  for (const bool global : {false, true}) {
    CAPTURE(global);
    prune::PruneConfig config;
    config.sparsity = 0.6;
    config.global = global;
    if (global) config.op_sparsity["Gemm"] = 0.3;
    auto model = io::load_model(source);
    const prune::PruneSummary s = prune::prune_model(*model, config);
    REQUIRE(s.tensors.size() >= 3);
    auto weights = [](const ir::Model& m) {
      std::map<std::string, const ir::Tensor*> out;
      for (const ir::Node* n : m.graph().nodes())
        if (n->inputs().size() > 1 && n->input(1) && n->input(1)->constant()) out[rewrite::describe(*n)] = n->input(1)->constant();
      return out;
    };
    for (const prune::TensorRecord& r : s.tensors) CHECK(weights(*model).at(r.node)->raw().unbuilt());
    io::save_model(*model, dir / "pruned.onnx");
    for (const prune::TensorRecord& r : s.tensors) CHECK(weights(*model).at(r.node)->raw().unbuilt());
    auto saved = io::load_model(dir / "pruned.onnx");
    // The executor makes them per node and run (GraphRunner's produced initializers), leaving them unbuilt,
    // and computes what it computes from the saved file.
    const std::vector<data::Feeds> samples = data::load_samples(*model, (kModels / "trained/inputs/digits_test").string());
    REQUIRE(!samples.empty());
    exec::Executor in_memory(*model);
    const std::vector<exec::Array> first = in_memory.run(samples[0]), second = in_memory.run(samples[0]);
    const std::vector<exec::Array> from_file = exec::Executor(*saved).run(samples[0]);
    for (const prune::TensorRecord& r : s.tensors) CHECK(weights(*model).at(r.node)->raw().unbuilt());
    REQUIRE(first.size() == from_file.size());
    for (size_t i = 0; i < first.size(); ++i) {
      CHECK(std::memcmp(first[i].bytes(), from_file[i].bytes(), from_file[i].nbytes()) == 0);
      CHECK(std::memcmp(second[i].bytes(), from_file[i].bytes(), from_file[i].nbytes()) == 0);
    }
    int64_t zeros = 0;
    for (const prune::TensorRecord& r : s.tensors) {
      CAPTURE(r.node);
      const std::vector<float>& w = before.at(r.node);
      const exec::Array a = exec::Array::from_tensor(*weights(*saved).at(r.node));
      const std::vector<float> got(a.data<float>(), a.data<float>() + a.numel());
      CHECK(r.zeros_before == std::count(w.begin(), w.end(), 0.0f));
      CHECK(r.zeros_after == std::count(got.begin(), got.end(), 0.0f));
      zeros += r.zeros_after;
      if (!global || r.op_type == "Gemm") {
        std::vector<float> expected = w;
        prune::zero_smallest(expected, static_cast<int64_t>(std::floor(r.target * static_cast<double>(w.size()))));
        CHECK(got == expected);
      }
      // What is kept is kept unchanged.
      int changed = 0;
      for (size_t i = 0; i < w.size(); ++i) changed += got[i] != 0.0f && got[i] != w[i];
      CHECK(changed == 0);
    }
    CHECK(zeros == s.zeros_after);
  }
}

TEST_CASE("pruning settings that make no sense are usage errors") {
  auto model = io::load_model(kModels / "trained/digits_mlp.onnx");
  prune::PruneConfig config;
  config.sparsity = 1.0;
  CHECK(error_of([&] { prune::prune_model(*model, config); }).find("sparsity must be in [0, 1)") != std::string::npos);
  config = {};
  config.method = prune::Method::NM;
  config.n = 4;
  CHECK(error_of([&] { prune::prune_model(*model, config); }).find("1 <= n < m") != std::string::npos);
  CHECK(error_of([&] { run(*model, "prune(method=channels,sparsity=1)"); }).find("prune: sparsity must be in [0, 1), not 1") !=
        std::string::npos);
  CHECK(error_of([&] { run(*model, "prune(op-sparsity=Conv)"); }).find("NAME=SPARSITY") != std::string::npos);
}

TEST_CASE("digits_cnn and digits_mlp at 50% global magnitude sparsity lose at most 2 points") {
  struct Case {
    const char* model;
    const char* inputs;
  };
  for (const Case& c : {Case{"trained/digits_cnn.onnx", "trained/digits_test_x.npy"},
                        Case{"trained/digits_mlp.onnx", "trained/digits_test_xflat.npy"}}) {
    const std::string name = c.model;
    CAPTURE(name);
    auto model = io::load_model(kModels / c.model);
    auto original = io::load_model(kModels / c.model);
    const pass::PipelineResult r = run(*model, "fuse,prune(sparsity=0.5),eliminate-dead-code");
    double zeros = 0, total = 0;
    for (const ir::Node* n : model->graph().nodes()) {
      if (n->op_type() != "Conv" && n->op_type() != "Gemm") continue;
      const std::vector<float> w = weight_values(*n);
      zeros += zero_fraction(w) * static_cast<double>(w.size());
      total += static_cast<double>(w.size());
    }
    CHECK(zeros / total == doctest::Approx(0.5).epsilon(0.001));
    const std::vector<data::Feeds> samples = data::load_samples(*original, (kModels / c.inputs).string());
    const exec::Array labels = data::read_npy((kModels / "trained/digits_test_y.npy").string());
    const double before = eval::label_accuracy(eval::run_samples(*original, samples, 0), labels).reference_accuracy;
    const double after = eval::label_accuracy(eval::run_samples(*model, samples, 0), labels).reference_accuracy;
    MESSAGE(name << ": " << before * 100 << "% -> " << after * 100 << "%");
    CHECK(before - after <= 0.02);
    CHECK(counter(r, "tensors-pruned") >= 3);
  }
}

TEST_CASE("2:4 pruning leaves the pattern on every pruned tensor of the real models") {
  for (const std::string name : {"trained/digits_cnn.onnx", "trained/digits_mlp.onnx", "trained/digits_vit.onnx"}) {
    CAPTURE(name);
    auto model = io::load_model(kModels / name);
    run(*model, "fuse");
    prune::PruneConfig config;
    config.method = prune::Method::NM;
    const prune::PruneSummary s = prune::prune_model(*model, config);
    REQUIRE(!s.tensors.empty());
    std::set<std::string> pruned;
    for (const prune::TensorRecord& r : s.tensors) pruned.insert(r.node);
    size_t checked = 0;
    for (const ir::Node* n : model->graph().nodes()) {
      if (!pruned.count(rewrite::describe(*n))) continue;
      const ir::Tensor& t = *n->input(1)->constant();
      const size_t axis = n->op_type() == "Conv" ? 1 : n->op_type() == "Gemm" ? (n->attribute_int("transB").value_or(0) ? 1 : 0)
                                                                            : t.dims().size() - 2;
      CHECK(prune::has_n_m_pattern(weight_values(*n), t.dims(), axis, 2, 4));
      CHECK(zero_fraction(weight_values(*n)) >= 0.5);
      ++checked;
    }
    CHECK(checked == s.tensors.size());
  }
}

TEST_CASE("clipping weight outliers before static quantization brings squeezenet closer to float") {
  auto original = io::load_model(kModels / "vision/squeezenet1.1_fp32.onnx");
  const std::string calib = (kModels / "vision/inputs/squeezenet_fish_fp32").string();
  const std::vector<data::Feeds> samples =
      data::load_samples(*original, (kModels / "vision/inputs/squeezenet_kitten_224_fp32").string());
  const eval::Outputs reference = eval::run_samples(*original, samples, 0);
  auto cosine_after = [&](const std::string& pipeline) {
    auto model = io::load_model(kModels / "vision/squeezenet1.1_fp32.onnx");
    run(*model, pipeline);
    return eval::compare_outputs(reference, eval::run_samples(*model, samples, 0), nullptr, "").outputs.at(0).cosine.value();
  };
  const std::string quantize = "quantize(mode=static,data=" + calib + ")";
  const double alone = cosine_after("fuse," + quantize);
  const double clipped = cosine_after("fuse,clip(percentile=99.9)," + quantize);
  MESSAGE("squeezenet static int8 cosine vs float: " << alone << " alone, " << clipped << " after clip(percentile=99.9)");
  CHECK(clipped > alone);
}

TEST_CASE("activation clipping bounds digits_cnn's Relus by what the calibration data produces") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  auto original = io::load_model(kModels / "trained/digits_cnn.onnx");
  const pass::PipelineResult r =
      run(*model, "fuse,clip(data=" + (kModels / "trained/digits_train_x.npy").string() + ",activation-percentile=99.99)");
  CHECK(counter(r, "relus-bounded") == 4);
  int64_t relus = 0, clips = 0;
  for (const ir::Node* n : model->graph().nodes()) {
    relus += n->op_type() == "Relu";
    clips += n->op_type() == "Clip";
  }
  CHECK(relus == 0);
  CHECK(clips == 4);
  const std::vector<data::Feeds> samples = data::load_samples(*original, (kModels / "trained/digits_test_x.npy").string());
  const exec::Array labels = data::read_npy((kModels / "trained/digits_test_y.npy").string());
  CHECK(eval::label_accuracy(eval::run_samples(*model, samples, 0), labels).reference_accuracy ==
        eval::label_accuracy(eval::run_samples(*original, samples, 0), labels).reference_accuracy);
}

TEST_CASE("clip takes exactly one rule and sane bounds") {
  auto model = io::load_model(kModels / "trained/digits_mlp.onnx");
  CHECK(error_of([&] { run(*model, "clip"); }).find("clip: nothing to do; give range=, percentile=, sigma=, data= or fp16-range=true") !=
        std::string::npos);
  CHECK(error_of([&] { run(*model, "clip(data=x.npy,activation-percentile=0)"); }).find("(0, 100]") != std::string::npos);
  CHECK(error_of([&] { run(*model, "clip(range=1,sigma=3)"); }).find("(got 2)") != std::string::npos);
  CHECK(error_of([&] { run(*model, "clip(range=2:1)"); }).find("LO < HI") != std::string::npos);
  CHECK(error_of([&] { run(*model, "clip(percentile=150)"); }).find("(0, 100]") != std::string::npos);
}

TEST_CASE("channel pruning removes filters and every reader of them exactly") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  run(*model, "fuse");
  // Zero 8 of /c1/Conv's 32 filters (weights and bias): they have the smallest L1 norm, so they are the
  // ones removed, and removing them must not change any output (Relu(0) = 0, MaxPool(0) = 0).
  ir::Node* c1 = nullptr;
  for (ir::Node* n : model->graph().nodes()) {
    if (n->name() == "/c1/Conv") c1 = n;
  }
  REQUIRE(c1 != nullptr);
  for (size_t input : {size_t{1}, size_t{2}}) {
    exec::Array a = exec::Array::from_tensor(*c1->input(input)->constant()).clone();
    const int64_t per_channel = a.numel() / a.dim(0);
    for (int64_t c = 0; c < 32; c += 4) std::fill_n(a.data<float>() + c * per_channel, per_channel, 0.0f);
    c1->set_input(input, rewrite::add_constant(model->graph(), "zeroed", a));
  }
  run(*model, "eliminate-dead-code");
  const std::string zeroed_text = ir::export_model(*model).SerializeAsString();
  auto zeroed = io::load_model_from_bytes(zeroed_text);

  prune::ChannelConfig config;
  config.ratio = 0.25;
  config.exclude_nodes = {"/c2/Conv", "/c3/Conv", "/fc1/Gemm", "/fc2/Gemm"};
  const prune::ChannelSummary s = prune::prune_channels(*model, config);
  REQUIRE(s.pruned.size() == 1);
  CHECK(s.pruned[0].channels_before == 32);
  CHECK(s.pruned[0].channels_after == 24);
  CHECK(c1->input(1)->constant()->dims()[0] == 24);
  ir::verify_invariants(*model);
  CHECK(ir::run_onnx_checker(*model).status == ir::CheckResult::Status::Passed);
  bool ran = false;
  CHECK(output_difference(*zeroed, *model, 1e-5, &ran) == "");
  CHECK(ran);
}

TEST_CASE("channel pruning of digits_cnn at 25%: about half the parameters, and why the classifier stays") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  run(*model, "fuse");
  int64_t before = 0, after = 0;
  for (const ir::Value* v : model->graph().initializers()) before += v->initializer()->numel();
  prune::ChannelConfig config;
  const prune::ChannelSummary s = prune::prune_channels(*model, config);
  run(*model, "eliminate-dead-code");
  for (const ir::Value* v : model->graph().initializers()) after += v->initializer()->numel();
  CHECK(s.pruned.size() == 4);  // c1, c2, c3 and fc1; fc2's outputs are the model's
  REQUIRE(s.kept.size() == 1);
  CHECK(s.kept[0].second == "its channels reach a graph output");
  // Producers and consumers both shrink by a quarter: about 0.75^2 of the weights stay.
  CHECK(static_cast<double>(after) / static_cast<double>(before) == doctest::Approx(0.5625).epsilon(0.05));
}

TEST_CASE("channel pruning follows depthwise Convs and Concat offsets") {
  // P's filter 1 is zero (and so is its bias), so it is the one removed, and the outputs must not move.
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,2,4,4] X) => (float[1,3,4,4] Y)
<float[4,2,1,1] W = {1, 2, 0, 0, -1, 0.5, 0.25, 3}, float[4] b = {0.1, 0, -0.2, 0.3},
 float[4,1,3,3] D = {1,0,1, 0,1,0, 1,0,1,  2,2,2, 2,2,2, 2,2,2,  0,1,0, 1,1,1, 0,1,0,  1,1,1, 1,0,1, 1,1,1},
 float[3,6,1,1] V = {1, 2, 3, 4, 5, 6,  -1, -2, -3, -4, -5, -6,  0.5, 0.5, 0.5, 0.5, 0.5, 0.5}>
{
  P = Conv(X, W, b)
  R = Relu(P)
  Q = Conv<group = 4, pads = [1, 1, 1, 1]>(R, D)
  C = Concat<axis = 1>(Q, X)
  Y = Conv(C, V)
})";
  auto model = parse_model(text);
  auto original = parse_model(text);
  run(*model, "shape-inference");
  prune::ChannelConfig config;
  config.ratio = 0.25;
  const prune::ChannelSummary s = prune::prune_channels(*model, config);
  REQUIRE(s.pruned.size() == 1);
  CHECK(s.pruned[0].channels_after == 3);
  std::map<std::string, std::vector<int64_t>> dims;
  for (const ir::Node* n : model->graph().nodes()) {
    if (n->op_type() == "Conv") dims[n->output(0)->name()] = n->input(1)->constant()->dims();
  }
  CHECK(dims["P"] == std::vector<int64_t>{3, 2, 1, 1});
  CHECK(dims["Q"] == std::vector<int64_t>{3, 1, 3, 3});
  CHECK(dims["Y"] == std::vector<int64_t>{3, 5, 1, 1});
  ir::verify_invariants(*model);
  CHECK(ir::run_onnx_checker(*model).status == ir::CheckResult::Status::Passed);
  bool ran = false;
  CHECK(output_difference(*original, *model, 1e-6, &ran) == "");
  CHECK(ran);
}
