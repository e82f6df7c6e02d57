// Model I/O: every kind of bad input gives one clear error and writes nothing; external data loads and
// saves, and unsafe external paths are refused; payloads are borrowed, not copied; saves are atomic
// and deterministic.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <fstream>
#include <random>

#include "helpers.h"
#include "ir/verify.h"
#include "report/stats.h"
#include "util/file.h"
#include "util/sha256.h"
#include "rewrite/rewrite.h"

using namespace mopt;
using namespace mopt::test;

namespace {

const char* kSmall = R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[4] X) => (float[4] Y) {
  Y = Add(X, W)
}
)";

// kSmall with an initializer W of `n` floats stored as raw_data.
onnx::ModelProto with_weight(int64_t n = 4) {
  onnx::ModelProto p = parse_proto(kSmall);
  auto* w = p.mutable_graph()->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(n);
  w->set_raw_data(std::string(static_cast<size_t>(n) * 4, '\x01'));
  return p;
}

std::string load_error(const fs::path& path) {
  return error_of([&] { io::load_model(path); });
}

std::string load_error_bytes(const onnx::ModelProto& p, const TempDir& dir) {
  write_file(dir / "m.onnx", p.SerializeAsString());
  return load_error(dir / "m.onnx");
}

void set_external(onnx::TensorProto* t, const std::string& location, int64_t offset, int64_t length) {
  t->clear_raw_data();
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& v) {
    auto* kv = t->add_external_data();
    kv->set_key(k);
    kv->set_value(v);
  };
  add("location", location);
  add("offset", std::to_string(offset));
  add("length", std::to_string(length));
}

}  // namespace

TEST_CASE("bad input files give one clear error") {
  TempDir dir;
  CHECK(load_error(dir / "missing.onnx").find("no such file") != std::string::npos);
  CHECK(load_error(dir.path()).find("is a directory") != std::string::npos);
  write_file(dir / "empty.onnx", "");
  CHECK(load_error(dir / "empty.onnx").find("is empty") != std::string::npos);

  const std::string good = with_weight(1000).SerializeAsString();
  write_file(dir / "truncated.onnx", good.substr(0, good.size() / 2));
  CHECK(load_error(dir / "truncated.onnx").find("truncated or malformed") != std::string::npos);
  write_file(dir / "garbage.onnx", "this is not a model, just some text that someone saved as .onnx\n");
  const std::string garbage = load_error(dir / "garbage.onnx");
  CHECK(garbage.find("not a") != std::string::npos);
  CHECK(garbage.find("garbage.onnx") != std::string::npos);
}

TEST_CASE("bad model contents are named in the error") {
  TempDir dir;
  SUBCASE("raw data length disagrees with dims") {
    onnx::ModelProto p = with_weight();
    p.mutable_graph()->mutable_initializer(0)->set_raw_data("abc");
    CHECK(load_error_bytes(p, dir).find("tensor 'W' (initializer) has 3 bytes of data, but its dims [4] of float need 16") !=
          std::string::npos);
  }
  SUBCASE("negative dims") {
    onnx::ModelProto p = with_weight();
    p.mutable_graph()->mutable_initializer(0)->set_dims(0, -4);
    CHECK(load_error_bytes(p, dir).find("negative dimension -4") != std::string::npos);
  }
  SUBCASE("absurd dims") {
    onnx::ModelProto p = with_weight();
    auto* t = p.mutable_graph()->mutable_initializer(0);
    t->set_dims(0, int64_t{1} << 40);
    t->add_dims(int64_t{1} << 40);
    CHECK(load_error_bytes(p, dir).find("absurd dims") != std::string::npos);
  }
  SUBCASE("duplicate value names") {
    onnx::ModelProto p = with_weight();
    auto* n = p.mutable_graph()->add_node();
    n->set_op_type("Relu");
    n->set_name("second");
    n->add_input("X");
    n->add_output("Y");
    CHECK(load_error_bytes(p, dir).find("duplicate value name 'Y'") != std::string::npos);
  }
  SUBCASE("an input nothing produces") {
    onnx::ModelProto p = parse_proto(kSmall);  // W is never defined
    CHECK(load_error_bytes(p, dir).find("uses 'W', which no node, graph input or initializer produces") != std::string::npos);
  }
  SUBCASE("a cycle") {
    onnx::ModelProto p = parse_proto(R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[4] X) => (float[4] Y) {
  A = Add(X, B)
  B = Relu(A)
  Y = Identity(B)
}
)");
    CHECK(load_error_bytes(p, dir).find("cycle") != std::string::npos);
  }
  SUBCASE("a graph output nothing produces") {
    onnx::ModelProto p = with_weight();
    p.mutable_graph()->mutable_output(0)->set_name("nowhere");
    CHECK(load_error_bytes(p, dir).find("output 'nowhere' is not produced") != std::string::npos);
  }
}

TEST_CASE("a model with an opset newer than ONNX 1.12 loads, saves, and is reported as not judged") {
  onnx::ModelProto p = with_weight();
  p.mutable_opset_import(0)->set_version(21);
  p.set_ir_version(10);
  auto m = io::load_model_from_bytes(p.SerializeAsString());
  ir::CheckResult check = ir::run_onnx_checker(*m);
  CHECK(check.status == ir::CheckResult::Status::NotJudged);
  CHECK(check.message.find("opset 21") != std::string::npos);
  CHECK(io::save_model_to_bytes(*m) == p.SerializeAsString());
}

TEST_CASE("payloads are borrowed from the mapped file, not copied") {
  TempDir dir;
  write_file(dir / "m.onnx", with_weight(1 << 16).SerializeAsString());
  auto m = io::load_model(dir / "m.onnx");
  const ir::Tensor* w = m->graph().find_local("W")->initializer();
  REQUIRE(w != nullptr);
  CHECK(w->raw().size() == (1u << 18));
  // Saving and reloading gives the same bytes, and the same file.
  io::save_model(*m, dir / "out.onnx");
  CHECK(read_file(dir / "out.onnx") == read_file(dir / "m.onnx"));
}

namespace {
int64_t resident_kib() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE) / 1024;
}
}  // namespace

TEST_CASE("a replaced weight gives its mapped pages back while the file stays mapped") {
  // W (16 MiB) is replaced; V keeps the file mapped. Without the release, W's pages would stay resident
  // until the whole model goes: a pass that rewrites every weight would hold the old and the new ones.
  TempDir dir;
  onnx::ModelProto p = parse_proto(R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[N] X) => (float[N] Y) {
  T = Add(X, W)
  Y = Add(T, V)
}
)");
  for (auto [name, n] : {std::pair<const char*, int64_t>{"W", int64_t{1} << 22}, {"V", 1}}) {
    auto* t = p.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(n);
    t->set_raw_data(std::string(static_cast<size_t>(n) * 4, '\x01'));
  }
  write_file(dir / "m.onnx", p.SerializeAsString());
  auto m = io::load_model(dir / "m.onnx");
  ir::Value* w = m->graph().find_local("W");
  REQUIRE(w->initializer() != nullptr);
  {
    const ir::Bytes payload = w->initializer()->data();
    uint64_t sum = 0;
    for (std::byte b : payload.span()) sum += static_cast<uint64_t>(b);
    REQUIRE(sum == (uint64_t{1} << 24));  // every page read, so resident
  }
  const int64_t before = resident_kib();
  ir::Node* reader = w->uses().front().node;
  reader->set_input(1, rewrite::add_constant(m->graph(), "W_small", exec::Array::scalar<float>(ir::dtype::kFloat, 2.0f)));
  rewrite::remove_unused_weights(m->graph(), {w});
  CHECK(resident_kib() < before - 12 * 1024);
  // The model still works from the same mapping: V reads its value, and a save writes it.
  CHECK(exec::Array::from_tensor(*m->graph().find_local("V")->initializer()).data<float>()[0] ==
        std::bit_cast<float>(0x01010101u));
  io::save_model(*m, dir / "out.onnx");
  CHECK(fs::file_size(dir / "out.onnx") < 1024);
}

TEST_CASE("external data: save, load back, and keep the bytes") {
  TempDir dir;
  write_file(dir / "m.onnx", with_weight(4096).SerializeAsString());
  auto m = io::load_model(dir / "m.onnx");
  io::SaveOptions options;
  options.external_data_threshold = 1024;
  io::SaveInfo info = io::save_model(*m, dir / "ext.onnx", options);
  CHECK(info.external_file == dir / "ext.onnx.data");
  CHECK(info.external_bytes == 4096 * 4);
  CHECK(info.file_bytes < 1024);
  io::LoadInfo load_info;
  auto back = io::load_model(dir / "ext.onnx", &load_info);
  CHECK(load_info.external_bytes == 4096 * 4);
  const ir::Tensor* w = back->graph().find_local("W")->initializer();
  CHECK(std::string(reinterpret_cast<const char*>(w->raw().data()), w->raw().size()) == std::string(4096 * 4, '\x01'));
  // And inline again: byte-identical to the original.
  io::save_model(*back, dir / "inline.onnx");
  CHECK(read_file(dir / "inline.onnx") == read_file(dir / "m.onnx"));
}

TEST_CASE("replacing a model with external data: a failed model rename puts the old data back") {
  TempDir dir;
  write_file(dir / "m.onnx", with_weight(4096).SerializeAsString());
  auto m = io::load_model(dir / "m.onnx");
  io::SaveOptions options;
  options.external_data_threshold = 1024;
  io::save_model(*m, dir / "ext.onnx", options);
  const std::string old_model = read_file(dir / "ext.onnx"), old_data = read_file(dir / "ext.onnx.data");
  onnx::ModelProto changed = with_weight(4096);
  changed.mutable_graph()->mutable_initializer(0)->set_raw_data(std::string(4096 * 4, '\x02'));
  auto m2 = io::load_model_from_bytes(changed.SerializeAsString());
  {
    io::StagedModel staged = io::stage_model(*m2, dir / "ext.onnx", options);
    // The model's rename will fail: its target became a non-empty folder after staging.
    fs::remove(dir / "ext.onnx");
    fs::create_directories(dir / "ext.onnx" / "x");
    CHECK(error_of([&] { staged.commit(); }).find("cannot rename onto") != std::string::npos);
  }
  CHECK(read_file(dir / "ext.onnx.data") == old_data);  // the old weights, not the new ones
  fs::remove_all(dir / "ext.onnx");
  write_file(dir / "ext.onnx", old_model);
  CHECK(io::load_model(dir / "ext.onnx") != nullptr);
  // No temporary or kept-aside file is left behind.
  for (const auto& entry : fs::directory_iterator(dir.path())) CHECK(entry.path().filename().string()[0] != '.');
  // A successful replacement swaps both and leaves nothing else.
  io::save_model(*m2, dir / "ext.onnx", options);
  CHECK(read_file(dir / "ext.onnx.data") == std::string(4096 * 4, '\x02'));
  for (const auto& entry : fs::directory_iterator(dir.path())) CHECK(entry.path().filename().string()[0] != '.');
}

TEST_CASE("unsafe external data paths are refused") {
  TempDir dir;
  fs::create_directories(dir / "model");
  write_file(dir / "secret.bin", std::string(16, 'x'));
  write_file(dir / "model/ok.bin", std::string(16, 'x'));
  auto error_for = [&](const std::string& location, int64_t offset = 0, int64_t length = 16) {
    onnx::ModelProto p = with_weight();
    set_external(p.mutable_graph()->mutable_initializer(0), location, offset, length);
    write_file(dir / "model/m.onnx", p.SerializeAsString());
    return load_error(dir / "model/m.onnx");
  };
  CHECK(error_for("ok.bin").empty());
  CHECK(error_for((dir / "secret.bin").string()).find("absolute paths are refused") != std::string::npos);
  CHECK(error_for("../secret.bin").find("'..' would leave the model's folder") != std::string::npos);
  fs::create_symlink(dir / "secret.bin", dir / "model/link.bin");
  CHECK(error_for("link.bin").find("outside the model's folder") != std::string::npos);
  CHECK(error_for("nothere.bin").find("not found") != std::string::npos);
  CHECK(error_for("ok.bin", 8, 16).find("past the end") != std::string::npos);
}

TEST_CASE("saving never leaves a partial file and never clobbers on failure") {
  TempDir dir;
  auto m = io::load_model_from_bytes(with_weight().SerializeAsString());
  CHECK(error_of([&] { io::save_model(*m, dir / "no/such/folder/out.onnx"); }).find("does not exist") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "no"));
  // A folder nobody can create files in, root included (/proc): nothing is created, the error names it.
  CHECK(error_of([&] { io::save_model(*m, "/proc/mopt-test-out.onnx"); }) .find("cannot create a file in '/proc'") != std::string::npos);
  CHECK_FALSE(fs::exists("/proc/mopt-test-out.onnx"));
}

TEST_CASE("save is deterministic") {
  auto m = io::load_model_from_bytes(with_weight(100).SerializeAsString());
  const std::string a = io::save_model_to_bytes(*m);
  const std::string b = io::save_model_to_bytes(*m);
  CHECK(a == b);
}

TEST_CASE("the sampled zstd size of a big file is close to the exact one, and says it is an estimate") {
  // 80 MiB of weights as a pruned model has them: normal values with half of them zero, in runs.
  TempDir dir;
  const fs::path file = dir.path() / "weights.bin";
  {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> values(20u << 20);
    for (size_t i = 0; i < values.size(); ++i) values[i] = (i / 64) % 2 ? 0.0f : normal(rng);
    write_file(file, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  }
  const report::CompressedSize exact = report::zstd_compressed_size({file}, 3, UINT64_MAX);
  const report::CompressedSize sampled = report::zstd_compressed_size({file}, 3, 0);
  CHECK(!exact.estimated());
  CHECK(exact.sampled_bytes == fs::file_size(file));
  CHECK(sampled.estimated());
  CHECK(sampled.sampled_bytes == report::kSampleBlocks * (128u << 10));  // 80 MiB / 512, rounded down to a power of two
  CHECK(report::sample_block_bytes(17u << 20) == 64u << 10);
  CHECK(report::sample_block_bytes(400u << 20) == 512u << 10);
  CHECK(report::sample_block_bytes(3ull << 30) == 1u << 20);
  const double error = std::abs(static_cast<double>(sampled.bytes) - static_cast<double>(exact.bytes)) / static_cast<double>(exact.bytes);
  CHECK(error < 0.02);
}

TEST_CASE("a staged model's SHA-256 digests are its files', with small and large tensors, inline and external") {
  TempDir dir;
  // Small tensors travel in the writer's buffer, large ones (256 KiB and more) are written directly.
  onnx::ModelProto p = with_weight(300 << 10);
  for (int64_t n : {3, 70000, 65536, 1}) {
    auto* t = p.mutable_graph()->add_initializer();
    t->set_name(fmt::format("V{}", n));
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(n);
    std::string bytes(static_cast<size_t>(n) * 4, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 131 + n) & 0xff);
    t->set_raw_data(bytes);
  }
  std::string serialized;
  REQUIRE(p.SerializeToString(&serialized));
  // Loaded from a file, the large payloads are bytes of its map: they are copied file to file and hashed
  // from the file; loaded from memory, written and hashed from memory.
  write_file(dir / "source.onnx", serialized);
  for (const bool mapped : {true, false}) {
    CAPTURE(mapped);
    auto model = mapped ? io::load_model(dir / "source.onnx") : io::load_model_from_bytes(serialized);
    const std::string expected = io::save_model_to_bytes(*model);
    for (const ir::Value* v : model->graph().initializers())
      CHECK((MappedFile::containing(v->initializer()->raw().span()) != nullptr) == mapped);
    for (std::optional<uint64_t> threshold : {std::optional<uint64_t>(), std::optional<uint64_t>(1000)}) {
      const fs::path path = dir / (threshold ? "external.onnx" : "inline.onnx");
      io::SaveOptions options;
      options.external_data_threshold = threshold;
      io::StagedModel staged = io::stage_model(*model, path, options);
      staged.commit();
      const std::vector<FileDigest> digests = staged.digests();
      REQUIRE(digests.size() == (threshold ? 2u : 1u));
      for (const FileDigest& d : digests) {
        CAPTURE(d.path);
        CHECK(d.bytes == fs::file_size(d.path));
        CHECK(d.sha256 == sha256_file(d.path));
      }
      if (!threshold) CHECK(read_file(path) == expected);
      auto back = io::load_model(path);
      CHECK(io::save_model_to_bytes(*back) == expected);
    }
  }
}

TEST_CASE("an unaligned weight is copied once for all its readers at a time, from the file") {
  // W's payload lies at an odd offset of the mapped file (the name's length moves it): the executor needs
  // it aligned. Every reader alive at once (the original's and the optimized model's executors) shares one
  // copy, read with pread so the map's pages stay out of memory.
  TempDir dir;
  for (int pad = 0; pad < 4; ++pad) {
    onnx::ModelProto p = with_weight(1 << 22);  // 16 MiB
    p.mutable_graph()->set_name(std::string(static_cast<size_t>(pad), 'g'));
    std::string& raw = *p.mutable_graph()->mutable_initializer(0)->mutable_raw_data();
    for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(i * 13 & 0xff);
    write_file(dir / "m.onnx", p.SerializeAsString());
    auto m = io::load_model(dir / "m.onnx");
    const ir::Tensor& w = *m->graph().find_local("W")->initializer();
    if (reinterpret_cast<uintptr_t>(w.raw().data()) % 4 == 0) continue;
    const int64_t before = resident_kib();
    const exec::Array a = exec::Array::from_tensor(w), b = exec::Array::from_tensor(w);
    // One copy of 16 MiB resident; read through the map, its pages would add 16 MiB more.
    CHECK(resident_kib() - before < 20 * 1024);
    CHECK(a.data<float>() == b.data<float>());
    CHECK(reinterpret_cast<uintptr_t>(a.data<float>()) % 64 == 0);
    CHECK(std::memcmp(a.data<float>(), raw.data(), raw.size()) == 0);
    return;
  }
  FAIL("no name length put W at an unaligned offset");
}

TEST_CASE("bytes produced on demand are streamed to the file and its digest, never built, unless read") {
  // W (300 KiB) becomes a payload made in blocks of 4000 bytes on every call; the writer streams it
  // (inline and external), the digest thread makes it again, and nothing keeps it in memory.
  TempDir dir;
  auto model = io::load_model_from_bytes(with_weight(75 << 10).SerializeAsString());
  ir::Tensor& w = const_cast<ir::Tensor&>(*model->graph().find_local("W")->initializer());
  const size_t size = w.raw().size();
  std::vector<std::byte> expected(size);
  for (size_t i = 0; i < size; ++i) expected[i] = static_cast<std::byte>((i * 7 + i / 4096) & 0xff);
  std::atomic<int> calls = 0;
  w.set_raw(ir::Bytes::produced(size, [&](const ir::ByteSink& sink) {
    ++calls;
    for (size_t first = 0; first < size; first += 4000) sink(std::span(expected).subspan(first, std::min<size_t>(4000, size - first)));
  }));
  const ir::Bytes payload = w.raw();
  CHECK(payload.size() == size);
  CHECK(payload.unbuilt());
  for (std::optional<uint64_t> threshold : {std::optional<uint64_t>(), std::optional<uint64_t>(1000)}) {
    CAPTURE(threshold.has_value());
    const fs::path path = dir / (threshold ? "external.onnx" : "inline.onnx");
    io::SaveOptions options;
    options.external_data_threshold = threshold;
    const int before = calls;
    io::StagedModel staged = io::stage_model(*model, path, options);
    staged.commit();
    CHECK(calls == before + 2);  // once for the file, once for its digest
    CHECK(payload.unbuilt());
    for (const FileDigest& d : staged.digests()) CHECK(d.sha256 == sha256_file(d.path));
    auto back = io::load_model(path);
    const ir::Bytes saved = back->graph().find_local("W")->initializer()->data();
    CHECK(std::equal(saved.span().begin(), saved.span().end(), expected.begin(), expected.end()));
  }
  // Read in memory, the bytes are built once and kept; saving then writes the kept bytes.
  const int before = calls;
  CHECK(std::equal(payload.span().begin(), payload.span().end(), expected.begin(), expected.end()));
  CHECK(payload.data() == w.raw().data());
  CHECK_FALSE(payload.unbuilt());
  const std::string bytes = io::save_model_to_bytes(*model);
  CHECK(calls == before + 1);
  CHECK(bytes == read_file(dir / "inline.onnx"));
  // A producer that yields the wrong number of bytes is a bug, caught where the bytes are used.
  for (size_t wrong : {size - 1, size + 1}) {
    const ir::Bytes bad = ir::Bytes::produced(wrong, [&](const ir::ByteSink& sink) { sink(expected); });
    CHECK_THROWS_AS(bad.span(), std::logic_error);
    CHECK_THROWS_AS(bad.stream([](std::span<const std::byte>) {}), std::logic_error);
  }
}

TEST_CASE("for_each_block shows every byte in order, in aligned blocks, from a map, aligned memory and unaligned memory") {
  TempDir dir;
  std::string content(1000003, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  write_file(dir / "bytes.bin", content);
  const std::shared_ptr<const MappedFile> map = MappedFile::open(dir / "bytes.bin");
  std::vector<std::max_align_t> aligned_storage(content.size() / sizeof(std::max_align_t) + 2);
  std::memcpy(aligned_storage.data(), content.data() + 3, content.size() - 3);
  const auto* aligned = reinterpret_cast<const std::byte*>(aligned_storage.data());
  std::vector<std::byte> unaligned_storage(content.size() + 1);
  std::memcpy(unaligned_storage.data() + 1, content.data(), content.size());
  const struct {
    const char* name;
    std::span<const std::byte> bytes;
  } sources[] = {{"map, from an odd offset", map->bytes().subspan(3)},
                 {"aligned memory", std::span(aligned, content.size() - 3)},
                 {"unaligned memory", std::span(unaligned_storage.data() + 4, content.size() - 3)}};
  CHECK(MappedFile::containing(sources[0].bytes) == map);
  CHECK(MappedFile::containing(sources[1].bytes) == nullptr);
  for (const auto& source : sources) {
    CAPTURE(source.name);
    std::string seen;
    size_t blocks = 0;
    bool aligned_blocks = true;
    for_each_block(source.bytes, 64 << 10, [&](size_t offset, std::span<const std::byte> block) {
      CHECK(offset == seen.size());
      CHECK(block.size() <= size_t{64} << 10);
      aligned_blocks = aligned_blocks && reinterpret_cast<uintptr_t>(block.data()) % alignof(float) == 0;
      seen.append(reinterpret_cast<const char*>(block.data()), block.size());
      ++blocks;
    });
    CHECK(seen == content.substr(3));
    CHECK(blocks == (content.size() - 3 + (64 << 10) - 1) / (64 << 10));
    CHECK(aligned_blocks);
  }
}
