// libFuzzer target: differential fuzzing of the rewrites. The bytes choose a random valid graph
// (tests/random_graph.h, one byte per decision); every pass that must keep the outputs runs on it alone
// (after shape inference) and as the fuse group, with the IR invariants and ONNX's checker after it, and
// the result must give the original's outputs on random inputs within 1e-4 of max(1, max|output|), as in
// tests/test_differential.cpp. A pass that throws on a valid graph, or changes what it computes, aborts
// with the graph's text: a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "helpers.h"
#include "random_graph.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mopt;
  static const bool setup = [] {
    exec::set_run_time_limit(2.0);
    exec::set_max_tensor_bytes(64u << 20);
    exec::set_thread_count(1);
    return true;
  }();
  (void)setup;
  const std::string text = testing::random_graph(testing::byte_choices(data, size));
  std::unique_ptr<ir::Model> original = test::parse_model(text);
  for (const std::string& pass : testing::kOutputKeepingPasses) {
    const std::string pipeline = testing::differential_pipeline(pass);
    std::unique_ptr<ir::Model> model = io::clone_model(*original);
    std::string difference;
    try {
      pass::ManagerOptions options;
      options.verify_each = true;
      pass::run_pipeline(pass::parse_pipeline(pipeline), *model, options);
      difference = test::output_difference(*original, *model, 1e-4, nullptr, 2);
    } catch (const std::exception& e) {
      difference = std::string("threw: ") + e.what();
    }
    if (!difference.empty()) {
      std::fprintf(stderr, "fuzz_passes: '%s' %s\n%s\n", pipeline.c_str(), difference.c_str(), text.c_str());
      std::abort();
    }
  }
  return 0;
}
