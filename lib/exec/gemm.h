// Row-major matrix multiply C = alpha * op(A) * op(B) + beta * C. float and double go to OpenBLAS
// (picked over Eigen by measurement: bench/gemm.txt); integer types use a plain loop.
#pragma once
#include <cblas.h>

#include <cstdint>
#include <type_traits>

namespace mopt::exec {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (k == 0) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
      return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
                static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else if constexpr (std::is_same_v<T, double>) {
    if (k == 0) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0 ? 0.0 : beta * c[i * ldc + j];
      return;
    }
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

}  // namespace mopt::exec
