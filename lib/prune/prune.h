// Weight pruning on ONNX graphs: which weights are pruned (Conv, MatMul, Gemm with constant float32
// weights) and how (magnitude: the smallest |w| to a target sparsity, per layer or global; N:M: at most
// N nonzeros in every M consecutive weights along the reduction axis, the pattern sparse tensor cores
// run). Shared by the prune(...) pass and `mopt prune`.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
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

// Values visited tensor by tensor: visit(fn) calls fn once per tensor; a span need not outlive its call.
using ValueVisitor = std::function<void(const std::function<void(std::span<const float>)>&)>;
struct MagnitudeThreshold {
  uint32_t bits = 0;  // the k-th smallest magnitude, as the bits of a non-negative float
  int64_t below = 0;  // how many values have a smaller magnitude
};
// The k-th smallest magnitude (k >= 1, at most the number of values) over everything `visit` shows, in
// two passes and without a copy of the values.
MagnitudeThreshold kth_smallest_magnitude(const ValueVisitor& visit, uint64_t k);
float kth_smallest_magnitude(const std::vector<std::span<const float>>& spans, uint64_t k);
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
