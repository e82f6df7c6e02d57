// Row-major matrix multiply C = alpha * op(A) * op(B) + beta * C. float and double go to OpenBLAS
// (picked over Eigen by measurement: bench/gemm.txt); integer types use a plain loop.
//
// Threading: OpenBLAS runs single-threaded and large GEMMs are split into column (or row) blocks over
// the executor's own threads. One thread pool for everything: OpenBLAS's spinning workers would otherwise
// compete with the executor's parallel loops for the same cores.
#pragma once
#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "exec/parallel.h"

namespace mopt::exec {

template <typename T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if constexpr (std::is_floating_point_v<T>) {
    if (k == 0) {  // BLAS rejects k = 0; C = beta * C
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
      return;
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
                static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
                static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        T sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          T av = trans_a ? a[p * lda + i] : a[i * lda + p];
          T bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
          sum = static_cast<T>(sum + av * bv);
        }
        c[i * ldc + j] = static_cast<T>(alpha * sum + (beta == 0 ? T(0) : static_cast<T>(beta * c[i * ldc + j])));
      }
    }
  }
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  const int64_t work = m * n * std::max<int64_t>(k, 1);
  const int64_t threads = thread_count();
  if (threads <= 1 || work < (int64_t{1} << 18)) {
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (n >= 64 * threads || n >= m) {
    // Column blocks (multiples of 16 for the micro-kernel).
    int64_t block = ((n + threads - 1) / threads + 15) / 16 * 16;
    int64_t blocks = (n + block - 1) / block;
    parallel_for(blocks, int64_t{1} << 20, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        int64_t n0 = i * block, cols = std::min(block, n - n0);
        gemm_serial(trans_a, trans_b, m, cols, k, alpha, a, lda, trans_b ? b + n0 * ldb : b + n0, ldb, beta, c + n0, ldc);
      }
    });
  } else {
    int64_t block = (m + threads - 1) / threads;
    int64_t blocks = (m + block - 1) / block;
    parallel_for(blocks, int64_t{1} << 20, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        int64_t m0 = i * block, rows = std::min(block, m - m0);
        gemm_serial(trans_a, trans_b, rows, n, k, alpha, trans_a ? a + m0 : a + m0 * lda, lda, b, ldb, beta, c + m0 * ldc, ldc);
      }
    });
  }
}

}  // namespace mopt::exec
