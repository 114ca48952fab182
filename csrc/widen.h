// Half-precision storage, float compute: the kernels read bfloat16 / float16 inputs and
// weights where they load them (input rows, GEMM weight panels, chip weights) and widen them to
// float there, so no float copy of a whole weight exists; with T = U the copy is a plain copy.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace analog {

// dst[k] = float(src[k]) for k < n (exact: every bfloat16 / float16 value is a float).
template <typename T, typename U>
inline void widen(const U* __restrict__ src, T* __restrict__ dst, int64_t n) {
  if constexpr (std::is_same_v<T, U>) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
  } else if constexpr (std::is_same_v<U, c10::BFloat16> && std::is_same_v<T, float>) {
    // a bfloat16 is the top half of a float: a shift, which vectorises
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    for (int64_t k = 0; k < n; ++k) {
      const uint32_t bits = static_cast<uint32_t>(s[k]) << 16;
      std::memcpy(dst + k, &bits, 4);
    }
  } else {
    int64_t k = 0;
#if defined(__F16C__)
    if constexpr (std::is_same_v<U, c10::Half> && std::is_same_v<T, float>) {
      for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128(
                                      reinterpret_cast<const __m128i*>(src + k))));
    }
#endif
    for (; k < n; ++k) dst[k] = static_cast<T>(src[k]);
  }
}

// dst[k] = U(src[k]), rounded to nearest even (as Tensor.to(dtype)).
template <typename U, typename T>
inline void narrow(const T* __restrict__ src, U* __restrict__ dst, int64_t n) {
  if constexpr (std::is_same_v<T, U>) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<U>(src[k]);
  }
}

}  // namespace analog
