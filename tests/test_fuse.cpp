// The fuse group on real models (../shared/models): what it must remove, that the answers stay the
// same on the models' own data, determinism, and the --verify-numerics rollback. The single rewrites
// are covered case by case in testdata/golden (structure and numerics); ONNX Runtime interop and the
// node counts against ONNX Runtime's basic optimization are in ort_interop.sh.
#include <doctest/doctest.h>

#include "data/npy.h"
#include "driver/numerics_check.h"
#include "helpers.h"
#include "pass/pipeline.h"
#include "report/stats.h"

using namespace mopt;
using namespace mopt::test;

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;

int64_t count_nodes(const ir::Model& m) {
  int64_t n = 0;
  m.for_each_graph([&](const ir::Graph& g) { n += static_cast<int64_t>(g.node_count()); });
  return n;
}

pass::ManagerOptions verifying_each() {
  pass::ManagerOptions options;
  options.verify_each = true;
  return options;
}

pass::PipelineResult fuse(ir::Model& model, const pass::ManagerOptions& options = verifying_each()) {
  return pass::run_pipeline(pass::parse_pipeline("fuse"), model, options);
}

// Largest |a - b| over all outputs and samples, relative to max(1, max|a|).
double relative_difference(const eval::Outputs& a, const eval::Outputs& b) {
  double worst = 0;
  for (size_t s = 0; s < a.per_sample.size(); ++s) {
    for (size_t o = 0; o < a.names.size(); ++o) {
      const double diff = scaled_max_diff(a.per_sample[s][o], b.per_sample[s][o]);
      worst = std::max(worst, diff);  // scaled_max_diff is NaN-aware: NaN or Inf where the other differs is +inf
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("fuse folds digits_cnn's BatchNormalization and keeps its labelled accuracy") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  auto original = io::load_model(kModels / "trained/digits_cnn.onnx");
  REQUIRE(count_op(*model, "BatchNormalization") == 3);
  const pass::PipelineResult r = fuse(*model);
  CHECK(count_op(*model, "BatchNormalization") == 0);
  CHECK(counter(r, "batchnorm-folded-into-conv") == 3);
  CHECK(count_nodes(*model) == 12);

  const std::vector<data::Feeds> samples = data::load_samples(*original, (kModels / "trained/digits_test_x.npy").string());
  const exec::Array labels = data::read_npy((kModels / "trained/digits_test_y.npy").string());
  const eval::Outputs before = eval::run_samples(*original, samples, 1);
  const eval::Outputs after = eval::run_samples(*model, samples, 1);
  CHECK(relative_difference(before, after) <= 1e-5);
  const eval::LabelMetrics a = eval::label_accuracy(before, labels), b = eval::label_accuracy(after, labels);
  CHECK(a.reference_accuracy == b.reference_accuracy);
}

TEST_CASE("fuse folds PaddleOCR det's constant subgraphs and BatchNorms, with the same outputs") {
  auto model = io::load_model(kModels / "ocr/ppocrv4_det.onnx");
  auto original = io::load_model(kModels / "ocr/ppocrv4_det.onnx");
  const int64_t nodes_before = count_nodes(*model);
  REQUIRE(count_op(*model, "Constant") > 300);
  const pass::PipelineResult r = fuse(*model);
  CHECK(count_op(*model, "Constant") == 0);
  CHECK(count_op(*model, "BatchNormalization") == 0);  // two after Conv, one after ConvTranspose
  CHECK(count_nodes(*model) < nodes_before / 2);  // 672 -> 269 (ONNX Runtime basic: 328)
  CHECK(counter(r, "channel-ops-folded") > 0);
  CHECK(counter(r, "rewrites-refused") > 0);  // Adds after Convs whose output has other readers
  const std::vector<data::Feeds> samples = data::load_samples(*original, (kModels / "ocr/inputs/det").string());
  CHECK(relative_difference(eval::run_samples(*original, samples, 0), eval::run_samples(*model, samples, 0)) <= 1e-4);
}

TEST_CASE("a fold both If branches make of an outer weight is stored once, in the main graph") {
  // Each branch reshapes the same outer weight with axes of its own Constant: folded in the branches, the
  // weight would be stored twice (silero_vad's LSTM weights grew the model 1.39x).
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (bool C, float[2,4] X) => (float[2,3] Y) <float[4,3] W = {1,2,3,4,5,6,7,8,9,10,11,12}> {
  Y = If(C) <
    then_branch = t () => (float[2,3] TY) { A = Constant <value = int64[1] {0}> ()  U = Unsqueeze(W, A)  M = MatMul(X, U)  TY = Squeeze(M, A) },
    else_branch = e () => (float[2,3] EY) { B = Constant <value = int64[1] {0}> ()  V = Unsqueeze(W, B)  N = MatMul(X, V)  R = Squeeze(N, B)  EY = Neg(R) }
  >
})";
  auto model = parse_model(text);
  auto original = parse_model(text);
  const pass::PipelineResult r = fuse(*model);
  CHECK(counter(r, "folds-shared") == 1);
  CHECK(count_op(*model, "Unsqueeze") == 0);
  CHECK(count_op(*model, "Constant") == 0);
  // One float initializer of 12 values in the whole model (the unsqueezed W), in the main graph.
  int64_t float_values = 0, subgraph_initializers = 0;
  model->for_each_graph([&](const ir::Graph& g) {
    for (const ir::Value* v : g.initializers()) {
      if (v->initializer()->dtype() == ir::dtype::kFloat) float_values += v->initializer()->numel();
      if (g.parent_node() != nullptr) ++subgraph_initializers;
    }
  });
  CHECK(float_values == 12);
  CHECK(subgraph_initializers == 0);
  CHECK(ir::run_onnx_checker(*model).status != ir::CheckResult::Status::Failed);
  for (const bool c : {true, false}) {
    CAPTURE(c);
    data::Feeds feeds;
    feeds.emplace("C", exec::Array::scalar<bool>(ir::dtype::kBool, c));
    exec::Array x(ir::dtype::kFloat, {2, 4});
    for (int64_t i = 0; i < 8; ++i) x.data<float>()[i] = static_cast<float>(i) * 0.5f - 1.0f;
    feeds.emplace("X", x);
    const eval::Outputs before = eval::run_samples(*original, {feeds}, 1), after = eval::run_samples(*model, {feeds}, 1);
    CHECK(relative_difference(before, after) == 0.0);
  }
}

TEST_CASE("fuse does not grow silero_vad: the LSTM weights both sample-rate branches read stay stored once") {
  auto model = io::load_model(kModels / "audio/silero_vad_v5_16k_op15.onnx");
  auto original = io::load_model(kModels / "audio/silero_vad_v5_16k_op15.onnx");
  const uint64_t before = report::collect_stats(*model).parameter_bytes;
  const pass::PipelineResult r = fuse(*model);
  CHECK(counter(r, "folds-shared") > 0);
  CHECK(report::collect_stats(*model).parameter_bytes <= before);
  const std::vector<data::Feeds> samples = data::load_samples(*original, (kModels / "audio/inputs/silero_v5_x100").string());
  CHECK(relative_difference(eval::run_samples(*original, samples, 1), eval::run_samples(*model, samples, 1)) <= 1e-6);
}

TEST_CASE("fuse is deterministic: the same model twice gives byte-identical output") {
  auto a = io::load_model(kModels / "trained/digits_vit.onnx");
  auto b = io::load_model(kModels / "trained/digits_vit.onnx");
  fuse(*a);
  fuse(*b);
  CHECK(ir::export_model(*a).SerializeAsString() == ir::export_model(*b).SerializeAsString());
  CHECK(count_op(*a, "Constant") == 0);
}

TEST_CASE("--verify-numerics rolls back the pass whose outputs drift and names it") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  eval::Evaluation evaluation;
  for (uint64_t s = 0; s < 2; ++s) evaluation.samples.push_back(data::random_feeds(*model, {}, s));
  evaluation.reference = eval::run_samples(*model, evaluation.samples, 1);
  evaluation.threads = 1;
  pass::ManagerOptions options;
  options.verify_each = true;
  options.evaluation = &evaluation;
  SUBCASE("a zero tolerance refuses BatchNorm folding, which rounds differently") {
    driver::NumericsCheck check(&evaluation, 0);
    options.instruments = {&check};
    const pass::PipelineResult r = fuse(*model, options);
    CHECK(count_op(*model, "BatchNormalization") == 3);
    bool named = false;
    for (const auto& w : r.warnings) named = named || w.rfind("fold-batchnorm changed the outputs", 0) == 0;
    CHECK(named);
    for (const auto& p : r.passes) CHECK(p.rolled_back == (p.name == "fold-batchnorm" ? 1 : 0));
    ir::verify_invariants(*model);
  }
  SUBCASE("the default tolerance keeps it") {
    driver::NumericsCheck check(&evaluation, 1e-4);
    options.instruments = {&check};
    const pass::PipelineResult r = fuse(*model, options);
    CHECK(count_op(*model, "BatchNormalization") == 0);
    for (const auto& p : r.passes) CHECK(p.rolled_back == 0);
  }
}

TEST_CASE("a fuse group that has not converged within its cap says so") {
  auto model = io::load_model(kModels / "trained/digits_cnn.onnx");
  const pass::PipelineResult r = pass::run_pipeline(pass::parse_pipeline("fuse(max-iterations=1)"), *model);
  REQUIRE(!r.warnings.empty());
  CHECK(r.warnings.back().find("did not converge within 1 iterations") != std::string::npos);
}

namespace {
std::vector<fs::path> shared_models() {
  std::vector<fs::path> models;
  for (const auto& entry : fs::recursive_directory_iterator(kModels)) {
    if (entry.is_regular_file() && entry.path().extension() == ".onnx") models.push_back(entry.path());
  }
  std::sort(models.begin(), models.end());
  return models;
}
}  // namespace

TEST_CASE("the fuse group converges in at most 3 rounds on every shared model, and each of its passes is idempotent") {
  const std::vector<fs::path> models = shared_models();
  REQUIRE(models.size() >= 8);
  for (const fs::path& path : models) {
    CAPTURE(path.filename().string());
    auto model = io::load_model(path);
    const pass::PipelineResult r = fuse(*model);
    for (const auto& w : r.warnings) CHECK(w.find("did not converge") == std::string::npos);
    for (const auto& p : r.passes) CHECK(p.runs <= 3);  // the last round changes nothing: at most 2 that do
    // On the fused model every pass of the group, run again alone, finds nothing left to do.
    for (const auto& p : r.passes) {
      CAPTURE(p.spec);
      const pass::PipelineResult again = pass::run_pipeline(pass::parse_pipeline(p.spec), *model);
      CHECK(!again.passes.at(0).changed);
    }
  }
}

TEST_CASE("eliminate-common-subexpressions tells apart large initializers that begin alike and merges the equal ones") {
  // Three 2048-float weights whose first 4 KiB are all zeros: A differs from B and C in its last value.
  onnx::ModelProto p = parse_proto(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2048] X) => (float[2048] Y) {
      S = Add(X, A)
      T = Mul(S, B)
      Y = Sub(T, C)
    })");
  for (const auto& [name, last] : {std::pair{"A", 1.0f}, std::pair{"B", 2.0f}, std::pair{"C", 2.0f}}) {
    std::vector<float> values(2048, 0.0f);
    values.back() = last;
    auto* t = p.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(2048);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  }
  auto model = io::load_model_from_bytes(p.SerializeAsString());
  const pass::PipelineResult r = pass::run_pipeline(pass::parse_pipeline("eliminate-common-subexpressions"), *model, verifying_each());
  CHECK(r.passes.at(0).changed);
  std::vector<std::string> names;
  for (const ir::Value* v : model->graph().initializers()) names.push_back(v->name());
  CHECK(names == std::vector<std::string>{"A", "B"});
}
