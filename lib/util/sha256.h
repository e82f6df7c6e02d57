// SHA-256 of files and strings (OpenSSL's libcrypto), as lowercase hex: the content identity batch
// manifests and caches record.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace mopt {

// An incremental SHA-256: update() with the bytes in order, then hex() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  std::string hex();

 private:
  evp_md_ctx_st* ctx_;
};

// What a document says about a file it read or wrote.
struct FileDigest {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;
};
// Digests of `paths` in order; a folder stands for its regular files (recursively, sorted by path).
// Files are read (not mapped): a map would count the file again in peak RSS beside a loaded model's map.
std::vector<FileDigest> digest_files(const std::vector<std::filesystem::path>& paths);

// Streams the file in 1 MiB reads; throws mopt::Error naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_text(const std::string& text);

}  // namespace mopt
