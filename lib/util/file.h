// Files: read-only memory maps that tensor data can borrow from without copying, and an atomic writer
// that never leaves a half-written output (temporary file in the target folder, renamed on commit,
// removed on failure or destruction).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mopt {

namespace fs = std::filesystem;

class MappedFile {
 public:
  // Maps `path` read-only. Errors (missing file, directory, empty file, permission) throw mopt::Error.
  static std::shared_ptr<const MappedFile> open(const fs::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const fs::path& path() const { return path_; }

 private:
  MappedFile() = default;
  fs::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// A chunk of bytes to write; writers take lists of these so large tensors go straight from their
// source (a memory map, a buffer) to the file without being gathered into one string first.
using ByteChunk = std::span<const std::byte>;

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(fs::path target);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(ByteChunk chunk);
  void write(const std::string& s) { write(ByteChunk(reinterpret_cast<const std::byte*>(s.data()), s.size())); }
  uint64_t bytes_written() const { return written_; }
  // Flushes, closes and renames the temporary file onto the target.
  void commit();

 private:
  void flush_buffer();
  fs::path target_;
  std::string temp_path_;
  int fd_ = -1;
  std::vector<std::byte> buffer_;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Size of a file in bytes; throws mopt::Error if it cannot be read.
uint64_t file_size_or_throw(const fs::path& path);

}  // namespace mopt
