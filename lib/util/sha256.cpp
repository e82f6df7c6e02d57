// SHA-256 through OpenSSL's EVP interface (one digest context per Sha256; no global state).
#include "util/sha256.h"

#include <algorithm>
#include <memory>
#include <new>
#include <vector>

#include <openssl/evp.h>

#include "util/error.h"
#include "util/file.h"

namespace mopt {
Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw std::bad_alloc();
  }
}
Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }
void Sha256::update(const void* data, size_t size) { EVP_DigestUpdate(ctx_, data, size); }

std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx_, digest, &length);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 15];
  }
  return out;
}

std::string sha256_file(const std::filesystem::path& path) {
  Sha256 digest;
  for_each_chunk(path, 1 << 20, [&](const char* data, size_t size) { digest.update(data, size); });
  return digest.hex();
}

std::string sha256_text(const std::string& text) {
  Sha256 digest;
  digest.update(text.data(), text.size());
  return digest.hex();
}

std::vector<FileDigest> digest_files(const std::vector<std::filesystem::path>& paths) {
  std::vector<FileDigest> out;
  auto add = [&](const std::filesystem::path& file) {
    std::error_code ec;
    const uint64_t bytes = std::filesystem::file_size(file, ec);
    if (ec) fail("cannot read '{}': {}", file.string(), ec.message());
    out.push_back({file.string(), bytes, sha256_file(file)});
  };
  for (const std::filesystem::path& path : paths) {
    if (!std::filesystem::is_directory(path)) {
      add(path);
      continue;
    }
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) add(file);
  }
  return out;
}

}  // namespace mopt
