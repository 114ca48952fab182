// Branch-free float math for loops over lanes that GCC vectorises (csrc/device_chip.cpp).
//
// Under the default -ftrapping-math GCC neither if-converts a ternary whose arms compute
// something nor a std::min/max it has jump-threaded into a branch, and such a loop stays scalar.
// These helpers select through all-ones bit masks instead, so every loop that uses them
// vectorises. vlog / vexp: the cephes polynomials of rng.h's fast_log and of pcm_chip.cpp's
// exp, written with those selects.
#pragma once

#include <cstdint>

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

// Natural log of a positive normal float (float accuracy).
inline float vlog(float x) {
  const uint32_t i = bits_of(x);
  const float m = float_of((i & 0x007fffffu) | 0x3f000000u);  // mantissa in [0.5, 1)
  // m < sqrt(1/2): use 2m and e - 1
  const uint32_t small = 0u - static_cast<uint32_t>(m < 0.707106781186547524f);
  const float e = static_cast<float>(static_cast<int32_t>((i >> 23) & 0xffu) - 126) -
                  float_of(small & 0x3f800000u);
  const float t = (m - 1.0f) + float_of(small & bits_of(m));
  const float z = t * t;
  float y = 7.0376836292e-2f;
  y = y * t - 1.1514610310e-1f;
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

// e^x (float accuracy for -87 < x < 88; below, a value under 2^-126, not 0).
inline float vexp(float x) {
  // round to nearest by the 1.5 * 2^23 trick (nearbyint does not vectorise)
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t ni = static_cast<int32_t>(n);
  ni = ni < -126 ? -126 : (ni > 127 ? 127 : ni);  // (integer selects do vectorise)
  return p * float_of(static_cast<uint32_t>(ni + 127) << 23);
}

}  // namespace analog
