// Differential testing of the rewrites: random valid graphs (tests/random_graph.h) through every pass that
// must not change what a model computes, each alone and as the `fuse` group; the result must pass the IR
// invariants and ONNX's checker and give the original's outputs on random inputs (mopt's executor). Every
// such pass must fire on some of the graphs, so a generator that stopped producing its pattern fails too.
// MOPT_DIFF_DUMP=DIR writes the first graphs and their fused forms for tests/ort_interop.sh to run in ONNX
// Runtime. fuzz/fuzz_passes.cpp runs the same check with choices from libFuzzer.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <map>

#include "helpers.h"
#include "io/model_io.h"
#include "pass/manager.h"
#include "random_graph.h"

using namespace mopt;
using namespace mopt::test;

namespace {

constexpr int kGraphs = 1000;
constexpr double kTolerance = 1e-4;  // of max(1, max|output|): refolded weights round differently

}  // namespace

TEST_CASE("differential: passes that keep the outputs keep them on random graphs") {
  const char* dump = std::getenv("MOPT_DIFF_DUMP");
  std::map<std::string, int> fired;
  int ran = 0;
  for (int seed = 0; seed < kGraphs; ++seed) {
    const std::string text = testing::random_graph(testing::seeded_choices(static_cast<uint64_t>(seed)));
    CAPTURE(seed);
    CAPTURE(text);
    std::unique_ptr<ir::Model> original;
    REQUIRE_NOTHROW(original = parse_model(text));
    ir::verify_invariants(*original);
    for (const std::string& pass : testing::kOutputKeepingPasses) {
      CAPTURE(pass);
      std::unique_ptr<ir::Model> model = io::clone_model(*original);
      pass::ManagerOptions options;
      options.verify_each = true;  // invariants and ONNX's checker after the pass
      pass::PipelineResult result;
      REQUIRE_NOTHROW(result = pass::run_pipeline(pass::parse_pipeline(testing::differential_pipeline(pass)), *model, options));
      bool changed = pass == "fuse" ? false : result.passes.back().changed;
      if (pass == "fuse") {
        for (const pass::PassRun& run : result.passes) changed = changed || (run.changed && run.name != "shape-inference");
      }
      if (!changed) continue;
      ++fired[pass];
      bool executed = false;
      const std::string difference = output_difference(*original, *model, kTolerance, &executed, 2);
      CHECK_MESSAGE(difference.empty(), difference);
      CHECK(executed);
      ran += executed;
      if (dump && pass == "fuse" && fired[pass] <= 40) {
        const fs::path dir = fs::path(dump);
        fs::create_directories(dir);
        io::save_model(*original, dir / fmt::format("graph{:03}.onnx", seed));
        io::save_model(*model, dir / fmt::format("graph{:03}.fused.onnx", seed));
      }
    }
  }
  for (const std::string& pass : testing::kOutputKeepingPasses) {
    CAPTURE(pass);
    CHECK(fired[pass] > 0);
  }
  std::string counts;
  for (const auto& [pass, n] : fired) counts += fmt::format(" {}={}", pass, n);
  MESSAGE("differential: " << kGraphs << " graphs, " << ran << " rewritten models compared; rewrites per pass:" << counts);
}

TEST_CASE("differential: the comparison catches a rewrite that changes the outputs") {
  // The check above must be able to fail: the same graph with a float weight's first value set to 9 (the
  // generator's values lie in [-1, 2.25]) differs from the original, unless that weight feeds dead code.
  int detected = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::string text = testing::random_graph(testing::seeded_choices(seed));
    for (size_t at = text.find("= {"); at != std::string::npos; at = text.find("= {", at + 1)) {
      const size_t declaration = text.find_last_of(",<", at) + 1;
      if (text.compare(text.find_first_not_of(' ', declaration), 5, "float") != 0) continue;
      const std::string changed = text.substr(0, at + 3) + "9" + text.substr(text.find_first_of(",}", at));
      bool executed = false;
      const std::string difference = output_difference(*parse_model(text), *parse_model(changed), kTolerance, &executed, 2);
      CHECK(executed);
      detected += !difference.empty();  // a weight of dead code changes nothing
      break;
    }
  }
  CHECK(detected >= 3);
}
