// Memory-mapped input files and atomic output files; see file.h.
#include "util/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "util/error.h"

namespace mopt {

namespace {
// Every live map, for MappedFile::containing.
std::mutex g_maps_mutex;
std::vector<const MappedFile*> g_maps;
}  // namespace

std::shared_ptr<const MappedFile> MappedFile::containing(std::span<const std::byte> range) {
  std::lock_guard lock(g_maps_mutex);
  for (const MappedFile* map : g_maps) {
    const std::span<const std::byte> bytes = map->bytes();
    if (range.data() >= bytes.data() && range.data() + range.size() <= bytes.data() + bytes.size()) return map->shared_from_this();
  }
  return nullptr;
}

void MappedFile::read(std::span<const std::byte> range, std::span<std::byte> out) const {
  if (range.data() < data_ || range.data() + range.size() > data_ + size_ || out.size() != range.size())
    throw std::logic_error("MappedFile::read outside the map");
  auto offset = static_cast<off_t>(range.data() - data_);
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read '{}': {}", path_.string(), std::strerror(errno));
    if (n == 0) fail("cannot read '{}': it became shorter while it was read", path_.string());
    done += static_cast<size_t>(n);
  }
}

void for_each_block(std::span<const std::byte> bytes, size_t block_bytes,
                    const std::function<void(size_t offset, std::span<const std::byte> block)>& fn) {
  const std::shared_ptr<const MappedFile> file = MappedFile::containing(bytes);
  if (!file && reinterpret_cast<uintptr_t>(bytes.data()) % alignof(std::max_align_t) == 0) {
    for (size_t offset = 0; offset < bytes.size(); offset += block_bytes) fn(offset, bytes.subspan(offset, std::min(block_bytes, bytes.size() - offset)));
    return;
  }
  std::vector<std::max_align_t> storage((std::min(bytes.size(), block_bytes) + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
  const std::span<std::byte> buffer(reinterpret_cast<std::byte*>(storage.data()), std::min(bytes.size(), block_bytes));
  for (size_t offset = 0; offset < bytes.size(); offset += buffer.size()) {
    const size_t n = std::min(buffer.size(), bytes.size() - offset);
    if (file) file->read(bytes.subspan(offset, n), buffer.first(n));
    else std::memcpy(buffer.data(), bytes.data() + offset, n);
    fn(offset, buffer.first(n));
  }
}

void for_each_float_block(std::span<const std::byte> bytes, size_t block_floats,
                          const std::function<void(size_t first, std::span<const float> values)>& fn) {
  for_each_block(bytes, block_floats * sizeof(float), [&](size_t offset, std::span<const std::byte> block) {
    fn(offset / sizeof(float), {reinterpret_cast<const float*>(block.data()), block.size() / sizeof(float)});
  });
}

std::shared_ptr<const MappedFile> MappedFile::open(const fs::path& path) {
  // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; fstat then refuses anything but
  // a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("cannot open '{}': {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("cannot read '{}': {}", path.string(), std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("'{}' is a directory, not a file", path.string());
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'{}' is not a regular file", path.string());
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("cannot map '{}': {}", path.string(), std::strerror(e));
    }
    file->data_ = static_cast<const std::byte*>(p);
  }
  file->fd_ = fd;  // kept for read() and for writers' in-kernel copies
  if (file->data_ != nullptr) {
    std::lock_guard lock(g_maps_mutex);
    g_maps.push_back(file.get());
  }
  return file;
}

void MappedFile::release(std::span<const std::byte> range) const {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(range.data()) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(range.data()) + range.size()) / page * page;
  const auto map_begin = reinterpret_cast<uintptr_t>(data_);
  if (end <= begin || begin < map_begin || end > map_begin + size_) return;
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice: a failure changes nothing
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    std::lock_guard lock(g_maps_mutex);
    g_maps.erase(std::find(g_maps.begin(), g_maps.end(), this));
    munmap(const_cast<std::byte*>(data_), size_);
  }
  if (fd_ >= 0) ::close(fd_);
}

namespace {
constexpr size_t kBufferSize = 1 << 20;
// Chunks at least this large bypass the buffer and go to write(2) directly.
constexpr size_t kDirectWriteSize = 256 << 10;

void write_all(int fd, const std::byte* p, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '{}': {}", what, std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

// Temporary files to remove if SIGINT or SIGTERM arrives: fixed slots, so the handler only calls unlink.
namespace {
constexpr int kSignalSlots = 32;
char g_temp_paths[kSignalSlots][4096];
std::atomic<bool> g_slot_used[kSignalSlots];   // claimed by a writer
std::atomic<bool> g_slot_ready[kSignalSlots];  // its path is complete (the handler reads only these)

extern "C" void remove_temps_and_die(int sig) {
  for (int i = 0; i < kSignalSlots; ++i) {
    if (g_slot_ready[i].load()) ::unlink(g_temp_paths[i]);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int register_temp(const std::string& path) {
  static const bool installed = [] {
    std::signal(SIGINT, remove_temps_and_die);
    std::signal(SIGTERM, remove_temps_and_die);
    return true;
  }();
  (void)installed;
  if (path.size() >= sizeof(g_temp_paths[0])) return -1;
  for (int i = 0; i < kSignalSlots; ++i) {
    bool expected = false;
    if (g_slot_used[i].load() || !g_slot_used[i].compare_exchange_strong(expected, true)) continue;
    std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
    g_slot_ready[i].store(true);
    return i;
  }
  return -1;
}

void unregister_temp(int slot) {
  if (slot < 0) return;
  g_slot_ready[slot].store(false);
  g_slot_used[slot].store(false);
}

void fsync_folder(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some file systems refuse fsync on folders
  ::close(fd);
}
}  // namespace

bool is_direct_target(const fs::path& target) {
  if (target == "-") return true;
  struct stat st {};
  return ::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

AtomicFileWriter::AtomicFileWriter(fs::path target) : target_(std::move(target)), target_string_(target_.string()) {
  // A file size limit (ulimit -f) must surface as a write error (EFBIG), not kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  buffer_.reserve(kBufferSize);
  if (is_direct_target(target_)) {
    direct_ = true;
    fd_ = target_ == "-" ? ::dup(STDOUT_FILENO) : ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot write '{}': {}", target_string_, std::strerror(errno));
    return;
  }
  fs::path dir = target_.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("cannot write '{}': folder '{}' does not exist", target_string_, dir.string());
  if (fs::is_directory(target_, ec)) fail("cannot write '{}': it is a directory", target_string_);
  temp_path_ = (dir / fmt::format(".{}.tmp.XXXXXX", target_.filename().string())).string();
  fd_ = mkostemp(temp_path_.data(), O_CLOEXEC);
  if (fd_ < 0) fail("cannot create a file in '{}': {}", dir.string(), std::strerror(errno));
  signal_slot_ = register_temp(temp_path_);
  // mkstemp creates 0600: an overwritten file keeps its permissions, a new one gets what a normally
  // created file would.
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    fchmod(fd_, st.st_mode & 07777);
  } else {
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd_, 0666 & ~mask);
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !direct_) ::unlink(temp_path_.c_str());
  unregister_temp(signal_slot_);
}

void AtomicFileWriter::flush_buffer() {
  write_all(fd_, buffer_.data(), buffer_.size(), target_string_);
  buffer_.clear();
}

void AtomicFileWriter::write(ByteChunk chunk) {
  written_ += chunk.size();
  if (chunk.size() >= kDirectWriteSize) {
    flush_buffer();
    write_all(fd_, chunk.data(), chunk.size(), target_string_);
    return;
  }
  if (buffer_.size() + chunk.size() > kBufferSize) flush_buffer();
  buffer_.insert(buffer_.end(), chunk.begin(), chunk.end());
}

void AtomicFileWriter::write_from(const MappedFile& file, ByteChunk range) {
  const std::span<const std::byte> map = file.bytes();
  if (range.data() < map.data() || range.data() + range.size() > map.data() + map.size())
    throw std::logic_error("AtomicFileWriter::write_from outside the map");
  flush_buffer();
  written_ += range.size();
  auto offset = static_cast<off_t>(range.data() - map.data());
  size_t left = range.size();
  while (kernel_copy_ && left > 0) {
    const ssize_t n = ::copy_file_range(file.fd(), &offset, fd_, nullptr, left, 0);
    if (n > 0) {
      left -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n == 0 || errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
      kernel_copy_ = false;  // the kernel cannot copy between these two: write the rest from the map
    } else {
      fail("cannot write '{}': {}", target_string_, std::strerror(errno));
    }
  }
  write_all(fd_, range.data() + (range.size() - left), left, target_string_);
}

void AtomicFileWriter::finish() {
  if (finished_) return;
  flush_buffer();
  if (!direct_ && ::fsync(fd_) != 0) fail("cannot write '{}': {}", target_string_, std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("cannot write '{}': {}", target_string_, std::strerror(errno));
  finished_ = true;
}

void AtomicFileWriter::commit() {
  finish();
  if (direct_) {
    committed_ = true;
    return;
  }
  if (std::rename(temp_path_.c_str(), target_.c_str()) != 0)
    fail("cannot rename onto '{}': {}", target_string_, std::strerror(errno));
  committed_ = true;
  unregister_temp(signal_slot_);
  signal_slot_ = -1;
  fsync_folder(target_.parent_path());
}

uint64_t file_size_or_throw(const fs::path& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) fail("cannot read '{}': {}", path.string(), ec.message());
  return size;
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

void for_each_chunk(const fs::path& path, size_t chunk_bytes, const std::function<void(const char*, size_t)>& fn) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot read '{}': {}", path.string(), std::strerror(errno));
  std::vector<char> buffer(chunk_bytes);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read '{}': {}", path.string(), std::strerror(err));
    }
    if (n == 0) break;
    try {
      fn(buffer.data(), static_cast<size_t>(n));
    } catch (...) {
      ::close(fd);
      throw;
    }
  }
  ::close(fd);
}

std::string read_text_file(const fs::path& path) {
  std::string text;
  for_each_chunk(path, 1 << 16, [&](const char* data, size_t size) { text.append(data, size); });
  return text;
}

}  // namespace mopt
