// Row-major GEMM for the tile driver (tile_driver.h): the BLAS that torch links, called
// directly on raw buffers (no tensor per call), with an ATen fallback.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

// Fortran BLAS, as exported by the BLAS that torch links (MKL or OpenBLAS); weak, so a torch
// without them still loads this library and takes the ATen path below.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

namespace analog {
namespace driver {

template <typename T>
void gemm_aten(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
               int64_t ldb, T* c, int64_t ldc, bool a_t) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto at_ = a_t ? at::from_blob(const_cast<T*>(a), {k, m}, {lda, 1}, opt).t()
                 : at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  auto bt = at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opt);
  auto ct = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  at::mm_out(ct, at_, bt.t());
}

// Row-major C[m, n] = A[m, k] @ B[n, k]^T, with A given as rows (lda >= k) or, when a_t, as
// its transpose [k, m] (lda >= m). Column-major BLAS sees C^T = B^T' @ A^T.
template <typename T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool a_t = false) {
  if (m == 0 || n == 0) return;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb);
  const int ildc = static_cast<int>(ldc);
  const T one = 1, zero = 0;
  const char* ta = a_t ? "T" : "N";
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r) std::fill(c + r * ldc, c + r * ldc + n, T(0));
  } else if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr)
      sgemm_("T", ta, &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc, a_t);
  } else {
    if (dgemm_ != nullptr)
      dgemm_("T", ta, &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc, a_t);
  }
}

}  // namespace driver
}  // namespace analog
