// The C++ API (include/mopt/mopt.h) as a user links it: libmopt.so only, no internal header. Its reports
// must carry the same numbers as the tool's for the same command on a real model, its errors the tool's
// messages and exit codes, and Model's step-by-step pipeline the same bytes as `mopt optimize --passes`.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "mopt/mopt.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kModels = MOPT_SHARED_MODELS;
const std::string kTool = MOPT_BINARY;

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot read " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh folder per test case.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("mopt_api_" + std::to_string(std::rand()) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
};

int tool(const std::string& args) { return std::system((kTool + " " + args + " >/dev/null 2>&1").c_str()); }

// What must agree between two reports of the same job: everything but paths, times and the command line.
json comparable(json report) {
  report.erase("timings");
  report.erase("invocation");
  for (const char* side : {"input", "output"}) report[side].erase("path");
  // Times anywhere inside (passes[].seconds, accuracy.seconds, calibration.seconds_per_row, ...).
  std::function<void(json&)> drop_times = [&](json& j) {
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end();) {
        if (it.key().find("seconds") != std::string::npos) it = j.erase(it);
        else drop_times(*it++);
      }
    } else if (j.is_array()) {
      for (json& e : j) drop_times(e);
    }
  };
  drop_times(report);
  return report;
}

}  // namespace

TEST_CASE("run(quantize) on digits_cnn with real data reports the numbers the tool reports") {
  Scratch s;
  const std::string model = (kModels / "trained/digits_cnn.onnx").string();
  const std::string calib = (kModels / "trained/digits_train_x.npy").string();
  const std::string test_x = (kModels / "trained/digits_test_x.npy").string();
  const std::string test_y = (kModels / "trained/digits_test_y.npy").string();
  const mopt::api::Result r = mopt::api::run("quantize", model,
                                             {{"output", (s.dir / "api.onnx").string()}, {"data", calib}, {"accuracy", test_x},
                                              {"labels", test_y}, {"per_channel", "true"}, {"quiet", "true"}});
  CHECK(r.exit_code == 0);
  CHECK(r.gates_passed());
  CHECK(r.output == (s.dir / "api.onnx").string());
  CHECK(r.report_path == (s.dir / "api.onnx.report.json").string());
  CHECK(r.report_json == slurp(r.report_path));
  // The tool, same job: `mopt quantize MODEL ...`.
  REQUIRE(tool("quantize " + model + " -o " + (s.dir / "cli.onnx").string() + " --data " + calib + " --accuracy " + test_x +
               " --labels " + test_y + " --per-channel -q") == 0);
  const json api = json::parse(r.report_json);
  const json cli = json::parse(slurp(s.dir / "cli.onnx.report.json"));
  CHECK(api["accuracy"]["labels"]["count"] == 360);
  CHECK(api["accuracy"]["data"]["kind"] == "data");
  CHECK(api["output"]["file_bytes"].get<uint64_t>() < api["input"]["file_bytes"].get<uint64_t>());
  CHECK(comparable(api) == comparable(cli));
  CHECK(slurp(s.dir / "api.onnx") == slurp(s.dir / "cli.onnx"));
}

TEST_CASE("a failed gate is exit code 3 with the model and report written, as in the tool") {
  Scratch s;
  const std::string model = (kModels / "trained/digits_cnn.onnx").string();
  const mopt::api::Result r = mopt::api::run(
      "quantize", model,
      {{"output", (s.dir / "q.onnx").string()}, {"data", (kModels / "trained/digits_train_x.npy").string()},
       {"accuracy", (kModels / "trained/digits_test_x.npy").string()}, {"max-size", "10K"}, {"no-per-layer", "true"},
       {"quiet", "true"}});
  CHECK(r.exit_code == 3);
  REQUIRE(r.failed_gates.size() == 1);
  CHECK(r.failed_gates[0].rfind("max-size: ", 0) == 0);
  CHECK(fs::exists(s.dir / "q.onnx"));
  CHECK(json::parse(r.report_json)["gates"][0]["passed"] == false);
}

TEST_CASE("errors carry the tool's message and exit code, and write nothing") {
  Scratch s;
  const std::string model = (kModels / "trained/digits_cnn.onnx").string();
  const std::string out = (s.dir / "out.onnx").string();
  auto error_of = [](auto&& call) -> mopt::api::Error {
    try {
      call();
    } catch (const mopt::api::Error& e) {
      return e;
    }
    return mopt::api::Error("no mopt::api::Error was thrown", 0);
  };
  mopt::api::Error e = error_of([&] { mopt::api::run("quantize", model, {{"output", out}, {"no-such-option", "1"}}); });
  CHECK(e.exit_code() == 2);
  CHECK(std::string(e.what()) == "mopt quantize has no option 'no-such-option' (see mopt quantize --help)");
  e = error_of([&] { mopt::api::run("quantize", model, {{"output", out}, {"per-channel", "yes"}}); });
  CHECK(e.exit_code() == 2);
  e = error_of([&] { mopt::api::run("quantize", model, {{"output", out}, {"bits", "5"}, {"weight-only", "true"}}); });
  CHECK(e.exit_code() == 2);
  e = error_of([&] { mopt::api::run("inspect", model); });
  CHECK(e.exit_code() == 2);
  e = error_of([&] { mopt::api::run("quantize", model, {{"output", "-"}}); });
  CHECK(e.exit_code() == 2);
  e = error_of([&] { mopt::api::run("quantize", (s.dir / "missing.onnx").string(), {{"output", out}}); });
  CHECK(e.exit_code() == 1);
  CHECK(std::string(e.what()).find("missing.onnx") != std::string::npos);
  CHECK(fs::is_empty(s.dir));
}

TEST_CASE("Model: load, run a pipeline, save gives the bytes of mopt optimize --passes, and a report") {
  Scratch s;
  const std::string model = (kModels / "trained/digits_cnn.onnx").string();
  const std::string pipeline = "fuse,eliminate-dead-code";
  mopt::api::Model m = mopt::api::Model::load(model);
  m.run(pipeline);
  m.save((s.dir / "api.onnx").string());
  REQUIRE(tool("optimize " + model + " -o " + (s.dir / "cli.onnx").string() + " --passes " + pipeline + " --accuracy off -q") == 0);
  CHECK(slurp(s.dir / "api.onnx") == slurp(s.dir / "cli.onnx"));
  const json report = json::parse(m.report_json());
  const json cli = json::parse(slurp(s.dir / "cli.onnx.report.json"));
  CHECK(report["accuracy"].is_null());
  CHECK(report["accuracy_skipped"].get<std::string>().find("not measured") == 0);
  CHECK(report["pipeline"] == cli["pipeline"]);
  CHECK(comparable(report)["passes"] == comparable(cli)["passes"]);
  CHECK(report["output"]["file_bytes"] == cli["output"]["file_bytes"]);
  CHECK(report["output"]["stats"] == cli["output"]["stats"]);
  CHECK(report["input"]["stats"] == cli["input"]["stats"]);
}

TEST_CASE("Model: a pipeline that fails leaves the model as it was") {
  Scratch s;
  mopt::api::Model m = mopt::api::Model::load((kModels / "trained/digits_cnn.onnx").string());
  m.save((s.dir / "before.onnx").string());
  try {
    m.run("eliminate-dead-code,no-such-pass");
    FAIL("an unknown pass was accepted");
  } catch (const mopt::api::Error& e) {
    CHECK(e.exit_code() == 2);
    CHECK(std::string(e.what()).find("unknown pass 'no-such-pass'") != std::string::npos);
  }
  try {
    m.run("fold-batchnorm,quantize(mode=static)");  // static needs data: fails after fold-batchnorm ran
    FAIL("static quantization without data was accepted");
  } catch (const mopt::api::Error& e) {
    CHECK(e.exit_code() >= 1);
  }
  m.save((s.dir / "after.onnx").string());
  CHECK(slurp(s.dir / "before.onnx") == slurp(s.dir / "after.onnx"));
  CHECK_THROWS_AS(mopt::api::Model::load((s.dir / "missing.onnx").string()), mopt::api::Error);
}

TEST_CASE("version() is the tool's --version line") {
  Scratch s;
  REQUIRE(std::system((kTool + " --version > " + (s.dir / "v.txt").string()).c_str()) == 0);
  CHECK(mopt::api::version() + "\n" == slurp(s.dir / "v.txt"));
}
