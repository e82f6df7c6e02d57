// SHA-256 of files and strings (OpenSSL's libcrypto), as lowercase hex: the content identity batch
// manifests and caches record.
#pragma once
#include <filesystem>
#include <string>

namespace mopt {

// Streams the file in 1 MiB reads; throws mopt::Error naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_text(const std::string& text);

}  // namespace mopt
