// Numpy-style broadcasting iteration shared by the elementwise kernels (Add, Where, Expand, ...).
// Dimensions are coalesced where every operand is contiguous across them, so same-shape operands run
// as one flat loop and the common [N,C,H,W] op [C,1,1] case runs rows of H*W.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "exec/array.h"
#include "exec/parallel.h"

namespace mopt::exec {

// Calls row(out_offset, length, in_offsets, in_steps) for every innermost row of the output, where
// operand k's element j of the row is at in_offsets[k] + j * in_steps[k] (step 0 or 1). With `parallel`,
// rows are spread over the executor's threads (row must then only write its own part of the output).
template <size_t N, typename Row>
void for_each_broadcast_row(const Shape& out_shape, const std::array<const Shape*, N>& in_shapes, Row&& row,
                            bool parallel = false) {
  const size_t rank = out_shape.size();
  // Per operand dims aligned to the output rank (leading 1s), then strides with 0 on broadcast dims.
  std::array<std::vector<int64_t>, N> strides;
  for (size_t k = 0; k < N; ++k) {
    const Shape& s = *in_shapes[k];
    std::vector<int64_t> dims(rank, 1);
    for (size_t i = 0; i < s.size(); ++i) dims[rank - s.size() + i] = s[i];
    strides[k].assign(rank, 0);
    int64_t stride = 1;
    for (size_t i = rank; i-- > 0;) {
      strides[k][i] = dims[i] == 1 ? 0 : stride;
      stride *= dims[i];
    }
  }
  // Coalesce dimension i into i+1 when every operand's stride allows viewing them as one.
  std::vector<int64_t> dims;
  std::array<std::vector<int64_t>, N> st;
  for (size_t i = 0; i < rank; ++i) {
    if (out_shape[i] == 1) continue;  // size-1 dims contribute nothing
    bool merge = !dims.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = st[k].back() == strides[k][i] * out_shape[i];
    }
    if (merge) {
      dims.back() *= out_shape[i];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides[k][i];
    } else {
      dims.push_back(out_shape[i]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][i]);
    }
  }
  int64_t total = numel(out_shape);
  if (total == 0) return;
  if (dims.empty()) {  // a single element
    std::array<int64_t, N> offsets{};
    std::array<int64_t, N> steps{};
    row(int64_t{0}, int64_t{1}, offsets, steps);
    return;
  }
  const size_t r = dims.size();
  const int64_t inner = dims[r - 1];
  std::array<int64_t, N> steps;
  for (size_t k = 0; k < N; ++k) steps[k] = st[k][r - 1];
  // Rows [first, last) of the output, each starting from the odometer position of its index.
  auto rows = [&](int64_t first, int64_t last) {
    std::vector<int64_t> index(r, 0);
    std::array<int64_t, N> offsets{};
    int64_t rest = first;
    for (size_t d = r - 1; d-- > 0;) {
      index[d] = rest % dims[d];
      rest /= dims[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += index[d] * st[k][d];
    }
    for (int64_t i = first; i < last; ++i) {
      row(i * inner, inner, offsets, steps);
      // Advance the odometer over the outer dims.
      for (size_t d = r - 1; d-- > 0;) {
        ++index[d];
        for (size_t k = 0; k < N; ++k) offsets[k] += st[k][d];
        if (index[d] < dims[d]) break;
        for (size_t k = 0; k < N; ++k) offsets[k] -= st[k][d] * dims[d];
        index[d] = 0;
      }
    }
  };
  if (parallel) {
    parallel_for(total / inner, inner, rows);
  } else {
    rows(0, total / inner);
  }
}

}  // namespace mopt::exec
