// Model load and save; see model_io.h. External-data paths are checked so that a model cannot make
// mopt read outside the model's folder (the class of ONNX CVE-2022-25882 and CVE-2024-27318).
#include "io/model_io.h"

#include <charconv>
#include <cstring>
#include <future>
#include <map>
#include <tuple>

#include <unistd.h>

#include <onnx/defs/parser.h>

#include "io/wire.h"
#include "ir/proto.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sha256.h"

namespace mopt::io {
namespace {

constexpr uint64_t kProtobufLimit = (uint64_t{1} << 31) - 1;

uint64_t parse_u64(const std::string& text, const std::string& what, const std::string& tensor) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    fail("tensor '{}': external data {} '{}' is not a non-negative integer", tensor, what, text);
  return v;
}

bool is_within(const fs::path& child, const fs::path& parent) {
  auto c = child.begin();
  for (auto p = parent.begin(); p != parent.end(); ++p, ++c) {
    if (c == child.end() || *c != *p) return false;
  }
  return true;
}

// A payload that borrows from a mapped file. When its last reader lets go (the tensor was replaced or
// removed), its pages go back to the kernel, so a pass that rewrites every weight holds the new weights
// and not the old ones too. Small payloads share pages with their neighbours and are left alone.
ir::Bytes borrow_mapped(const std::shared_ptr<const MappedFile>& file, std::span<const std::byte> view) {
  constexpr size_t kReleaseAtLeast = 256 << 10;
  if (view.size() < kReleaseAtLeast) return ir::Bytes(file, view);
  struct Borrowed {
    std::shared_ptr<const MappedFile> file;
    std::span<const std::byte> view;
    ~Borrowed() { file->release(view); }
  };
  return ir::Bytes(std::make_shared<const Borrowed>(Borrowed{file, view}), view);
}

// Resolves tensors whose payload was lifted out by the wire reader or lives in external data.
class PayloadSource {
 public:
  // `mapped`: the file `model` is, when it is one (its payloads are then released as they are dropped).
  PayloadSource(std::shared_ptr<const void> model, std::shared_ptr<const MappedFile> mapped,
                std::vector<std::span<const std::byte>> payloads, fs::path dir)
      : model_(std::move(model)), mapped_(std::move(mapped)), payloads_(std::move(payloads)), dir_(std::move(dir)) {}

  std::optional<ir::Bytes> resolve(const onnx::TensorProto& t) {
    if (t.data_location() == onnx::TensorProto::EXTERNAL) return external(t);
    if (!t.has_raw_data()) return std::nullopt;
    const uint64_t index = wire::marker_index(t.raw_data());
    if (index >= payloads_.size()) fail("internal error: payload index {} out of range", index);
    if (mapped_) return borrow_mapped(mapped_, payloads_[index]);
    return ir::Bytes(model_, payloads_[index]);
  }

  const std::map<fs::path, std::shared_ptr<const MappedFile>>& external_files() const { return external_; }

 private:
  std::optional<ir::Bytes> external(const onnx::TensorProto& t) {
    if (dir_.empty()) fail("tensor '{}' has external data, which is not supported for in-memory models", t.name());
    std::string location;
    std::optional<std::string> offset_text, length_text;
    for (const auto& kv : t.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset_text = kv.value();
      else if (kv.key() == "length") length_text = kv.value();
    }
    if (location.empty()) fail("tensor '{}' has external data without a location", t.name());
    if (location.find('\0') != std::string::npos) fail("tensor '{}': external data location contains a NUL byte", t.name());
    const fs::path rel(location);
    if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
      fail("unsafe external data path '{}' for tensor '{}': absolute paths are refused; it must be relative to the model's folder",
           location, t.name());
    for (const auto& part : rel) {
      if (part == "..")
        fail("unsafe external data path '{}' for tensor '{}': '..' would leave the model's folder", location, t.name());
    }
    std::error_code ec;
    const fs::path root = fs::canonical(dir_, ec);
    if (ec) fail("cannot resolve the model folder '{}': {}", dir_.string(), ec.message());
    const fs::path full = fs::canonical(dir_ / rel, ec);
    if (ec) fail("external data file '{}' for tensor '{}' not found in '{}'", location, t.name(), dir_.string());
    if (!is_within(full, root))
      fail("unsafe external data path '{}' for tensor '{}': it resolves to '{}', outside the model's folder (symlink)",
           location, t.name(), full.string());

    auto& file = external_[full];
    if (!file) file = MappedFile::open(full);
    const uint64_t file_size = file->bytes().size();
    const uint64_t offset = offset_text ? parse_u64(*offset_text, "offset", t.name()) : 0;
    if (offset > file_size)
      fail("tensor '{}': external data offset {} is past the end of '{}' ({} bytes)", t.name(), offset, location, file_size);
    const uint64_t length = length_text ? parse_u64(*length_text, "length", t.name()) : file_size - offset;
    if (length > file_size - offset)
      fail("tensor '{}': external data [{}, {}) is past the end of '{}' ({} bytes)", t.name(), offset, offset + length,
           location, file_size);
    return borrow_mapped(file, file->bytes().subspan(offset, length));
  }

  std::shared_ptr<const void> model_;  // keeps the bytes the payload spans point into alive
  std::shared_ptr<const MappedFile> mapped_;
  std::vector<std::span<const std::byte>> payloads_;
  fs::path dir_;
  std::map<fs::path, std::shared_ptr<const MappedFile>> external_;
};

// `dir` is the folder external data is read from; empty for in-memory models, which may not have any.
// `file`: the mapped file `owner` is, if it is one.
std::unique_ptr<ir::Model> parse(std::shared_ptr<const void> owner, std::shared_ptr<const MappedFile> file,
                                 std::span<const std::byte> bytes,
                                 const fs::path& dir, const std::string& what, LoadInfo* info) {
  if (bytes.empty()) fail("{} is empty (0 bytes): not an ONNX model", what);
  std::vector<std::span<const std::byte>> payloads;
  std::string skeleton;
  try {
    skeleton = wire::lift_payloads(bytes, payloads);
  } catch (const Error& e) {
    fail("{} is not a valid ONNX model: {}", what, e.what());
  }
  onnx::ModelProto proto;
  if (!proto.ParseFromString(skeleton)) fail("{} is not a valid ONNX model: protobuf parsing failed (truncated or corrupt file?)", what);
  if (!proto.has_graph()) fail("{} is not an ONNX model: it has no graph", what);
  if (proto.ir_version() <= 0) fail("{} is not an ONNX model: it has no ir_version", what);
  PayloadSource source(std::move(owner), std::move(file), std::move(payloads), dir);
  auto model = ir::import_model(std::move(proto), [&](const onnx::TensorProto& t) { return source.resolve(t); });
  if (info != nullptr) {
    for (const auto& [path, mapped] : source.external_files()) {
      info->external_files.push_back(path);
      info->external_bytes += mapped->bytes().size();
    }
  }
  return model;
}

}  // namespace

std::unique_ptr<ir::Model> load_model(const fs::path& path, LoadInfo* info) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("cannot open '{}': no such file", path.string());
  auto file = MappedFile::open(path);
  if (info != nullptr) {
    info->path = path;
    info->file_bytes = file->bytes().size();
  }
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  auto bytes = file->bytes();
  if (path.extension() == ".onnxtxt") {  // ONNX text syntax (onnx/defs/parser.h), as the tests' golden cases use
    const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    onnx::ModelProto proto;
    const auto status = onnx::OnnxParser::Parse(proto, text.c_str());
    if (!status.IsOK()) {
      const std::string message = status.ErrorMessage();
      fail("'{}' is not valid ONNX text: {}", path.string(), message.substr(0, message.find('\n')));
    }
    auto owner = std::make_shared<std::string>(proto.SerializeAsString());
    std::span<const std::byte> view(reinterpret_cast<const std::byte*>(owner->data()), owner->size());
    return parse(std::move(owner), nullptr, view, dir, fmt::format("'{}'", path.string()), info);
  }
  return parse(file, file, bytes, dir, fmt::format("'{}'", path.string()), info);
}

std::unique_ptr<ir::Model> load_model_from_bytes(const std::string& bytes) {
  auto owner = std::make_shared<std::string>(bytes);
  std::span<const std::byte> view(reinterpret_cast<const std::byte*>(owner->data()), owner->size());
  return parse(std::move(owner), nullptr, view, fs::path(), "the model", nullptr);
}

namespace {

// The skeleton of `model` (payloads as markers) and the payloads it refers to. Tensors at or above the
// external threshold are laid out in `external` instead, 64-byte aligned.
struct Serialized {
  std::string skeleton;
  std::vector<ir::Bytes> payloads;
  std::vector<std::pair<uint64_t, ir::Bytes>> external;  // offset, bytes
  uint64_t external_size = 0;
};

Serialized serialize(const ir::Model& model, const SaveOptions& options, const std::string& external_name) {
  Serialized s;
  constexpr uint64_t kAlign = 64;
  auto write = [&](const ir::Tensor& t, onnx::TensorProto& out) {
    if (options.external_data_threshold && t.raw().size() >= *options.external_data_threshold) {
      const uint64_t offset = (s.external_size + kAlign - 1) / kAlign * kAlign;
      s.external.emplace_back(offset, t.raw());
      s.external_size = offset + t.raw().size();
      out.set_data_location(onnx::TensorProto::EXTERNAL);
      auto add = [&](const char* key, const std::string& value) {
        auto* kv = out.add_external_data();
        kv->set_key(key);
        kv->set_value(value);
      };
      add("location", external_name);
      add("offset", std::to_string(offset));
      add("length", std::to_string(t.raw().size()));
      return;
    }
    out.set_raw_data(wire::marker(s.payloads.size()));
    s.payloads.push_back(t.raw());
  };
  onnx::ModelProto proto = ir::export_model(model, write);
  if (!proto.SerializeToString(&s.skeleton)) fail("internal error: could not serialize the model");
  return s;
}

// A chunk to write and, when its bytes are an unchanged part of a mapped input file, that file: such
// pieces are copied file to file inside the kernel and hashed from the file, never read through the map
// (touching a map's pages costs a fault per page; a large model's weights mostly pass through unchanged).
// Bytes produced on demand (a pruned or float16 weight) are streamed as they are made, for the file and
// for the digest (each makes them once).
struct Piece {
  ir::Bytes bytes;
  std::shared_ptr<const MappedFile> file;
};

std::vector<Piece> pieces_of(const std::vector<ir::Bytes>& chunks) {
  constexpr size_t kKernelCopyMin = 64 << 10;  // smaller chunks are cheaper to write from memory
  std::vector<Piece> pieces;
  pieces.reserve(chunks.size());
  for (const ir::Bytes& c : chunks)
    pieces.push_back({c, !c.unbuilt() && c.size() >= kKernelCopyMin ? MappedFile::containing(c.span()) : nullptr});
  return pieces;
}

void write_pieces(AtomicFileWriter& writer, const std::vector<Piece>& pieces) {
  for (const Piece& p : pieces) {
    if (p.file) writer.write_from(*p.file, p.bytes.span());
    else p.bytes.stream([&](ByteChunk block) { writer.write(block); });
  }
}

std::string sha256_of(const std::vector<Piece>& pieces) {
  Sha256 digest;
  std::vector<std::byte> buffer;
  for (const Piece& p : pieces) {
    if (!p.file) {
      p.bytes.stream([&](ByteChunk block) { digest.update(block.data(), block.size()); });
      continue;
    }
    const ByteChunk bytes = p.bytes.span();
    buffer.resize(std::min<size_t>(bytes.size(), 1 << 20));
    for (size_t done = 0; done < bytes.size(); done += buffer.size()) {
      const size_t n = std::min(buffer.size(), bytes.size() - done);
      p.file->read(bytes.subspan(done, n), std::span(buffer).first(n));
      digest.update(buffer.data(), n);
    }
  }
  return digest.hex();
}

}  // namespace

std::unique_ptr<ir::Model> clone_model(const ir::Model& model) {
  std::vector<ir::Bytes> payloads;
  onnx::ModelProto proto = ir::export_model(model, [&](const ir::Tensor& t, onnx::TensorProto& out) {
    out.set_raw_data(wire::marker(payloads.size()));
    payloads.push_back(t.raw());
  });
  return ir::import_model(std::move(proto), [&](const onnx::TensorProto& t) -> std::optional<ir::Bytes> {
    if (!t.has_raw_data()) return std::nullopt;
    return payloads.at(wire::marker_index(t.raw_data()));
  });
}

std::string default_external_data_name(const fs::path& model_path) { return model_path.filename().string() + ".data"; }

StagedModel stage_model(const ir::Model& model, const fs::path& path, const SaveOptions& options) {
  const std::string external_name =
      options.external_data_name.empty() ? default_external_data_name(path) : options.external_data_name;
  if (fs::path(external_name).has_parent_path() || external_name == "." || external_name == "..")
    usage_error("external data file name '{}' must be a plain file name (it is written beside the model)", external_name);
  Serialized s = serialize(model, options, external_name);
  wire::Expanded expanded;
  wire::expand_payloads(s.skeleton, s.payloads, expanded);
  if (expanded.size > kProtobufLimit)
    fail("the model is {:.2f} GB, over protobuf's 2 GB limit for one file: save it with --external-data", expanded.size / 1e9);

  StagedModel staged;
  SaveInfo& info = staged.info;
  fs::path dir = path.parent_path();
  static const std::byte kZeros[64] = {};
  std::vector<ir::Bytes> data_chunks;  // the external-data file: each payload after zeros up to its offset
  uint64_t data_size = 0;
  for (const auto& [offset, bytes] : s.external) {
    data_chunks.emplace_back(nullptr, ByteChunk(kZeros, offset - data_size));
    data_chunks.push_back(bytes);
    data_size = offset + bytes.size();
  }
  const std::vector<Piece> data_pieces = pieces_of(data_chunks), model_pieces = pieces_of(expanded.chunks);
  // Both files' SHA-256 on another thread while they are written and fsynced (the fsync leaves the CPU
  // idle); every chunk lives until this function returns, and the future is waited for before that.
  std::future<std::pair<std::string, std::string>> digests = std::async(std::launch::async, [&] {
    return std::pair{sha256_of(model_pieces), data_pieces.empty() ? std::string() : sha256_of(data_pieces)};
  });
  if (!s.external.empty()) {
    if (path == "-" || is_direct_target(path)) usage_error("a model with external data cannot be written to '{}'; give a file name", path.string());
    info.external_file = (dir.empty() ? fs::path(".") : dir) / external_name;
    staged.data_ = std::make_unique<AtomicFileWriter>(info.external_file);
    write_pieces(*staged.data_, data_pieces);
    info.external_bytes = staged.data_->bytes_written();
    staged.data_->finish();
  }
  staged.model_ = std::make_unique<AtomicFileWriter>(path);
  write_pieces(*staged.model_, model_pieces);
  info.file_bytes = staged.model_->bytes_written();
  staged.model_->finish();
  std::tie(staged.model_sha256_, staged.data_sha256_) = digests.get();
  return staged;
}

std::vector<FileDigest> StagedModel::digests() const {
  std::vector<FileDigest> out{{model_->target().string(), model_->bytes_written(), model_sha256_}};
  if (data_) out.push_back({data_->target().string(), data_->bytes_written(), data_sha256_});
  return out;
}

void StagedModel::commit() {
  if (!data_) return model_->commit();
  // The data file being replaced stays reachable under a hard link until the model is in place.
  const fs::path& data_target = data_->target();
  std::error_code ec;
  fs::path previous;
  if (fs::is_regular_file(data_target, ec)) {
    previous = data_target.parent_path() / fmt::format(".{}.previous.{}", data_target.filename().string(), ::getpid());
    fs::remove(previous, ec);
    fs::create_hard_link(data_target, previous, ec);
    if (ec) fail("cannot keep '{}' while replacing it: {}", data_target.string(), ec.message());
  }
  try {
    data_->commit();
  } catch (...) {
    if (!previous.empty()) fs::remove(previous, ec);
    throw;
  }
  try {
    model_->commit();
  } catch (...) {
    if (!previous.empty()) {
      fs::rename(previous, data_target, ec);
    } else {
      fs::remove(data_target, ec);
    }
    throw;
  }
  if (!previous.empty()) fs::remove(previous, ec);
}

std::vector<fs::path> StagedModel::files() const {
  std::vector<fs::path> out{model_->written_path()};
  if (data_) out.push_back(data_->written_path());
  return out;
}

SaveInfo save_model(const ir::Model& model, const fs::path& path, const SaveOptions& options) {
  StagedModel staged = stage_model(model, path, options);
  staged.commit();
  return staged.info;
}

std::string save_model_to_bytes(const ir::Model& model) {
  Serialized s = serialize(model, {}, "");
  wire::Expanded expanded;
  wire::expand_payloads(s.skeleton, s.payloads, expanded);
  if (expanded.size > kProtobufLimit) fail("the model is over protobuf's 2 GB limit for one file");
  std::string out;
  out.reserve(expanded.size);
  for (const ir::Bytes& c : expanded.chunks)
    c.stream([&](ByteChunk block) { out.append(reinterpret_cast<const char*>(block.data()), block.size()); });
  return out;
}

}  // namespace mopt::io
