// SHA-256 through OpenSSL's EVP interface (one digest context per call; no global state).
#include "util/sha256.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "util/error.h"

namespace mopt {
namespace {

struct DigestContext {
  DigestContext() : ctx(EVP_MD_CTX_new()) {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
  }
  ~DigestContext() { EVP_MD_CTX_free(ctx); }
  DigestContext(const DigestContext&) = delete;
  DigestContext& operator=(const DigestContext&) = delete;
  void update(const void* data, size_t size) { EVP_DigestUpdate(ctx, data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx, digest, &length);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
      out += digits[digest[i] >> 4];
      out += digits[digest[i] & 15];
    }
    return out;
  }
  EVP_MD_CTX* ctx;
};

}  // namespace

std::string sha256_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot read '{}': {}", path.string(), std::strerror(errno));
  DigestContext digest;
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read '{}': {}", path.string(), std::strerror(err));
    }
    if (n == 0) break;
    digest.update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return digest.hex();
}

std::string sha256_text(const std::string& text) {
  DigestContext digest;
  digest.update(text.data(), text.size());
  return digest.hex();
}

}  // namespace mopt
