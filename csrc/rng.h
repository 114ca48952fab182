// Counter-based random numbers for the analog kernels: Philox4x32-10 (Salmon et al., SC'11)
// keyed by the op's seed, with the counter built from (element, vector, tile, round, stream), so a
// value depends only on what it is drawn for, never on the thread that draws it. Normals come from
// Box-Muller with branch-free polynomial log (fast_math.h's) and sin/cos (float accuracy), written
// as loops over lanes that the compiler vectorises.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "fast_math.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace analog {

constexpr int kLanes = 8;                // counters per Philox batch
constexpr int kBlock = 4 * kLanes;       // values per batch: value (m * kLanes + l) is word m of
                                         // lane l, the counter (c0 + l, c1, c2, c3)

struct RngKey {
  uint32_t k0, k1;
};

inline RngKey make_key(int64_t seed) {
  const uint64_t s = static_cast<uint64_t>(seed);
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
}

// Philox4x32-10 of the counters (c0 + l, c1, c2, c3), l < kLanes; out[m][l] is word m of lane l.
inline void philox_lanes(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, RngKey key,
                         uint32_t out[4][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    uint32_t x0 = c0 + static_cast<uint32_t>(l), x1 = c1, x2 = c2, x3 = c3;
    uint32_t ka = key.k0, kb = key.k1;
    for (int r = 0; r < 10; ++r) {
      const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * x0;
      const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * x2;
      x0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ ka;
      x2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ kb;
      x1 = static_cast<uint32_t>(p1);
      x3 = static_cast<uint32_t>(p0);
      ka += 0x9E3779B9u;
      kb += 0xBB67AE85u;
    }
    out[0][l] = x0;
    out[1][l] = x1;
    out[2][l] = x2;
    out[3][l] = x3;
  }
}

// Uniform in (0, 1) from the top 24 bits (never 0, so log is finite).
inline float open_uniform(uint32_t v) {
  return (static_cast<float>(v >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1).
inline float half_open_uniform(uint32_t v) {
  return static_cast<float>(v >> 8) * (1.0f / 16777216.0f);
}

// (r cos(theta), r sin(theta)) with theta uniform on a full turn, drawn from u in [0, 1): the
// quadrant from 2 bits, the angle within it from a polynomial on [-pi/4, pi/4).
inline void polar_pair(float r, float u, float& a, float& b) {
  const float t4 = u * 4.0f;
  const int q = static_cast<int>(t4);
  const float ang = (t4 - static_cast<float>(q) - 0.5f) * 1.57079632679489662f;
  const float z = ang * ang;
  const float s = ang + ang * z * (-1.6666654611e-1f + z * (8.3321608736e-3f +
                                                             z * -1.9515295891e-4f));
  const float c = 1.0f - 0.5f * z + z * z * (4.166664568298827e-2f +
                                             z * (-1.388731625493765e-3f +
                                                  z * 2.443315711809948e-5f));
  const bool swap = (q & 1) != 0;
  const float sign = (q & 2) ? -1.0f : 1.0f;
  a = r * (swap ? -s : c) * sign;
  b = r * (swap ? c : s) * sign;
}

#if defined(__AVX2__)
namespace simd {

// Philox4x32-10 of the counters (c0 + l, c1, c2, c3), l < 8, word m of lane l in lane l of
// w[m]. The even and odd lanes run as two 4-lane halves, each value in the low 32 bits of a 64-bit
// slot: _mm256_mul_epu32 then yields the whole 64-bit product (hi: a shift, lo: the low half as
// is; the high halves of the slots are never read), which saves the blends of a 32-bit layout.
inline void philox8(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, RngKey key,
                    __m256i w[4]) {
  const __m256i base = _mm256_set1_epi64x(c0);
  __m256i e0 = _mm256_add_epi64(base, _mm256_setr_epi64x(0, 2, 4, 6));
  __m256i o0 = _mm256_add_epi64(base, _mm256_setr_epi64x(1, 3, 5, 7));
  __m256i e1 = _mm256_set1_epi32(static_cast<int>(c1)), o1 = e1;
  __m256i e2 = _mm256_set1_epi32(static_cast<int>(c2)), o2 = e2;
  __m256i e3 = _mm256_set1_epi32(static_cast<int>(c3)), o3 = e3;
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  uint32_t ka = key.k0, kb = key.k1;
  for (int r = 0; r < 10; ++r) {
    const __m256i va = _mm256_set1_epi32(static_cast<int>(ka));
    const __m256i vb = _mm256_set1_epi32(static_cast<int>(kb));
    const __m256i pe0 = _mm256_mul_epu32(e0, m0), pe1 = _mm256_mul_epu32(e2, m1);
    const __m256i po0 = _mm256_mul_epu32(o0, m0), po1 = _mm256_mul_epu32(o2, m1);
    e0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pe1, 32), e1), va);
    e2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pe0, 32), e3), vb);
    o0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(po1, 32), o1), va);
    o2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(po0, 32), o3), vb);
    e1 = pe1;
    e3 = pe0;
    o1 = po1;
    o3 = po0;
    ka += 0x9E3779B9u;
    kb += 0xBB67AE85u;
  }
  // the halves back into lanes: even slots' low words, odd slots' low words moved up
  w[0] = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
  w[1] = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
  w[2] = _mm256_blend_epi32(e2, _mm256_slli_epi64(o2, 32), 0xAA);
  w[3] = _mm256_blend_epi32(e3, _mm256_slli_epi64(o3, 32), 0xAA);
}

inline __m256 top24(__m256i v) { return _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 8)); }

inline void polar8(__m256 r, __m256i bits, __m256& a, __m256& b) {
  const __m256 t4 = _mm256_mul_ps(_mm256_mul_ps(top24(bits), _mm256_set1_ps(1.0f / 16777216.0f)),
                                  _mm256_set1_ps(4.0f));
  const __m256i q = _mm256_cvttps_epi32(t4);
  const __m256 ang = _mm256_mul_ps(
      _mm256_sub_ps(_mm256_sub_ps(t4, _mm256_cvtepi32_ps(q)), _mm256_set1_ps(0.5f)),
      _mm256_set1_ps(1.57079632679489662f));
  const __m256 z = _mm256_mul_ps(ang, ang);
  __m256 ps = _mm256_add_ps(_mm256_set1_ps(8.3321608736e-3f),
                            _mm256_mul_ps(z, _mm256_set1_ps(-1.9515295891e-4f)));
  ps = _mm256_add_ps(_mm256_set1_ps(-1.6666654611e-1f), _mm256_mul_ps(z, ps));
  const __m256 s = _mm256_add_ps(ang, _mm256_mul_ps(_mm256_mul_ps(ang, z), ps));
  __m256 pc = _mm256_add_ps(_mm256_set1_ps(-1.388731625493765e-3f),
                            _mm256_mul_ps(z, _mm256_set1_ps(2.443315711809948e-5f)));
  pc = _mm256_add_ps(_mm256_set1_ps(4.166664568298827e-2f), _mm256_mul_ps(z, pc));
  const __m256 c = _mm256_add_ps(
      _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(_mm256_set1_ps(0.5f), z)),
      _mm256_mul_ps(_mm256_mul_ps(z, z), pc));
  const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
      _mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
  const __m256 sign = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_and_si256(q, _mm256_set1_epi32(2)), 30));
  const __m256 neg_s = _mm256_xor_ps(s, _mm256_set1_ps(-0.0f));
  a = _mm256_xor_ps(_mm256_mul_ps(r, _mm256_blendv_ps(c, neg_s, swap)), sign);
  b = _mm256_xor_ps(_mm256_mul_ps(r, _mm256_blendv_ps(s, c, swap)), sign);
}

inline __m256 radius8(__m256i bits) {
  const __m256 u = _mm256_mul_ps(_mm256_add_ps(top24(bits), _mm256_set1_ps(0.5f)),
                                 _mm256_set1_ps(1.0f / 16777216.0f));
  return _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log8(u)));
}

}  // namespace simd
#endif

// One batch of kBlock standard normals (layout: see kBlock).
inline void normal_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, RngKey key,
                         float* out) {
#if defined(__AVX2__)
  __m256i w[4];
  simd::philox8(c0, c1, c2, c3, key, w);
  __m256 a, b, c, d;
  simd::polar8(simd::radius8(w[0]), w[1], a, b);
  simd::polar8(simd::radius8(w[2]), w[3], c, d);
  _mm256_storeu_ps(out, a);
  _mm256_storeu_ps(out + kLanes, b);
  _mm256_storeu_ps(out + 2 * kLanes, c);
  _mm256_storeu_ps(out + 3 * kLanes, d);
#else
  uint32_t w[4][kLanes];
  philox_lanes(c0, c1, c2, c3, key, w);
  for (int l = 0; l < kLanes; ++l) {
    polar_pair(std::sqrt(-2.0f * vlog(open_uniform(w[0][l]))), half_open_uniform(w[1][l]),
               out[l], out[kLanes + l]);
    polar_pair(std::sqrt(-2.0f * vlog(open_uniform(w[2][l]))), half_open_uniform(w[3][l]),
               out[2 * kLanes + l], out[3 * kLanes + l]);
  }
#endif
}

// One batch of kBlock uniforms in [0, 1).
inline void uniform_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, RngKey key,
                          float* out) {
  uint32_t w[4][kLanes];
  philox_lanes(c0, c1, c2, c3, key, w);
  for (int m = 0; m < 4; ++m)
    for (int l = 0; l < kLanes; ++l) out[m * kLanes + l] = half_open_uniform(w[m][l]);
}

// count values of a stream: value k comes from batch k / kBlock (counters from
// (k / kBlock) * kLanes), position k % kBlock.
template <void (*Block)(uint32_t, uint32_t, uint32_t, uint32_t, RngKey, float*)>
inline void fill_stream(float* out, int64_t count, uint32_t c1, uint32_t c2, uint32_t c3,
                        RngKey key) {
  float buf[kBlock];
  for (int64_t base = 0; base < count; base += kBlock) {
    const uint32_t c0 = static_cast<uint32_t>(base / kBlock * kLanes);
    if (count - base >= kBlock) {
      Block(c0, c1, c2, c3, key, out + base);
    } else {
      Block(c0, c1, c2, c3, key, buf);
      std::memcpy(out + base, buf, static_cast<size_t>(count - base) * sizeof(float));
    }
  }
}

// count standard normals, keyed by (c1, c2, c3) and their position.
inline void fill_normal(float* out, int64_t count, uint32_t c1, uint32_t c2, uint32_t c3,
                        RngKey key) {
  fill_stream<normal_block>(out, count, c1, c2, c3, key);
}

// count uniforms in [0, 1), keyed by (c1, c2, c3) and their position.
inline void fill_uniform(float* out, int64_t count, uint32_t c1, uint32_t c2, uint32_t c3,
                         RngKey key) {
  fill_stream<uniform_block>(out, count, c1, c2, c3, key);
}

// ---- Block streams: Philox seeds, xoshiro128+ draws -----------------------------------------
// For kernels that need many randoms per element (the chip kernels): a fixed block of
// consecutive elements (its index, never the thread, decides the numbers) seeds 8 lanes of
// xoshiro128+ (Blackman & Vigna, "Scrambled linear pseudorandom number generators", 2021) from
// one Philox batch, and draws the block's words from them in order, one 8-lane step per word:
// 9 vector ops per 8 words instead of Philox's ~16 per 4 x 8 words. xoshiro128+ is the variant
// its authors give for floats: only its lowest bits are weak (linear), and the words are used
// for their top 24 bits only (box_muller). Its step has 3 vector shifts to xoshiro128++'s 5,
// which matters where shifts have one port (AMD Zen 1: two 8-lane steps took 7.5 ns here, 9.6 ns
// for ++).
// Lane l's state is the 4 Philox words of counter (block * 8 + l, its upper bits, stream,
// kXoshiroTag), under the op's key.

constexpr uint32_t kXoshiroTag = 0x786f7368u;  // "xosh": keeps seeding counters off other uses

inline uint32_t rotl32(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

// Box-Muller from two words (the block streams' form: the same distribution as polar_pair's, with
// fewer operations: the quadrant is the top 2 bits of wa, the angle within it the next 22 bits,
// fused multiply-adds throughout). Written once over the lane type V (float or __m256) with
// explicit fmas, so the portable and the 8-lane forms round alike.
namespace boxm {

inline float fmadd(float a, float b, float c) { return std::fma(a, b, c); }
#if defined(__AVX2__) && defined(__FMA__)
inline __m256 fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
#endif

// sin(x) and cos(x) for |x| <= pi/4 (cephes sinf / cosf polynomials), z = x^2; k(c): the
// constant c as a V.
template <typename V, typename K>
inline V sin_quarter(V x, V z, K k) {
  V ps = fmadd(z, k(-1.9515295891e-4f), k(8.3321608736e-3f));
  ps = fmadd(ps, z, k(-1.6666654611e-1f));
  return fmadd(x * z, ps, x);
}
template <typename V, typename K>
inline V cos_quarter(V z, K k) {
  V pc = fmadd(z, k(2.443315711809948e-5f), k(-1.388731625493765e-3f));
  pc = fmadd(pc, z, k(4.166664568298827e-2f));
  return fmadd(z * z, pc, fmadd(z, k(-0.5f), k(1.0f)));
}

constexpr float kAngleStep = 1.57079632679489662f / 4194304.0f;  // (pi / 2) / 2^22
constexpr float kQuarterPi = 0.785398163397448310f;

}  // namespace boxm

// Box-Muller pair from the words wr (radius: u = (top 24 bits + 1/2) / 2^24, in (0, 1]) and wa.
inline void box_muller(uint32_t wr, uint32_t wa, float& a, float& b) {
  const auto k = [](float v) { return v; };
  const float u = std::fma(static_cast<float>(wr >> 8), 1.0f / 16777216.0f, 1.0f / 33554432.0f);
  const float r = std::sqrt(-2.0f * vlog(u));
  const float x = std::fma(static_cast<float>(static_cast<int32_t>(wa & 0x3fffff00u)),
                           boxm::kAngleStep / 256.0f, -boxm::kQuarterPi);
  const float z = x * x, s = boxm::sin_quarter(x, z, k), c = boxm::cos_quarter(z, k);
  const bool swap = ((wa >> 30) & 1u) != 0;
  const uint32_t sign = wa & 0x80000000u;
  a = float_of(bits_of(r * (swap ? -s : c)) ^ sign);
  b = float_of(bits_of(r * (swap ? c : s)) ^ sign);
}

// The portable form: out[l] is lane l's next word.
struct Xoshiro8 {
  uint32_t s[4][kLanes];

  Xoshiro8(uint64_t block, uint32_t stream, RngKey key) {
    const uint64_t c = block * kLanes;
    philox_lanes(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), stream, kXoshiroTag,
                 key, s);
    for (int l = 0; l < kLanes; ++l)  // (the all-zero state is xoshiro's one fixed point)
      s[0][l] |= static_cast<uint32_t>((s[0][l] | s[1][l] | s[2][l] | s[3][l]) == 0u);
  }

  void next(uint32_t out[kLanes]) {
    for (int l = 0; l < kLanes; ++l) {
      out[l] = s[0][l] + s[3][l];
      const uint32_t t = s[1][l] << 9;
      s[2][l] ^= s[0][l];
      s[3][l] ^= s[1][l];
      s[1][l] ^= s[2][l];
      s[0][l] ^= s[3][l];
      s[2][l] ^= t;
      s[3][l] = rotl32(s[3][l], 11);
    }
  }

  // Two words -> one Box-Muller pair per lane (box_muller): a[l] and b[l].
  void normal_pair(float a[kLanes], float b[kLanes]) {
    uint32_t r[kLanes], u[kLanes];
    next(r);
    next(u);
    for (int l = 0; l < kLanes; ++l) box_muller(r[l], u[l], a[l], b[l]);
  }
};

#if defined(__AVX2__)
namespace simd {

template <int K>
inline __m256i rotl8(__m256i x) {
  return _mm256_or_si256(_mm256_slli_epi32(x, K), _mm256_srli_epi32(x, 32 - K));
}

#if defined(__FMA__)
// box_muller on 8 lanes.
inline void box_muller8(__m256i wr, __m256i wa, __m256& a, __m256& b) {
  const auto k = [](float v) { return _mm256_set1_ps(v); };
  const __m256 u = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(wr, 8)),
                                   k(1.0f / 16777216.0f), k(1.0f / 33554432.0f));
  const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(k(-2.0f), log8(u)));
  const __m256 x = _mm256_fmadd_ps(
      _mm256_cvtepi32_ps(_mm256_and_si256(wa, _mm256_set1_epi32(0x3fffff00))),
      k(boxm::kAngleStep / 256.0f), k(-boxm::kQuarterPi));
  const __m256 z = _mm256_mul_ps(x, x);
  const __m256 s = boxm::sin_quarter(x, z, k), c = boxm::cos_quarter(z, k);
  // blendv reads the top bit: bit 30 of wa (the quadrant's low bit) moved up (wa + wa: an add,
  // where a shift would wait for the one shift port of some cores)
  const __m256 swap = _mm256_castsi256_ps(_mm256_add_epi32(wa, wa));
  const __m256 sign = _mm256_castsi256_ps(_mm256_and_si256(wa, _mm256_set1_epi32(INT32_MIN)));
  a = _mm256_xor_ps(_mm256_mul_ps(r, _mm256_blendv_ps(c, _mm256_xor_ps(s, k(-0.0f)), swap)), sign);
  b = _mm256_xor_ps(_mm256_mul_ps(r, _mm256_blendv_ps(s, c, swap)), sign);
}
#endif

// Xoshiro8 on one register per state word: the same numbers.
struct Xoshiro8 {
  __m256i s0, s1, s2, s3;

  Xoshiro8(uint64_t block, uint32_t stream, RngKey key) {
    const uint64_t c = block * kLanes;
    __m256i w[4];
    philox8(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), stream, kXoshiroTag, key,
            w);
    const __m256i any = _mm256_or_si256(_mm256_or_si256(w[0], w[1]), _mm256_or_si256(w[2], w[3]));
    s0 = _mm256_or_si256(w[0], _mm256_srli_epi32(
                                   _mm256_cmpeq_epi32(any, _mm256_setzero_si256()), 31));
    s1 = w[1];
    s2 = w[2];
    s3 = w[3];
  }

  __m256i next() {
    const __m256i out = _mm256_add_epi32(s0, s3);
    const __m256i t = _mm256_slli_epi32(s1, 9);
    s2 = _mm256_xor_si256(s2, s0);
    s3 = _mm256_xor_si256(s3, s1);
    s1 = _mm256_xor_si256(s1, s2);
    s0 = _mm256_xor_si256(s0, s3);
    s2 = _mm256_xor_si256(s2, t);
    s3 = rotl8<11>(s3);
    return out;
  }

  void normal_pair(__m256& a, __m256& b) {
    const __m256i r = next();
    box_muller8(r, next(), a, b);
  }
};

}  // namespace simd
#endif

#if defined(__AVX2__)
using BlockGen = simd::Xoshiro8;
#else
using BlockGen = Xoshiro8;
#endif

// n8 / 8 Box-Muller pairs of one block stream (n8 a multiple of 8), lane l of pair j into
// a[8 j + l] and b[8 j + l]: a loop of its own, whose iterations share only the generator's state
// (a short chain), so that the out-of-order core overlaps their long log / sqrt / polynomial
// chains.
inline void block_normal_pairs(BlockGen g, int64_t n8, float* a, float* b) {
  for (int64_t k = 0; k < n8; k += kLanes) {
#if defined(__AVX2__)
    __m256 x, y;
    g.normal_pair(x, y);
    _mm256_storeu_ps(a + k, x);
    _mm256_storeu_ps(b + k, y);
#else
    g.normal_pair(a + k, b + k);
#endif
  }
}

}  // namespace analog
