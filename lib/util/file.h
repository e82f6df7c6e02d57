// Files: read-only memory maps that tensor data can borrow from without copying, and an atomic writer
// that never leaves a half-written output (temporary file in the target folder, renamed on commit,
// removed on failure or destruction).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mopt {

namespace fs = std::filesystem;

class MappedFile : public std::enable_shared_from_this<MappedFile> {
 public:
  // Maps `path` read-only. Errors (missing file, directory, empty file, permission) throw mopt::Error.
  static std::shared_ptr<const MappedFile> open(const fs::path& path);
  // The live map whose bytes include all of `range`, or nullptr: lets a writer copy bytes that were
  // never changed from the file itself (AtomicFileWriter::write_from) instead of through the map.
  static std::shared_ptr<const MappedFile> containing(std::span<const std::byte> range);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const fs::path& path() const { return path_; }
  // Hands the whole pages inside `range` (a part of bytes()) back to the kernel: resident memory drops,
  // and a later read of them loads them from the file again (the mapping is private and read-only, so
  // nothing is lost). For payloads nobody reads any more: a replaced weight.
  void release(std::span<const std::byte> range) const;
  // Reads the bytes of `range` (a part of bytes()) from the file into `out` (same size) with pread(2): a
  // copy the kernel makes into memory the caller already uses, without faulting the map's pages in.
  void read(std::span<const std::byte> range, std::span<std::byte> out) const;
  int fd() const { return fd_; }

 private:
  MappedFile() = default;
  fs::path path_;
  int fd_ = -1;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// A chunk of bytes to write; writers take lists of these so large tensors go straight from their
// source (a memory map, a buffer) to the file without being gathered into one string first.
using ByteChunk = std::span<const std::byte>;

// Calls fn(offset, block) over `bytes` in consecutive blocks of at most `block_bytes`, each aligned for any
// scalar type: bytes of a live map are read from its file with pread into one reused buffer (a first
// touch of a map's pages costs a fault per page; a weight read once to be replaced needs none of them),
// other bytes are passed as they lie when aligned, else copied block by block. block_bytes must be a
// multiple of the element size the caller reads.
void for_each_block(std::span<const std::byte> bytes, size_t block_bytes,
                    const std::function<void(size_t offset, std::span<const std::byte> block)>& fn);

// for_each_block over float32 values: fn(first, values), `first` the index of values[0], blocks of at most
// `block_floats` values (aligned for float).
void for_each_float_block(std::span<const std::byte> bytes, size_t block_floats,
                          const std::function<void(size_t first, std::span<const float> values)>& fn);

// Writes `target` through a temporary file in its folder: `finish()` flushes and fsyncs it, `commit()`
// renames it into place and fsyncs the folder, so several outputs can be finished first and committed
// together (nothing is committed unless all of them could be written). The temporary file is removed on
// failure, destruction, SIGINT and SIGTERM. Overwriting an existing file keeps its permissions. A target
// that is not a regular file (a terminal, a pipe, /dev/stdout) or "-" (standard output) is written
// directly instead: there is nothing to rename onto, and a device must not be replaced by a file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(fs::path target);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(ByteChunk chunk);
  void write(const std::string& s) { write(ByteChunk(reinterpret_cast<const std::byte*>(s.data()), s.size())); }
  // Writes `range`, bytes of `file`'s map, copying them inside the kernel from the file (copy_file_range),
  // so they are never read through the map; falls back to write(2) where the kernel cannot copy between
  // the two files (another file system on old kernels, a pipe).
  void write_from(const MappedFile& file, ByteChunk range);
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs and closes the temporary file (the last step that can fail for lack of space).
  void finish();
  // finish() if not yet done, then renames the temporary file onto the target and fsyncs the folder.
  void commit();
  // The file holding the bytes written so far (the temporary file, or the target when written directly).
  const std::string& written_path() const { return direct_ ? target_string_ : temp_path_; }
  const fs::path& target() const { return target_; }

 private:
  void flush_buffer();
  fs::path target_;
  std::string target_string_;
  std::string temp_path_;
  int fd_ = -1;
  int signal_slot_ = -1;
  bool direct_ = false;
  bool finished_ = false;
  bool kernel_copy_ = true;  // copy_file_range works between the sources seen so far and this file
  std::vector<std::byte> buffer_;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// True for "-" and for existing targets that are not regular files (devices, pipes): written in place.
bool is_direct_target(const fs::path& target);

// True when both paths exist and name the same file (links followed).
bool same_file(const fs::path& a, const fs::path& b);

// Calls fn(data, size) on consecutive chunks of at most `chunk_bytes` of a file, start to end; throws
// mopt::Error naming the file and the reason if it cannot be read (the file is closed either way).
void for_each_chunk(const fs::path& path, size_t chunk_bytes, const std::function<void(const char*, size_t)>& fn);

// The whole contents of a file; throws mopt::Error naming the file and the reason if it cannot be read.
std::string read_text_file(const fs::path& path);

// Size of a file in bytes; throws mopt::Error if it cannot be read.
uint64_t file_size_or_throw(const fs::path& path);

}  // namespace mopt
