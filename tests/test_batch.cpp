// lib/batch: the worklist (folders mirrored, the output folder skipped, duplicates once, sorted), shard
// assignment (deterministic, balanced, every item once), the manifest (round trip, torn and corrupted
// lines reported and skipped), the batch report's exit status and counts.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "batch/manifest.h"
#include "batch/report.h"
#include "batch/worklist.h"
#include "util/error.h"
#include "util/sha256.h"

namespace fs = std::filesystem;
using namespace mopt;

namespace {

struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/mopt_batch_XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

void touch(const fs::path& p, const std::string& content = "x") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
}

batch::ResolveFlags no_flags = [](const std::string&, const batch::FlagValues&) { return std::vector<std::string>{}; };

batch::Record record(const std::string& output, batch::Status status) {
  batch::Record r;
  r.input = "in/" + output;
  r.output = output;
  r.command = "quantize";
  r.status = status;
  r.key = r.input_sha256 = std::string(64, 'a');
  r.finished_at = "2026-12-03T00:00:00Z";
  r.mopt_version = "0.1.0";
  return r;
}

}  // namespace

TEST_CASE("batch worklist: folders are mirrored, the output folder is skipped, each model once, sorted") {
  TempDir dir;
  touch(dir.path / "models/b.onnx");
  touch(dir.path / "models/sub/a.onnx");
  touch(dir.path / "models/notes.txt");
  touch(dir.path / "models/out/old.int8.onnx");  // an earlier run's output inside the input folder
  const std::string models = (dir.path / "models").string();
  std::vector<batch::Item> items =
      batch::expand({models, models + "/b.onnx"}, "quantize", {"--per-channel"}, dir.path / "models/out", no_flags);
  std::vector<std::string> relative;
  for (const auto& item : items) relative.push_back(item.relative);
  // b.onnx named twice (the folder and the file) is one item; the file named alone mirrors as its name.
  CHECK(relative == std::vector<std::string>{"b.onnx", "sub/a.onnx"});
  CHECK(items[0].args == std::vector<std::string>{"--per-channel"});
  CHECK_THROWS_WITH_AS(batch::expand({(dir.path / "nowhere").string()}, "quantize", {}, {}, no_flags),
                       doctest::Contains("does not exist"), Error);
  CHECK_THROWS_WITH_AS(batch::expand({(dir.path / "models/*.pt").string()}, "quantize", {}, {}, no_flags),
                       doctest::Contains("matches no file"), Error);
  const auto globbed = batch::expand({(dir.path / "models/*/*.onnx").string()}, "quantize", {}, {}, no_flags);
  REQUIRE(globbed.size() == 2);
  CHECK(globbed[1].relative == "sub/a.onnx");  // mirrored from the glob's folder before its first wildcard
}

TEST_CASE("batch shards: every item in exactly one shard, balanced by size, the same on every call") {
  std::vector<batch::Item> items(23);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].input = fmt::format("m{}", 100 + i);  // (GCC 12 -Wrestrict misfires on "m" + to_string)
    items[i].bytes = (i * 7919) % 1000 + 1;
  }
  for (int count : {1, 2, 3, 4, 30}) {
    const std::vector<int> shard = batch::assign_shards(items, count);
    REQUIRE(shard.size() == items.size());
    CHECK(shard == batch::assign_shards(items, count));
    std::vector<uint64_t> load(static_cast<size_t>(count), 0);
    for (size_t i = 0; i < items.size(); ++i) {
      REQUIRE(shard[i] >= 0);
      REQUIRE(shard[i] < count);
      load[static_cast<size_t>(shard[i])] += items[i].bytes;
    }
    if (count > 1 && count < 23) {
      // Largest-first to the lightest shard: no shard exceeds another by more than the largest item.
      const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
      CHECK(*hi - *lo <= 1000);
    }
  }
}

TEST_CASE("batch manifest: lines round-trip; a torn or corrupted line is reported and the rest kept") {
  TempDir dir;
  const fs::path path = dir.path / "m.jsonl";
  {
    batch::ManifestWriter writer(path);
    writer.append(batch::to_json(batch::Plan{0, 2, 3, std::string(64, 'b'), {"a.onnx", "b.onnx"}, "2026-12-03T00:00:00Z"}));
    batch::Record r = record("a.onnx", batch::Status::GateFailed);
    r.failed_gates = {"min-cosine: 0.98 < 0.99"};
    r.accuracy = {{"verdict", "ok"}, {"data", "random"}, {"min_cosine", 0.98}, {"accuracy_drop_pp", nullptr}};
    writer.append(batch::to_json(r));
  }
  {  // a crash in the middle of a line, then a line with a field of the wrong type
    std::ofstream out(path, std::ios::app);
    out << "{\"type\":\"model\",\"input\":\"x";
  }
  {
    batch::ManifestWriter writer(path);  // starts a fresh line after the torn one
    nlohmann::json bad = batch::to_json(record("c.onnx", batch::Status::Ok));
    bad["input_bytes"] = "many";
    writer.append(bad);
    writer.append(batch::to_json(record("b.onnx", batch::Status::Timeout)));
  }
  const batch::ManifestContents c = batch::read_manifest(path);
  REQUIRE(c.plans.size() == 1);
  CHECK(c.plans[0].outputs == std::vector<std::string>{"a.onnx", "b.onnx"});
  REQUIRE(c.records.size() == 2);
  CHECK(c.records[0].status == batch::Status::GateFailed);
  CHECK(c.records[0].failed_gates == std::vector<std::string>{"min-cosine: 0.98 < 0.99"});
  CHECK(c.records[0].accuracy["min_cosine"] == 0.98);
  CHECK(c.records[1].output == "b.onnx");
  INFO(nlohmann::json(c.problems).dump());
  REQUIRE(c.problems.size() == 2);
  CHECK(c.problems[0].find("line 3: not valid JSON") != std::string::npos);
  CHECK(c.problems[1].find("line 4: field 'input_bytes' has the wrong type") != std::string::npos);
  CHECK(batch::read_manifest(dir.path / "none.jsonl").records.empty());
}

TEST_CASE("batch report: exit status 0 / 3 / 1 and the counts") {
  batch::BatchOutcome outcome;
  outcome.records = {record("a", batch::Status::Ok), record("b", batch::Status::Cached), record("c", batch::Status::Unchanged)};
  CHECK(batch::exit_status(outcome) == 0);
  outcome.records.push_back(record("d", batch::Status::GateFailed));
  CHECK(batch::exit_status(outcome) == 3);
  outcome.missing = {"e"};
  CHECK(batch::exit_status(outcome) == 1);
  outcome.missing.clear();
  outcome.records.push_back(record("f", batch::Status::Timeout));
  CHECK(batch::exit_status(outcome) == 1);
  const nlohmann::json report = batch::to_json(outcome, nlohmann::json::object());
  CHECK(report["batch"]["counts"]["ok"] == 1);
  CHECK(report["batch"]["counts"]["timeout"] == 1);
  CHECK(report["batch"]["failures"].size() == 2);
  CHECK(batch::markdown(report).find("| 1 | 1 | 1 | 1 | 0 | 1 | 0 |") != std::string::npos);
}

TEST_CASE("sha256 of text and files (FIPS 180-2 test vector)") {
  CHECK(sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  TempDir dir;
  touch(dir.path / "f", "abc");
  CHECK(sha256_file(dir.path / "f") == sha256_text("abc"));
  CHECK_THROWS_AS(sha256_file(dir.path / "missing"), Error);
}
