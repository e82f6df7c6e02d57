// Weight pruning on ONNX graphs: which weights are pruned (Conv, MatMul, Gemm with constant float32
// weights) and how (magnitude: the smallest |w| to a target sparsity, per layer or global; N:M: at most
// N nonzeros in every M consecutive weights along the reduction axis, the pattern sparse tensor cores
// run). Shared by the prune(...) pass and `mopt prune`.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace mopt::prune {

enum class Method { Magnitude, NM };

struct PruneConfig {
  Method method = Method::Magnitude;
  double sparsity = 0.5;  // magnitude: fraction of each tensor's (or all tensors') weights set to zero
  bool global = false;    // magnitude: one threshold over all selected tensors instead of one per tensor
  int64_t n = 2, m = 4;   // N:M
  std::set<std::string> op_types = {"Conv", "MatMul", "Gemm"};
  std::map<std::string, double> op_sparsity;    // per operator type, overrides `sparsity` (magnitude)
  std::map<std::string, double> node_sparsity;  // per node name, overrides both (magnitude)
  std::set<std::string> exclude_nodes;
  bool skip_first = false, skip_last = false;  // the first/last selected layer in graph order
  int64_t min_elements = 0;                    // smaller weights are left alone
};

struct TensorRecord {
  std::string node, op_type, tensor;
  int64_t elements = 0, zeros_before = 0, zeros_after = 0;
  double target = 0;  // magnitude: the sparsity asked for; N:M: 1 - n/m
  int64_t axis = -1;  // N:M: the reduction axis of the weight
};

struct PruneSummary {
  std::vector<TensorRecord> tensors;
  std::vector<std::pair<std::string, std::string>> skipped;  // node, reason
  int64_t elements = 0, zeros_before = 0, zeros_after = 0;
};

// Prunes the selected weights of the main graph in place (new initializers replace the old ones).
// Throws mopt::Error (usage) for invalid settings (sparsity outside [0, 1), n >= m, ...).
PruneSummary prune_model(ir::Model& model, const PruneConfig& config);

// Sets the `count` smallest-magnitude values to zero (ties: lower index first).
void zero_smallest(std::span<float> values, int64_t count);

// Zeroes the `count` smallest magnitudes over a sequence of tensors (ties: the earlier tensor, then the lower
// index), without sorting or an index array: a radix selection on the magnitudes' bits, reading each
// source twice. Three rounds, each over all the tensors in the same order before the next round begins:
//   histogram(source)  a histogram of the magnitudes' high 16 bits;
//   copy(source, out)  copies, zeroing every value below the bucket that holds the count-th smallest, and
//                      histograms that bucket's low 16 bits; returns the zeros in the source;
//   finish(out)        zeroes the rest of the count in place; returns the zeros in `out`.
// A count above the number of values zeroes them all. `source` and `out` may be the same span.
class SmallestZeroing {
 public:
  explicit SmallestZeroing(uint64_t count);
  void histogram(std::span<const float> values);
  int64_t copy(std::span<const float> from, std::span<float> to);
  int64_t finish(std::span<float> to);

 private:
  void select_bucket();
  uint64_t count_, total_ = 0, below_ = 0;
  std::vector<uint64_t> histogram_;
  bool selected_ = false;
  uint32_t high_ = 0;
  std::optional<uint32_t> threshold_;
  int64_t ties_ = 0;
};

// to[i] = from[i], or 0 where |from[i]| is below the threshold; then values at the threshold are zeroed in
// order while `ties` (decremented) is positive. `from` and `to` may be the same span. Returns the zeros in `to`.
int64_t copy_pruned(std::span<const float> from, std::span<float> to, uint32_t threshold_bits, int64_t& ties);
// Keeps the n largest |values| of every m consecutive ones along `axis` of a tensor of `dims` (ties:
// lower index kept) and zeros the rest. dims[axis] must be a multiple of m.
void prune_n_m(std::span<float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m);
// Whether every group of m consecutive values along `axis` has at most n nonzeros.
bool has_n_m_pattern(std::span<const float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m);

nlohmann::json to_json(const PruneSummary& summary, const PruneConfig& config);

}  // namespace mopt::prune
