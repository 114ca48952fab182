// A cache-friendly transpose of a strided block: dst[j * ldd + i] = src[i * lds + j]. The
// identity readout (tile_driver.h's one-hot vectors) reads each weight column as a contiguous
// output row; column by column, every value comes from another cache line, a weight row apart,
// and at power-of-two row strides those lines fall into a few cache sets and miss (the readout
// of drift compensation then cost as much as the chip's noise). In float with AVX2 this moves
// 8 x 8 blocks through registers, 16 columns (one cache line of each source row) per pass.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace analog {

#if defined(__AVX2__)
// The 8 x 8 block at s (row stride ls) into d (row stride ld), transposed.
inline void transpose8x8(const float* s, int64_t ls, float* d, int64_t ld) {
  __m256 r[8], t[8], u[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(s + k * ls);
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  for (int h = 0; h < 8; h += 4) {  // rows 0-3, then 4-7: columns (0|4), (1|5), (2|6), (3|7)
    u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(d + k * ld, _mm256_permute2f128_ps(u[k], u[k + 4], 0x20));
    _mm256_storeu_ps(d + (k + 4) * ld, _mm256_permute2f128_ps(u[k], u[k + 4], 0x31));
  }
}
#endif

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols.
template <typename T>
void transpose(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  int64_t j0 = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    const int64_t r8 = rows - rows % 8;
    for (; j0 + 8 <= cols; j0 += 16) {
      const bool two = j0 + 16 <= cols;  // 16 columns: whole source lines in one pass
      for (int64_t i0 = 0; i0 < r8; i0 += 8) {
        transpose8x8(src + i0 * lds + j0, lds, dst + j0 * ldd + i0, ldd);
        if (two) transpose8x8(src + i0 * lds + j0 + 8, lds, dst + (j0 + 8) * ldd + i0, ldd);
      }
      const int64_t w = two ? 16 : 8;
      for (int64_t i = r8; i < rows; ++i)
        for (int64_t j = j0; j < j0 + w; ++j) dst[j * ldd + i] = src[i * lds + j];
      if (!two) {
        j0 += 8;
        break;
      }
    }
  }
#endif
  for (int64_t i = 0; i < rows; ++i)  // the remaining columns, row by row
    for (int64_t j = j0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace analog
