// ONNX's own conformance cases (Debian's libonnx-testdata: data/node, data/pytorch-*, data/simple) run
// through the reference executor. A case whose operators the executor does not claim (no kernel for the
// op at that opset, or a kernel that refuses an attribute with "not supported: ...") is skipped; every
// other case must match the expected outputs within rtol 1e-3, atol 1e-5 (ONNX's backend tests use
// rtol 1e-3). Prints "N passed, N failed, N skipped (unsupported)". The same cases then go through the
// fuse group, which must keep every passing case passing: a test suite of odd models nobody here wrote.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <map>

#include "data/npy.h"
#include "exec/executor.h"
#include "exec/kernel.h"
#include "exec/onednn.h"
#include "helpers.h"

using namespace mopt;
using namespace mopt::test;

namespace {

struct CaseResult {
  enum Kind { Passed, Failed, Skipped } kind;
  std::string detail;
};

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".pb") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end(), [&](const fs::path& a, const fs::path& b) {
    return std::stoi(a.stem().string().substr(prefix.size())) < std::stoi(b.stem().string().substr(prefix.size()));
  });
  return files;
}

std::string mismatch(const exec::Array& expected, const exec::Array& actual) {
  if (expected.dtype() != actual.dtype()) {
    return fmt::format("dtype {} vs expected {}", ir::dtype::name(actual.dtype()), ir::dtype::name(expected.dtype()));
  }
  if (expected.shape() != actual.shape()) {
    return fmt::format("shape {} vs expected {}", exec::shape_string(actual.shape()), exec::shape_string(expected.shape()));
  }
  std::vector<double> e = expected.to_doubles(), a = actual.to_doubles();
  for (size_t i = 0; i < e.size(); ++i) {
    if (std::isnan(e[i]) && std::isnan(a[i])) continue;
    if (e[i] == a[i]) continue;
    double tol = 1e-5 + 1e-3 * std::abs(e[i]);
    if (expected.dtype() == ir::dtype::kFloat16) tol = 1e-3 + 1e-3 * std::abs(e[i]);
    // ONNX 1.12's cases truncate float -> bfloat16; mopt (like ONNX Runtime) rounds to nearest even:
    // one bfloat16 step apart at most.
    if (expected.dtype() == ir::dtype::kBfloat16) tol = 1e-5 + 8e-3 * std::abs(e[i]);
    if (!(std::abs(e[i] - a[i]) <= tol)) return fmt::format("element {}: {} vs expected {}", i, a[i], e[i]);
  }
  return "";
}

// ONNX 1.12's case generator stores bfloat16 tensors as uint16 (numpy has no bfloat16): the same bits.
exec::Array as_bfloat16_if_expected(const exec::Array& a, int32_t expected_dtype) {
  if (a.dtype() != ir::dtype::kUint16 || expected_dtype != ir::dtype::kBfloat16) return a;
  exec::Array b(ir::dtype::kBfloat16, a.shape());
  std::memcpy(b.data<uint16_t>(), a.data<uint16_t>(), a.nbytes());
  return b;
}

// The names of the model's inputs that a case's data sets feed (those without an initializer), in order.
std::vector<std::string> fed_inputs(const ir::Model& model) {
  std::vector<std::string> inputs;
  for (const ir::Value* v : model.graph().inputs()) {
    if (!v->initializer()) inputs.push_back(v->name());
  }
  return inputs;
}

// A case's test_data_set_* folders, sorted.
std::vector<fs::path> data_sets(const fs::path& dir) {
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  }
  std::sort(sets.begin(), sets.end());
  return sets;
}

// Runs the case's model (after `pipeline`, when given) on its inputs and compares with its outputs.
CaseResult run_case(const fs::path& dir, const char* pipeline = nullptr) {
  std::unique_ptr<ir::Model> model;
  try {
    model = io::load_model(dir / "model.onnx");
  } catch (const Error& e) {
    return {CaseResult::Skipped, std::string("load: ") + e.what()};
  }
  if (std::vector<std::string> ops = exec::unsupported_operators(*model); !ops.empty()) return {CaseResult::Skipped, ops[0]};
  if (pipeline != nullptr) {
    try {
      run(*model, pipeline);
    } catch (const Error& e) {
      return {CaseResult::Failed, fmt::format("{}: {}", pipeline, e.what())};
    }
  }
  const std::vector<std::string> inputs = fed_inputs(*model);
  try {
    exec::Executor executor(*model);
    for (const fs::path& set : data_sets(dir)) {
      std::map<std::string, exec::Array> feeds;
      std::vector<fs::path> in_files = sorted_files(set, "input_");
      for (size_t i = 0; i < in_files.size() && i < inputs.size(); ++i) {
        std::string name;
        exec::Array a = as_bfloat16_if_expected(data::read_tensor_pb(in_files[i].string(), &name),
                                                model->graph().inputs()[i]->info().type().tensor_type().elem_type());
        feeds[inputs[i]] = a;
      }
      std::vector<exec::Array> outputs = executor.run(feeds);
      std::vector<fs::path> out_files = sorted_files(set, "output_");
      for (size_t i = 0; i < out_files.size() && i < outputs.size(); ++i) {
        std::string m = mismatch(as_bfloat16_if_expected(data::read_tensor_pb(out_files[i].string()), outputs[i].dtype()), outputs[i]);
        if (!m.empty()) return {CaseResult::Failed, fmt::format("{} output {}: {}", set.filename().string(), i, m)};
      }
    }
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.find("not supported") != std::string::npos) return {CaseResult::Skipped, what};
    // A few ONNX 1.12 cases feed data whose shape contradicts their own model's input (castlike bfloat16).
    if (what.rfind("input '", 0) == 0 && what.find("expects shape") != std::string::npos) {
      return {CaseResult::Skipped, "case data contradicts its model: " + what};
    }
    return {CaseResult::Failed, what};
  }
  return {CaseResult::Passed, ""};
}

// For a one-node case whose kernel reads channels-last inputs (KernelDef::channels_last): runs the kernel
// with its inputs of rank 3 to 5 given channels-last (all of them, or only the first), every output allowed
// to stay so, and compares the outputs, reordered to plain, with the expected ones. Returns how many runs
// were compared (0: not such a case), or fails the check naming the case.
int run_channels_last(const fs::path& dir) {
  std::unique_ptr<ir::Model> model;
  try {
    model = io::load_model(dir / "model.onnx");
  } catch (const Error&) {
    return 0;
  }
  if (model->graph().nodes().size() != 1 || !exec::unsupported_operators(*model).empty()) return 0;
  const ir::Node& node = **model->graph().nodes().begin();
  const int64_t opset = exec::node_opset(*model, node);
  const exec::KernelDef* def = exec::KernelRegistry::instance().find(node.domain(), node.op_type(), opset);
  if (!def || !def->channels_last) return 0;
  const std::vector<std::string> inputs = fed_inputs(*model);
  int compared = 0;
  for (const fs::path& set : data_sets(dir)) {
    std::map<std::string, exec::Array> feeds;
    std::vector<fs::path> in_files = sorted_files(set, "input_");
    try {
      for (size_t i = 0; i < in_files.size() && i < inputs.size(); ++i) feeds[inputs[i]] = data::read_tensor_pb(in_files[i].string());
    } catch (const Error&) {
      return compared;  // a sequence or optional input: not a tensor
    }
    for (bool only_first : {false, true}) {
      std::vector<exec::Array> given;
      given.reserve(node.inputs().size());
      bool any = false;
      for (const ir::Value* v : node.inputs()) {
        exec::Array a;
        if (v && feeds.count(v->name())) a = feeds[v->name()];
        else if (v && v->initializer()) a = exec::Array::from_tensor(*v->initializer());
        if (a.defined() && a.rank() >= 3 && a.rank() <= 5 && a.numel() > 0 && !(only_first && any)) {
          a = a.in_layout(exec::Layout::kChannelsLast);
          any = true;
        }
        given.push_back(a);
      }
      if (!any) break;
      std::vector<const exec::Array*> pointers;
      for (const exec::Array& a : given) pointers.push_back(a.defined() ? &a : nullptr);
      std::vector<exec::Array> outputs;
      try {
        exec::GraphRunner runner(*model, {});
        exec::Env scope;
        outputs = runner.run_kernel(*def, node, opset, pointers, &scope, {0, nullptr, false, ~uint64_t{0}});
      } catch (const Error& e) {
        const std::string what = e.what();
        if (what.find("not supported") == std::string::npos) FAIL_CHECK(dir.filename().string() << " with channels-last inputs: " << what);
        return compared;  // as run_case skips it
      }
      std::vector<fs::path> out_files = sorted_files(set, "output_");
      for (size_t i = 0; i < out_files.size() && i < outputs.size(); ++i) {
        if (!outputs[i].defined()) continue;
        std::string m = mismatch(data::read_tensor_pb(out_files[i].string()), outputs[i].in_layout(exec::Layout::kPlain));
        if (!m.empty()) FAIL_CHECK(dir.filename().string() << " with channels-last inputs, output " << i << ": " << m);
      }
      ++compared;
    }
  }
  return compared;
}

// Every case folder of the suites we run, sorted.
std::vector<fs::path> conformance_cases() {
  const fs::path root = MOPT_ONNX_TESTDATA;
  std::vector<fs::path> cases;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root / suite, ec)) {
      if (fs::exists(e.path() / "model.onnx")) cases.push_back(e.path());
    }
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

}  // namespace

TEST_CASE("ONNX conformance cases pass wherever the executor claims the operators") {
  const std::vector<fs::path> cases = conformance_cases();
  REQUIRE(cases.size() > 900);
  size_t passed = 0, failed = 0, skipped = 0;
  std::map<std::string, int> skip_reasons;
  for (const fs::path& dir : cases) {
    CaseResult r = run_case(dir);
    if (r.kind == CaseResult::Passed) {
      ++passed;
    } else if (r.kind == CaseResult::Skipped) {
      ++skipped;
      if (getenv("MOPT_CONFORMANCE_VERBOSE")) fmt::print("skipped {}: {}\n", dir.filename().string(), r.detail);
    } else {
      ++failed;
      FAIL_CHECK(dir.parent_path().filename().string() << "/" << dir.filename().string() << ": " << r.detail);
    }
  }
  MESSAGE(passed << " passed, " << failed << " failed, " << skipped << " skipped (unsupported)");
  fmt::print("conformance: {} passed, {} failed, {} skipped (unsupported) of {} libonnx-testdata cases\n", passed, failed,
             skipped, cases.size());
  CHECK(passed > 500);
}

TEST_CASE("the fuse group keeps every passing conformance case passing") {
  size_t checked = 0;
  for (const fs::path& dir : conformance_cases()) {
    if (run_case(dir).kind != CaseResult::Passed) continue;
    ++checked;
    CaseResult r = run_case(dir, "fuse,eliminate-dead-code");
    if (r.kind != CaseResult::Passed)
      FAIL_CHECK(dir.parent_path().filename().string() << "/" << dir.filename().string() << " after fuse: " << r.detail);
  }
  MESSAGE(checked << " conformance cases checked after the fuse group");
  CHECK(checked > 500);
}

TEST_CASE("the kernels that read channels-last inputs give the conformance cases' outputs from them") {
  // Each case twice: as the executor runs it, and with oneDNN taking even the smallest convolutions.
  int compared = 0, conv_compared = 0;
  const int64_t default_min = exec::set_dnnl_min_multiply_adds(0);
  for (int64_t min_work : {default_min, int64_t{0}}) {
    exec::set_dnnl_min_multiply_adds(min_work);
    for (const fs::path& dir : conformance_cases()) {
      const int runs = run_channels_last(dir);
      compared += runs;
      std::string name = dir.filename().string();
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (name.rfind("test_conv", 0) == 0) conv_compared += runs;
    }
  }
  exec::set_dnnl_min_multiply_adds(default_min);
  MESSAGE(compared << " channels-last runs compared, " << conv_compared << " of them Conv");
  CHECK(compared > 150);
  CHECK(conv_compared > 20);
}
