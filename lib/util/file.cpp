// Memory-mapped input files and atomic output files; see file.h.
#include "util/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "util/error.h"

namespace mopt {

std::shared_ptr<const MappedFile> MappedFile::open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
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
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<std::byte*>(data_), size_);
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

AtomicFileWriter::AtomicFileWriter(fs::path target) : target_(std::move(target)) {
  // A file size limit (ulimit -f) must surface as a write error (EFBIG), not kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  fs::path dir = target_.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("cannot write '{}': folder '{}' does not exist", target_.string(), dir.string());
  if (fs::is_directory(target_, ec)) fail("cannot write '{}': it is a directory", target_.string());
  temp_path_ = (dir / fmt::format(".{}.tmp.XXXXXX", target_.filename().string())).string();
  fd_ = mkostemp(temp_path_.data(), O_CLOEXEC);
  if (fd_ < 0) fail("cannot create a file in '{}': {}", dir.string(), std::strerror(errno));
  // mkstemp creates 0600; give the output the permissions a normally created file would get.
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd_, 0666 & ~mask);
  buffer_.reserve(kBufferSize);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::flush_buffer() {
  write_all(fd_, buffer_.data(), buffer_.size(), target_.string());
  buffer_.clear();
}

void AtomicFileWriter::write(ByteChunk chunk) {
  written_ += chunk.size();
  if (chunk.size() >= kDirectWriteSize) {
    flush_buffer();
    write_all(fd_, chunk.data(), chunk.size(), target_.string());
    return;
  }
  if (buffer_.size() + chunk.size() > kBufferSize) flush_buffer();
  buffer_.insert(buffer_.end(), chunk.begin(), chunk.end());
}

void AtomicFileWriter::commit() {
  flush_buffer();
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("cannot write '{}': {}", target_.string(), std::strerror(errno));
  }
  fd_ = -1;
  if (std::rename(temp_path_.c_str(), target_.c_str()) != 0)
    fail("cannot rename onto '{}': {}", target_.string(), std::strerror(errno));
  committed_ = true;
}

uint64_t file_size_or_throw(const fs::path& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) fail("cannot read '{}': {}", path.string(), ec.message());
  return size;
}

}  // namespace mopt
