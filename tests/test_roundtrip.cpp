// Round trip without passes is lossless: over every model in Debian's libonnx-testdata (node,
// pytorch-converted, pytorch-operator, simple, real) and every model in ../shared/models, the model
// mopt loads and exports equals the file protobuf parses, field by field (MessageDifferencer), and
// the saved bytes equal the input's. Output comparison with the executor joins when it exists.
#include <doctest/doctest.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>

#include "helpers.h"

using namespace mopt;
using namespace mopt::test;

namespace {

std::vector<fs::path> find_models(const fs::path& root) {
  std::vector<fs::path> models;
  std::error_code ec;
  if (!fs::exists(root, ec)) return models;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".onnx") models.push_back(it->path());
  }
  std::sort(models.begin(), models.end());
  return models;
}

// Empty string when lossless, else what differs.
std::string round_trip_difference(const fs::path& path) {
  const std::string original = read_file(path);
  onnx::ModelProto expected;
  if (!expected.ParseFromString(original)) return "protobuf cannot parse the original";
  auto model = io::load_model(path);
  onnx::ModelProto actual = ir::export_model(*model);
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (!differencer.Compare(expected, actual)) return diff.substr(0, 400);
  if (io::save_model_to_bytes(*model) != original) return "saved bytes differ from the input";
  return "";
}

void check_all(const std::vector<fs::path>& models, size_t expected_at_least) {
  size_t passed = 0;
  for (const auto& m : models) {
    std::string diff;
    try {
      diff = round_trip_difference(m);
    } catch (const Error& e) {
      diff = std::string("load failed: ") + e.what();
    }
    if (diff.empty()) ++passed;
    else FAIL_CHECK(m.string() << ": " << diff);
  }
  MESSAGE(passed << " of " << models.size() << " models round-trip losslessly");
  CHECK(models.size() >= expected_at_least);
  CHECK(passed == models.size());
}

}  // namespace

TEST_CASE("round trip is lossless on libonnx-testdata") {
  check_all(find_models(MOPT_ONNX_TESTDATA), 1000);
}

TEST_CASE("round trip is lossless on the shared real models") {
  check_all(find_models(MOPT_SHARED_MODELS), 8);
}
