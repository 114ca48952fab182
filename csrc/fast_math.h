// The float log and exp of every kernel (cephes logf / expf polynomials, float accuracy), once:
// the polynomials are templates over the lane type (float, or __m256 through GCC's vector
// operators), so the scalar forms (vlog / vexp, in loops GCC vectorises: device_chip.cpp, the
// portable paths) and the 8-lane forms (simd::log8 / exp8: rng.h's Box-Muller, pcm_chip.cpp)
// evaluate the same expressions and round the same way.
//
// Under the default -ftrapping-math GCC neither if-converts a ternary whose arms compute
// something nor a std::min/max it has jump-threaded into a branch, and such a loop stays scalar.
// The scalar helpers select through all-ones bit masks instead, so every loop that uses them
// vectorises.
#pragma once

#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace analog {

inline uint32_t bits_of(float x) { return __builtin_bit_cast(uint32_t, x); }
inline float float_of(uint32_t b) { return __builtin_bit_cast(float, b); }

// c ? a : b, both already computed.
inline float vsel(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return float_of((m & bits_of(a)) | (~m & bits_of(b)));
}
inline float vmax(float a, float b) { return vsel(a < b, b, a); }
inline float vmin(float a, float b) { return vsel(b < a, b, a); }
inline float vclamp(float x, float lo, float hi) { return vmin(vmax(x, lo), hi); }

namespace poly {

// log(2^e (1 + t)) for t in [sqrt(1/2) - 1, sqrt(2) - 1) (the range reduction is the caller's).
template <typename V>
inline V log_reduced(V t, V e) {
  const V z = t * t;
  V y = t * 7.0376836292e-2f - 1.1514610310e-1f;
  y = y * t + 1.1676998740e-1f;
  y = y * t - 1.2420140846e-1f;
  y = y * t + 1.4249322787e-1f;
  y = y * t - 1.6668057665e-1f;
  y = y * t + 2.0000714765e-1f;
  y = y * t - 2.4999993993e-1f;
  y = y * t + 3.3333331174e-1f;
  y = y * t * z;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  return t + y + 0.693359375f * e;
}

// e^x / 2^n for n = round(x / ln 2) (Cody-Waite reduction, then the polynomial).
template <typename V>
inline V exp_reduced(V x, V n) {
  const V r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  V p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kExpMin = -87.0f;  // e^x underflows to e^-87 (~1.6e-38) below

}  // namespace poly

// Natural log of a positive normal float (float accuracy).
inline float vlog(float x) {
  const uint32_t i = bits_of(x);
  const float m = float_of((i & 0x007fffffu) | 0x3f000000u);  // mantissa in [0.5, 1)
  // m < sqrt(1/2): use 2m and e - 1
  const uint32_t small = 0u - static_cast<uint32_t>(m < poly::kSqrtHalf);
  const float e = static_cast<float>(static_cast<int32_t>((i >> 23) & 0xffu) - 126) -
                  float_of(small & 0x3f800000u);
  return poly::log_reduced((m - 1.0f) + float_of(small & bits_of(m)), e);
}

// e^x (float accuracy for -87 < x < 88; e^-87 below, not 0).
inline float vexp(float x) {
  x = vmax(x, poly::kExpMin);
  // round to nearest by the 1.5 * 2^23 trick (nearbyint does not vectorise)
  const float n = (x * poly::kLog2e + 12582912.0f) - 12582912.0f;
  int32_t ni = static_cast<int32_t>(n);
  ni = ni > 127 ? 127 : ni;  // (integer selects do vectorise)
  return poly::exp_reduced(x, n) * float_of(static_cast<uint32_t>(ni + 127) << 23);
}

#if defined(__AVX2__)
namespace simd {

// vlog on 8 lanes.
inline __m256 log8(__m256 x) {
  const __m256i i = _mm256_castps_si256(x);
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(
      _mm256_and_si256(_mm256_srli_epi32(i, 23), _mm256_set1_epi32(0xff)),
      _mm256_set1_epi32(126)));
  const __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(poly::kSqrtHalf), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, one));
  return poly::log_reduced(_mm256_add_ps(_mm256_sub_ps(m, one), _mm256_and_ps(small, m)), e);
}

// e^x on 8 lanes (e^-87 below -87; x <= 88).
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(poly::kExpMin));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(poly::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(poly::exp_reduced(x, n), _mm256_castsi256_ps(bits));
}

}  // namespace simd
#endif

}  // namespace analog
