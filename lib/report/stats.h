// Facts about a model for reports and `mopt inspect`: node and initializer counts, parameters and
// bytes by dtype (weights in Constant nodes included), the op histogram, the largest tensors,
// opsets, inputs and outputs. Subgraphs are included.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace mopt::report {

struct DtypeStats {
  int64_t tensors = 0;
  int64_t elements = 0;
  uint64_t bytes = 0;
};

struct TensorSummary {
  std::string name;
  std::string dtype;
  std::vector<int64_t> dims;
  uint64_t bytes = 0;
  std::string kind;  // "initializer" or "constant-node"
};

struct IoSummary {
  std::string name;
  std::string type;  // e.g. float[N,3,224,224]
};

struct ModelStats {
  int64_t ir_version = 0;
  std::vector<std::pair<std::string, int64_t>> opsets;
  std::string producer;
  std::vector<IoSummary> inputs, outputs;
  int64_t nodes = 0;
  int64_t subgraphs = 0;
  int64_t initializers = 0;
  int64_t constant_nodes = 0;
  int64_t parameters = 0;
  uint64_t parameter_bytes = 0;
  std::map<std::string, DtypeStats> by_dtype;
  std::map<std::string, int64_t> op_histogram;  // op_type, prefixed with its domain outside ai.onnx
  std::vector<TensorSummary> largest;           // up to `largest_count`, biggest first
};

ModelStats collect_stats(const ir::Model& model, size_t largest_count = 10);
nlohmann::json to_json(const ModelStats& stats);
// "float[N,3,224,224]", "int64[?]", "seq(float[3])", "?" for an absent type.
std::string format_type(const onnx::TypeProto& type);
// The size of files compressed with zstd: exact (one stream over every byte) up to `exact_up_to` bytes in
// all; above it an estimate from kSampleBlocks evenly spaced blocks (sample_block_bytes: 1/512 of the
// total, as a power of two between 64 KiB and 1 MiB, so about an eighth of a model under 512 MiB is
// compressed and 64 MiB of a larger one), each compressed alone and scaled by the file's size. The report
// then costs a small part of the command's time on any model (an exact size doubled a 17 MB model's) and
// maps no pages. Weights compress about uniformly along a file, so the estimate is close (measured:
// bench/tool.txt); the report says which it is.
struct CompressedSize {
  uint64_t bytes = 0;          // exact, or the estimate
  uint64_t sampled_bytes = 0;  // bytes compressed to get it (all of them when exact)
  uint64_t total_bytes = 0;    // bytes of the files
  bool estimated() const { return sampled_bytes < total_bytes; }
};
constexpr uint64_t kExactCompressionLimit = 8ull << 20;
constexpr int kSampleBlocks = 64;
uint64_t sample_block_bytes(uint64_t total_bytes);
CompressedSize zstd_compressed_size(const std::vector<std::filesystem::path>& files, int level = 3,
                                    uint64_t exact_up_to = kExactCompressionLimit);
std::string human_bytes(uint64_t bytes);
std::string human_count(int64_t count);

}  // namespace mopt::report
