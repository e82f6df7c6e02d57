// The malformed-model corpus (testdata/malformed/*.onnxtxt): each case is a model that once crashed,
// hung or over-read somewhere (kernels, ONNX's shape inference), with the one-line error it must give
// instead (`# expect: TEXT`). Every case goes through the main job (mopt optimize's driver) and through the
// executor directly; both must fail with that line, write nothing and leave the input as it was. CI runs
// this under AddressSanitizer + UndefinedBehaviorSanitizer, so a crash or over-read fails the suite.
#include <doctest/doctest.h>

#include <algorithm>

#include "driver/optimize.h"
#include "helpers.h"
#include "data/npy.h"
#include "ir/validate.h"

#include <sys/stat.h>

#include <chrono>

using namespace mopt;
using namespace mopt::test;

namespace {

struct MalformedCase {
  fs::path file;
  std::string expect;
  std::string text;
  bool at_run = false;  // "# stage: run": only running it shows the problem (shapes known at run time)
  data::ShapeOverrides shapes;  // "# shape: x=1,3,2,2" for that run
};

std::vector<MalformedCase> corpus() {
  std::vector<MalformedCase> out;
  for (const auto& entry : fs::directory_iterator(fs::path(MOPT_SOURCE_DIR) / "testdata/malformed")) {
    if (entry.path().extension() != ".onnxtxt") continue;
    MalformedCase c;
    c.file = entry.path();
    c.text = read_file(entry.path());
    std::istringstream lines(c.text);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("# expect: ", 0) == 0) c.expect = line.substr(10);
      if (line == "# stage: run") c.at_run = true;
      if (line.rfind("# shape: ", 0) == 0) c.shapes.add_shape(line.substr(9));
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
    if (c.at_run) continue;
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

TEST_CASE("malformed models whose problem shows only at run time: the kernel refuses with its line, the main job does not crash") {
  size_t run_cases = 0;
  for (const MalformedCase& c : corpus()) {
    if (!c.at_run) continue;
    ++run_cases;
    CAPTURE(c.file.filename().string());
    auto model = parse_model(model_text(c.text));
    exec::Executor executor(*model);
    const data::Feeds feeds = data::random_feeds(*model, c.shapes, 0);
    if (c.expect.rfind("ok", 0) == 0) CHECK(error_of([&] { executor.run(feeds); }).empty());  // valid, just extreme
    else CHECK(error_of([&] { executor.run(feeds); }).find(c.expect) != std::string::npos);
    // The default accuracy check cannot run it: a warning, and the model is still written.
    TempDir dir;
    write_file(dir / "m.onnx", parse_proto(model_text(c.text)).SerializeAsString());
    driver::OptimizeRequest request;
    request.input = dir / "m.onnx";
    request.pipeline = pass::parse_pipeline("fuse");  // shape inference, folding with the kernels, every fusion
    request.compressed_size = false;
    request.accuracy.shapes = c.shapes;
    const std::string message = error_of([&] { driver::run_optimize(request); });
    CHECK(message.find('\n') == std::string::npos);
  }
  CHECK(run_cases >= 10);
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

namespace {

fs::path write_text_model(const TempDir& dir, const std::string& name, const std::string& text) {
  const fs::path path = dir / name;
  write_file(path, parse_proto(text).SerializeAsString());
  return path;
}

const char* kIdentity = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1,4] x) => (float[1,4] y) <float[1,4] w = {1.0, 2.0, 3.0, 4.0}> {
  y = Mul(x, w)
})";

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("a Loop with a huge trip count stops at the time limit instead of hanging") {
  const char* text = R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[1] x) => (float[1] y) <int64 n = {4611686018427387904}, bool go = {1}> {
  y = Loop (n, go, x) <body = b (int64 i, bool c, float[1] v) => (bool c2, float[1] v2) {
    c2 = Identity(c)
    v2 = Identity(v)
  }>
})";
  auto model = parse_model(text);
  exec::set_run_time_limit(0.3);
  exec::Executor executor(*model);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = error_of([&] { executor.run({{"x", exec::Array(ir::dtype::kFloat, {1})}}); });
  exec::set_run_time_limit(0);
  CHECK(message.find("the executor stopped after 0.3 s (--max-eval-seconds)") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
}

TEST_CASE(".npy headers are checked against the file before anything is allocated") {
  auto npy = [](const std::string& shape, size_t body) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header += '\n';
    std::string out = "\x93NUMPY";
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(header.size() & 0xff);
    out += static_cast<char>(header.size() >> 8);
    return out + header + std::string(body, '\0');
  };
  // 1e9 floats claimed by a 144-byte file: refused without a 4 GB allocation.
  CHECK(error_of([&] { data::parse_npy(npy("(1000000000,)", 16), "big.npy"); }).find("truncated .npy data") != std::string::npos);
  CHECK(error_of([&] { data::parse_npy(npy("(99999999999999999999,)", 16), "huge.npy"); }).find("too large") != std::string::npos);
  CHECK(error_of([&] { data::parse_npy(npy("(4611686018427387904, 4)", 16), "wrap.npy"); }).find("more elements") != std::string::npos);
  CHECK(error_of([&] { data::parse_npy(npy("(3, x)", 16), "bad.npy"); }).find("malformed .npy shape") != std::string::npos);
  CHECK(data::parse_npy(npy("(2, 2)", 16), "ok.npy").shape() == exec::Shape{2, 2});
}

TEST_CASE("data and external-data paths that name a FIFO are refused at once, not waited on") {
  TempDir dir;
  REQUIRE(mkfifo((dir / "fifo.npy").c_str(), 0600) == 0);
  CHECK(error_of([&] { data::read_npy((dir / "fifo.npy").string()); }).find("is not a regular file") != std::string::npos);
  onnx::ModelProto p = parse_proto(kIdentity);
  onnx::TensorProto* w = p.mutable_graph()->mutable_initializer(0);
  w->clear_float_data();
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = w->add_external_data();
  kv->set_key("location");
  kv->set_value("weights.bin");
  REQUIRE(mkfifo((dir / "weights.bin").c_str(), 0600) == 0);
  write_file(dir / "m.onnx", p.SerializeAsString());
  CHECK(error_of([&] { io::load_model(dir / "m.onnx"); }).find("is not a regular file") != std::string::npos);
}

TEST_CASE("outputs: never onto the input's files, report and model committed together, --in-place keeps links and modes") {
  TempDir dir;
  const fs::path input = write_text_model(dir, "m.onnx", kIdentity);
  driver::OptimizeRequest r;
  r.input = input;
  r.pipeline = pass::parse_pipeline("eliminate-dead-code");
  r.compressed_size = false;
  r.accuracy.source = "off";

  r.output = dir / "out.onnx";
  r.report = dir / "out.onnx";
  CHECK(error_of([&] { driver::run_optimize(r); }).find("the report path") == 0);
  r.report = dir / "nowhere" / "r.json";
  CHECK(error_of([&] { driver::run_optimize(r); }).find("folder") != std::string::npos);
  CHECK(listing(dir.path()) == std::vector<std::string>{"m.onnx"});

  // A model whose names are not UTF-8 still gets its report (the name is replaced there), and both files appear.
  onnx::ModelProto p = parse_proto(kIdentity);
  p.mutable_graph()->mutable_node(0)->set_name("bad\xff name");
  write_file(dir / "u.onnx", p.SerializeAsString());
  r.input = dir / "u.onnx";
  r.report = dir / "u.json";
  r.output = dir / "u.out.onnx";
  driver::run_optimize(r);
  CHECK(fs::exists(dir / "u.out.onnx"));
  CHECK(read_file(dir / "u.json").find("\"changed\"") != std::string::npos);

  // --in-place through a symlink replaces the file it points to and keeps the file's permissions.
  fs::permissions(input, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  fs::create_symlink(input, dir / "link.onnx");
  r.input = dir / "link.onnx";
  r.output.clear();
  r.report = dir / "inplace.json";
  r.in_place = true;
  driver::run_optimize(r);
  CHECK(fs::is_symlink(dir / "link.onnx"));
  CHECK((fs::status(input).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));

  // A failed gate with --in-place leaves the input as it was; the report says so.
  const std::string before = read_file(input);
  r.gates.max_size = 1;
  const driver::OptimizeResult gated = driver::run_optimize(r);
  CHECK(gated.input_kept);
  CHECK(read_file(input) == before);
  CHECK(read_file(dir / "inplace.json").find("--in-place left the input model unchanged") != std::string::npos);
}
