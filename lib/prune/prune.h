// Weight pruning on ONNX graphs: which weights are pruned (Conv, MatMul, Gemm with constant float32
// weights) and how (magnitude: the smallest |w| to a target sparsity, per layer or global; N:M: at most
// N nonzeros in every M consecutive weights along the reduction axis, the pattern sparse tensor cores
// run). Shared by the prune(...) pass and `mopt prune`.
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
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

// Prunes the selected weights of the main graph in place (new initializers replace the old ones). A
// magnitude-pruned weight is a payload produced on demand from the old one (ir::Bytes::produced): saving
// streams it, and it is built in memory only if something reads it.
// Throws mopt::Error (usage) for invalid settings (sparsity outside [0, 1), n >= m, ...).
PruneSummary prune_model(ir::Model& model, const PruneConfig& config);

// Sets the `count` smallest-magnitude values to zero (ties: lower index first).
void zero_smallest(std::span<float> values, int64_t count);

// Where magnitude pruning cuts: values whose magnitude bits (|v| as an unsigned integer, ordered as the
// magnitudes are, NaN above infinity) are below `threshold_bits` become zero, and so do the first `ties`
// values at it, in order.
struct Cut {
  uint32_t threshold_bits = 0;
  int64_t ties = 0;
};

// Finds the cut that zeroes the `count` smallest magnitudes over a sequence of tensors (ties: the earlier
// tensor, then the lower index), without sorting, copying or an index array: a radix selection on the
// magnitudes' bits in two rounds, each over all the tensors in the same order before the next begins:
//   histogram(values)  a histogram of the magnitudes' high 16 bits; returns the zeros in `values`;
//   refine(values)     a histogram of the low 16 bits of the bucket that holds the count-th smallest;
// then cut(). A count above the number of values zeroes them all.
class MagnitudeSelection {
 public:
  explicit MagnitudeSelection(uint64_t count);
  int64_t histogram(std::span<const float> values);
  void refine(std::span<const float> values);
  Cut cut();
  uint64_t count() const { return std::min(count_, total_); }  // the values the cut zeroes

 private:
  void select_bucket();
  uint64_t count_, total_ = 0, below_ = 0;
  std::vector<uint64_t> histogram_;
  bool selected_ = false;
  uint32_t high_ = 0;
};

// to[i] = from[i], or 0 where `cut` zeroes it; `cut.ties` counts down the ties zeroed, so a tensor read in
// blocks (or several tensors under one cut) are cut in order. `from` and `to` may be the same span.
// Returns the zeros in `to`.
int64_t copy_pruned(std::span<const float> from, std::span<float> to, Cut& cut);
// Keeps the n largest |values| of every m consecutive ones along `axis` of a tensor of `dims` (ties:
// lower index kept) and zeros the rest. dims[axis] must be a multiple of m.
void prune_n_m(std::span<float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m);
// Whether every group of m consecutive values along `axis` has at most n nonzeros.
bool has_n_m_pattern(std::span<const float> values, const std::vector<int64_t>& dims, size_t axis, int64_t n, int64_t m);

nlohmann::json to_json(const PruneSummary& summary, const PruneConfig& config);

}  // namespace mopt::prune
