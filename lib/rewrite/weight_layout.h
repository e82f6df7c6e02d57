// Where a weight's output channels and reduction axis lie, for the operators whose input 1 is a weight.
// The one place passes look this up (quantization's per-channel axis, clipping, pruning, BatchNorm folding).
//
//   Conv           W [M, C/group, k...]     output 0,         reduction 1
//   ConvTranspose  W [C, M/group, k...]     output 1,         reduction 0
//   MatMul         B [..., K, N]            output rank - 1,  reduction rank - 2
//   Gemm           B [K, N]  (transB=1: [N, K])   output 1 (0),  reduction 0 (1)
#pragma once
#include <cstddef>
#include <optional>

#include "ir/ir.h"

namespace mopt::rewrite {

struct WeightLayout {
  size_t output_axis;
  size_t reduction_axis;
};

// The layout of `node`'s weight of rank `weight_rank`; nullopt for other operators or a rank the operator
// does not take (below 2; Conv/ConvTranspose below 3).
std::optional<WeightLayout> weight_layout(const ir::Node& node, size_t weight_rank);

}  // namespace mopt::rewrite
