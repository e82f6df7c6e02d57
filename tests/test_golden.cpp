// Golden model-in/model-out tests: testdata/golden/*.onnxtxt hold cases in ONNX text syntax,
// separated by lines "# -----" (as MLIR's canonicalize.mlir does). Each case:
//
//   # case: <name>
//   # pipeline: <pipeline text>
//   # tolerance: <relative tolerance>   (optional; default 1e-6, for rewrites that reassociate float math)
//   <input model>
//   # expect:
//   <expected model>            or the single word   unchanged
//
// A case that expects a change must also differ from its input (the rewrite fired); "unchanged" cases
// are the _nofold twins that must stay untouched. Every pipeline runs with --verify-each, and every
// rewritten model must compute the same outputs as its input on seeded random feeds (reference executor,
// max|diff| <= 1e-6 relative).
#include <doctest/doctest.h>

#include <algorithm>

#include "helpers.h"

using namespace mopt;
using namespace mopt::test;

namespace {

struct GoldenCase {
  std::string file, name, pipeline, input, expect;
  double tolerance = 1e-6;
};

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<GoldenCase> read_cases(const fs::path& file) {
  std::vector<GoldenCase> cases;
  GoldenCase current;
  current.file = file.filename().string();
  std::string* section = &current.input;
  std::istringstream in(read_file(file));
  auto finish = [&] {
    if (!trim(current.input).empty()) cases.push_back(current);
    current = GoldenCase{file.filename().string(), "", "", "", "", 1e-6};
    section = &current.input;
  };
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# -----", 0) == 0) finish();
    else if (line.rfind("# case:", 0) == 0) current.name = trim(line.substr(7));
    else if (line.rfind("# pipeline:", 0) == 0) current.pipeline = trim(line.substr(11));
    else if (line.rfind("# tolerance:", 0) == 0) current.tolerance = std::stod(trim(line.substr(12)));
    else if (line.rfind("# expect:", 0) == 0) section = &current.expect;
    else if (line.rfind("#", 0) == 0) continue;  // comments
    else *section += line + "\n";
  }
  finish();
  return cases;
}

}  // namespace

TEST_CASE("golden pass cases") {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(MOPT_SOURCE_DIR) / "testdata/golden")) {
    if (e.path().extension() == ".onnxtxt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  size_t count = 0, numeric = 0;
  for (const auto& file : files) {
    for (const GoldenCase& c : read_cases(file)) {
      ++count;
      CAPTURE(c.file);
      CAPTURE(c.name);
      REQUIRE_MESSAGE(!c.pipeline.empty(), "case without a pipeline");
      auto model = parse_model(c.input);
      const auto original = parse_model(c.input);
      run(*model, c.pipeline);
      const std::string change = graph_difference(*model, *original);
      if (trim(c.expect) == "unchanged") {
        CHECK_MESSAGE(change.empty(), "a _nofold case changed:\n" << change);
      } else {
        CHECK_MESSAGE(!change.empty(), "the rewrite did not fire");
        const std::string diff = graph_difference(*model, *parse_model(c.expect));
        CHECK_MESSAGE(diff.empty(), "differs from the expected model:\n" << diff << "actual:\n" << print_graph(*model));
        bool ran = false;
        const std::string numeric_diff = output_difference(*original, *model, c.tolerance, &ran);
        CHECK_MESSAGE(numeric_diff.empty(), "the rewrite changed the outputs: " << numeric_diff);
        if (ran) ++numeric;
      }
    }
  }
  MESSAGE(count << " golden cases, " << numeric << " rewrites checked numerically");
  CHECK(numeric >= count / 3);
  CHECK(count >= 10);
}
