// The malformed-model corpus (testdata/malformed/*.onnxtxt): each case is a model that once crashed,
// hung or over-read somewhere (kernels, ONNX's shape inference), with the one-line error it must give
// instead (`# expect: TEXT`). Every case goes through the main job (mopt optimize's driver) and through the
// executor directly; both must fail with that line, write nothing and leave the input as it was. CI runs
// this under AddressSanitizer + UndefinedBehaviorSanitizer, so a crash or over-read fails the suite.
#include <doctest/doctest.h>

#include <algorithm>

#include "driver/optimize.h"
#include "helpers.h"
#include "ir/validate.h"

using namespace mopt;
using namespace mopt::test;

namespace {

struct MalformedCase {
  fs::path file;
  std::string expect;
  std::string text;
};

std::vector<MalformedCase> corpus() {
  std::vector<MalformedCase> out;
  for (const auto& entry : fs::directory_iterator(fs::path(MOPT_SOURCE_DIR) / "testdata/malformed")) {
    if (entry.path().extension() != ".onnxtxt") continue;
    MalformedCase c{entry.path(), "", read_file(entry.path())};
    std::istringstream lines(c.text);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("# expect: ", 0) == 0) c.expect = line.substr(10);
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.file < b.file; });
  return out;
}

// The model text without its comment lines (the ONNX text parser takes none).
std::string model_text(const std::string& text) {
  std::istringstream lines(text);
  std::string out;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("#", 0) != 0) out += line + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("every malformed-corpus model fails with its one clear line, writes nothing and leaves the input alone") {
  const std::vector<MalformedCase> cases = corpus();
  REQUIRE(cases.size() >= 15);
  for (const MalformedCase& c : cases) {
    CAPTURE(c.file.filename().string());
    REQUIRE_FALSE(c.expect.empty());
    TempDir dir;
    const fs::path input = dir / "model.onnx";
    const std::string bytes = parse_proto(model_text(c.text)).SerializeAsString();
    write_file(input, bytes);

    driver::OptimizeRequest request;
    request.input = input;
    request.pipeline = pass::parse_pipeline("fuse");
    request.compressed_size = false;
    const std::string message = error_of([&] { driver::run_optimize(request); });
    CHECK(message.find(c.expect) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir.path())) files.push_back(e.path().filename().string());
    CHECK(files == std::vector<std::string>{"model.onnx"});
    CHECK(read_file(input) == bytes);

    // The executor refuses it too, before any kernel runs.
    auto model = io::load_model(input);
    CHECK(error_of([&] { exec::Executor executor(*model); }).find(c.expect) != std::string::npos);
  }
}

TEST_CASE("names are printable in every message: control characters, escapes and invalid UTF-8 become \\xNN") {
  CHECK(ir::printable("conv1") == "conv1");
  CHECK(ir::printable("a\nwrote out.onnx") == "a\\x0awrote out.onnx");
  CHECK(ir::printable("\x1b[31mred") == "\\x1b[31mred");
  CHECK(ir::printable("caf\xc3\xa9") == "caf\xc3\xa9");  // valid UTF-8 stays
  CHECK(ir::printable("bad\xff\xfe") == "bad\\xff\\xfe");
  CHECK(ir::printable("cut\xc3") == "cut\\xc3");
  auto model = parse_model(model_text(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4,2,2] x) => (float[1,1,4,4] y) {
  y = DepthToSpace <blocksize = 0> (x)
})"));
  model->graph().nodes()[0]->mutable_proto().set_name("evil\nmopt: wrote x.onnx\x1b[0m");
  const std::string message = error_of([&] { ir::validate_model(*model); });
  CHECK(message == "DepthToSpace 'evil\\x0amopt: wrote x.onnx\\x1b[0m': blocksize=0 is not allowed (it must be at least 1)");
}
