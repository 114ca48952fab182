// CPU kernel of analog::pcm_chip (schema and reference in runtime/chip_ops.py): the weights of
// a PCM chip, re-derived from (target weights, program seed) in one fused pass per weight.
//
// Per tile: s = g_max / max|W_tile|. Per weight: targets G+ = clamp(W s, 0, g_max) and
// G- = clamp(-W s, 0, g_max); programming noise, drift exponent nu, drift to t and 1/f read
// noise (runtime/config/noise.py PCMLikeNoiseModel); the result is (G+ - G-) / s.
// Randoms: element e draws its four programming normals (G+ noise, G- noise, G+ nu, G- nu) from
// the Philox counter (e, stream 0) under the program seed, and its two read normals from the
// batch of 16 elements that holds it (counters (e / 16) * 8 + lane, stream 1) under the read
// seed, so the chip is the same at every call and no value depends on the computing thread.
// Float, bfloat16 and float16 weights are read and the chip written in their own dtype (widened
// to float chunk by chunk: no float copy of the weights); other dtypes go through float.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "fast_math.h"
#include "rng.h"
#include "tile_kernels.h"
#include "widen.h"

namespace analog {
namespace {

constexpr int kChunk = 2 * kLanes;  // elements per inner step: two programming batches, one read

struct Params {
  float g_max, c0, c1, c2, prog_scale, read_scale, drift_scale;
  float log_drift;   // log((t + t_0) / t_0), 0 without drift
  float read_sigma;  // sqrt(log((t + t_0 + t_read) / (2 t_read)))
  bool drift, read;
};

// One device: target conductance g (uS) and its normals -> conductance read at t.
inline float device(float g, float xi_p, float xi_nu, float xi_r, const Params& p) {
  const float r = g / p.g_max;
  const float sigma = (p.c0 + p.c1 * r + p.c2 * r * r) * (p.g_max / 25.0f);
  const float g_p = std::max(g + p.prog_scale * sigma * xi_p, 0.0f);
  float g_d = g_p;
  if (p.drift) {
    const float lg = vlog(std::max(r, 1e-7f));
    const float mu = std::min(std::max(-0.0155f * lg + 0.0244f, 0.049f), 0.1f);
    const float sd = std::min(std::max(-0.0125f * lg - 0.0059f, 0.008f), 0.045f);
    const float nu = p.drift_scale * std::fabs(mu + sd * xi_nu);
    g_d = g_p * vexp(-nu * p.log_drift);
  }
  if (p.read) {
    // (g_p / g_max)^0.65, with 0 for g_p = 0 (the max with 1e-3 below takes over)
    const float rp = g_p / p.g_max;
    const float pw = rp > 0.0f ? vexp(0.65f * vlog(std::max(rp, 1e-30f))) : 0.0f;
    const float q = std::min(0.0088f / std::max(pw, 1e-3f), 0.2f);
    g_d = std::max(g_d + std::fabs(g_d) * p.read_scale * q * p.read_sigma * xi_r, 0.0f);
  }
  return g_d;
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 clamp8(__m256 x, float lo, float hi) {
  return _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}

// device() on 8 lanes; lg: log(max(g / g_max, 1e-7)) (the caller computes it once for the
// two devices of a weight: one of them has target 0).
inline __m256 device8(__m256 g, __m256 lg, __m256 xi_p, __m256 xi_nu, __m256 xi_r,
                      const Params& p) {
  const __m256 zero = _mm256_setzero_ps(), abs_mask = _mm256_castsi256_ps(
      _mm256_set1_epi32(0x7fffffff));
  const __m256 r = _mm256_mul_ps(g, _mm256_set1_ps(1.0f / p.g_max));
  const __m256 poly = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(p.c2), r, _mm256_set1_ps(p.c1)), r, _mm256_set1_ps(p.c0));
  const __m256 sigma = _mm256_mul_ps(poly, _mm256_set1_ps(p.prog_scale * p.g_max / 25.0f));
  const __m256 g_p = _mm256_max_ps(_mm256_fmadd_ps(sigma, xi_p, g), zero);
  __m256 g_d = g_p;
  if (p.drift) {
    const __m256 mu = clamp8(_mm256_fmadd_ps(_mm256_set1_ps(-0.0155f), lg,
                                             _mm256_set1_ps(0.0244f)), 0.049f, 0.1f);
    const __m256 sd = clamp8(_mm256_fmadd_ps(_mm256_set1_ps(-0.0125f), lg,
                                             _mm256_set1_ps(-0.0059f)), 0.008f, 0.045f);
    const __m256 nu = _mm256_and_ps(_mm256_fmadd_ps(sd, xi_nu, mu), abs_mask);
    g_d = _mm256_mul_ps(g_p, simd::exp8(_mm256_mul_ps(nu, _mm256_set1_ps(-p.drift_scale *
                                                                  p.log_drift))));
  }
  if (p.read) {
    const __m256 rp = _mm256_max_ps(_mm256_mul_ps(g_p, _mm256_set1_ps(1.0f / p.g_max)),
                                    _mm256_set1_ps(1e-30f));
    const __m256 pw = simd::exp8(_mm256_mul_ps(_mm256_set1_ps(0.65f), simd::log8(rp)));
    const __m256 q = _mm256_min_ps(_mm256_div_ps(_mm256_set1_ps(0.0088f),
                                                 _mm256_max_ps(pw, _mm256_set1_ps(1e-3f))),
                                   _mm256_set1_ps(0.2f));
    const __m256 k = _mm256_mul_ps(q, _mm256_set1_ps(p.read_scale * p.read_sigma));
    g_d = _mm256_max_ps(_mm256_fmadd_ps(_mm256_mul_ps(_mm256_and_ps(g_d, abs_mask), k), xi_r,
                                        g_d), zero);
  }
  return g_d;
}
#endif

// max |x[k]| over n contiguous values.
inline float absmax(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = std::max(acc[l], std::fabs(x[k + l]));
  float m = 0.0f;
  for (; k < n; ++k) m = std::max(m, std::fabs(x[k]));
  for (int l = 0; l < kLanes; ++l) m = std::max(m, acc[l]);
  return m;
}

// The same over half-precision values, widened a stretch at a time.
template <typename S>
inline float absmax(const S* x, int64_t n) {
  constexpr int64_t kStretch = 256;
  float buf[kStretch], m = 0.0f;
  for (int64_t k = 0; k < n; k += kStretch) {
    const int64_t len = std::min(kStretch, n - k);
    widen(x + k, buf, len);
    m = std::max(m, absmax(static_cast<const float*>(buf), len));
  }
  return m;
}

// The first 2 * kLanes values of normal_block alone (words 0 and 1: the programming noise of
// G+ and G-), the same numbers without the second Box-Muller pair (the drift exponents' normals,
// which a read at t = 0 does not use).
inline void normal_pair_block(uint32_t c0, uint32_t c1, RngKey key, float* out) {
#if defined(__AVX2__)
  __m256i w[4];
  simd::philox8(c0, c1, 0u, 0u, key, w);
  __m256 a, b;
  simd::polar8(simd::radius8(w[0]), w[1], a, b);
  _mm256_storeu_ps(out, a);
  _mm256_storeu_ps(out + kLanes, b);
#else
  uint32_t w[4][kLanes];
  philox_lanes(c0, c1, 0u, 0u, key, w);
  for (int l = 0; l < kLanes; ++l)
    polar_pair(std::sqrt(-2.0f * vlog(open_uniform(w[0][l]))), half_open_uniform(w[1][l]),
               out[l], out[kLanes + l]);
#endif
}

// The kernel body for weights stored as S (float, bfloat16 or float16): see pcm_chip_cpu.
template <typename S>
void pcm_chip_impl(const S* src, S* dst, int64_t G, int64_t O, int64_t I,
                   at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, const Params& p,
                   RngKey key, RngKey rkey);

}  // namespace

at::Tensor pcm_chip_cpu(const at::Tensor& weight, at::IntArrayRef in_sizes,
                        at::IntArrayRef out_sizes, const at::Tensor& seed, double t_inference,
                        bool read_noise, const at::Tensor& read_seed, double g_max,
                        at::ArrayRef<double> prog_coeff, double t_read, double t_0,
                        double prog_noise_scale, double read_noise_scale, double drift_scale) {
  TORCH_CHECK(weight.dim() == 3, "analog::pcm_chip: weight must be [G, out_g, in_g]");
  TORCH_CHECK(prog_coeff.size() == 3, "analog::pcm_chip: prog_coeff must have 3 values");
  const int64_t G = weight.size(0), O = weight.size(1), I = weight.size(2);
  int64_t sum_in = 0, sum_out = 0;
  for (auto s : in_sizes) sum_in += s;
  for (auto s : out_sizes) sum_out += s;
  TORCH_CHECK(sum_in == I && sum_out == O, "analog::pcm_chip: tile sizes do not cover weight");
  const auto dtype = weight.scalar_type();
  const bool own = dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf;
  const auto w = own ? weight.contiguous() : weight.to(at::kFloat).contiguous();
  auto out = at::empty({G, O, I}, w.options());
  if (out.numel() == 0) return out.to(dtype);
  Params p{};
  p.g_max = static_cast<float>(g_max);
  p.c0 = static_cast<float>(prog_coeff[0]);
  p.c1 = static_cast<float>(prog_coeff[1]);
  p.c2 = static_cast<float>(prog_coeff[2]);
  p.prog_scale = static_cast<float>(prog_noise_scale);
  p.read_scale = static_cast<float>(read_noise_scale);
  p.drift_scale = static_cast<float>(drift_scale);
  p.drift = t_inference > 0.0;
  p.log_drift = p.drift ? static_cast<float>(std::log((t_inference + t_0) / t_0)) : 0.0f;
  p.read = read_noise;
  p.read_sigma = static_cast<float>(
      std::sqrt(std::log((t_inference + t_0 + t_read) / (2.0 * t_read))));

  const RngKey key = make_key(seed.item<int64_t>());
  const RngKey rkey = make_key(read_noise ? read_seed.item<int64_t>() : 0);
  if (w.scalar_type() == at::kBFloat16)
    pcm_chip_impl(w.data_ptr<c10::BFloat16>(), out.data_ptr<c10::BFloat16>(), G, O, I, in_sizes,
                  out_sizes, p, key, rkey);
  else if (w.scalar_type() == at::kHalf)
    pcm_chip_impl(w.data_ptr<c10::Half>(), out.data_ptr<c10::Half>(), G, O, I, in_sizes,
                  out_sizes, p, key, rkey);
  else
    pcm_chip_impl(w.data_ptr<float>(), out.data_ptr<float>(), G, O, I, in_sizes, out_sizes, p,
                  key, rkey);
  return out.scalar_type() == dtype ? out : out.to(dtype);
}

namespace {

template <typename S>
void pcm_chip_impl(const S* src, S* dst, int64_t G, int64_t O, int64_t I,
                   at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, const Params& p,
                   RngKey key, RngKey rkey) {
  const int64_t n_in = static_cast<int64_t>(in_sizes.size());
  const int64_t n_out = static_cast<int64_t>(out_sizes.size());
  const int64_t rows = G * O, total = rows * I;
  const float g_max = p.g_max;
  std::vector<int32_t> col_split(I), row_split(O);
  std::vector<int64_t> col_end(I), in_off(n_in + 1, 0);
  for (int64_t i = 0, c = 0; i < n_in; ++i) {
    in_off[i + 1] = in_off[i] + in_sizes[i];
    for (int64_t k = 0; k < in_sizes[i]; ++k, ++c) {
      col_split[c] = static_cast<int32_t>(i);
      col_end[c] = in_off[i + 1];
    }
  }
  for (int64_t j = 0, r = 0; j < n_out; ++j)
    for (int64_t k = 0; k < out_sizes[j]; ++k) row_split[r++] = static_cast<int32_t>(j);

  // max|W| per (row, input split), then per tile; the per-tile scale s
  std::vector<float> row_max(static_cast<size_t>(rows * n_in), 0.0f);
  at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      for (int64_t i = 0; i < n_in; ++i)
        row_max[r * n_in + i] = absmax(src + r * I + in_off[i], in_sizes[i]);
    }
  });
  std::vector<float> scale(static_cast<size_t>(G * n_out * n_in), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* s = scale.data() + ((r / O) * n_out + row_split[r % O]) * n_in;
    for (int64_t i = 0; i < n_in; ++i) s[i] = std::max(s[i], row_max[r * n_in + i]);
  }
  for (auto& s : scale)
    s = g_max / std::max(s, 1e-30f);  // finite for an all-zero tile

  // Parallel over chunks of kChunk consecutive elements (flat index): the element index alone
  // picks the counters, so chunks may go to any thread.
  const int64_t n_chunks = (total + kChunk - 1) / kChunk;
  // the scales of row r's tiles (indexed by input split)
  const auto row_scales = [&](int64_t r) {
    return scale.data() + ((r / O) * n_out + row_split[r % O]) * n_in;
  };
  at::parallel_for(0, n_chunks, 256, [&](int64_t b, int64_t e) {
    float xp[2][kBlock] = {}, xr[kBlock] = {}, gw[kChunk], gs[kChunk], tail[kChunk];
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 inv_g_max = _mm256_set1_ps(1.0f / p.g_max);
    const __m256 lg_zero = simd::log8(_mm256_set1_ps(1e-7f));
#endif
    // the position (row, column) of the next element, walked forward chunk by chunk
    int64_t r = b * kChunk / I, col = b * kChunk % I;
    const float* srow = row_scales(r);
    for (int64_t ch = b; ch < e; ++ch) {
      const int64_t e0 = ch * kChunk;
      const int64_t n = std::min<int64_t>(kChunk, total - e0);
      for (int h = 0; h < 2; ++h) {
        const uint64_t c = static_cast<uint64_t>(e0 + h * kLanes);
        if (p.drift)
          normal_block(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u, key,
                       xp[h]);
        else  // (the drift exponents' normals, words 2 and 3, go unused)
          normal_pair_block(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), key, xp[h]);
      }
      if (p.read) {
        const uint64_t c = static_cast<uint64_t>(ch) * kLanes;
        normal_block(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 1u, 0u, rkey, xr);
      }
      // the tile scale of each element, run by run (a run stays in one tile row)
      for (int64_t k = 0; k < n;) {
        const float sv = srow[col_split[col]];
        const int64_t run = std::min<int64_t>(n - k, col_end[col] - col);
        for (int64_t j = 0; j < run; ++j) gs[k + j] = sv;
        k += run;
        col += run;
        if (col == I) {
          col = 0;
          if (++r < rows) srow = row_scales(r);
        }
      }
      widen(src + e0, gw, n);
      for (int64_t k = n; k < kChunk; ++k) gw[k] = 0.0f, gs[k] = 1.0f;
      // (float chips are written in place; half-precision ones through tail, rounded)
      float* res = std::is_same_v<S, float> && n == kChunk ? reinterpret_cast<float*>(dst + e0)
                                                          : tail;
      // element k: batch h = k / 8, lane l = k % 8; normals: word m of lane l is xp[h][m*8+l]
#if defined(__AVX2__) && defined(__FMA__)
      for (int h = 0; h < 2; ++h) {
        const __m256 wt = _mm256_loadu_ps(gw + h * kLanes), st = _mm256_loadu_ps(gs + h * kLanes);
        const __m256 zero = _mm256_setzero_ps(), gt = _mm256_mul_ps(wt, st);
        const __m256 gp = clamp8(gt, 0.0f, p.g_max);
        const __m256 gm = clamp8(_mm256_sub_ps(zero, gt), 0.0f, p.g_max);
        // the drift exponents' log: of the nonzero target (G+ or G-), the other one's is log(1e-7)
        __m256 lg_p = lg_zero, lg_m = lg_zero;
        if (p.drift) {
          const __m256 lg = simd::log8(_mm256_max_ps(
              _mm256_mul_ps(_mm256_max_ps(gp, gm), inv_g_max), _mm256_set1_ps(1e-7f)));
          lg_p = _mm256_blendv_ps(lg_zero, lg, _mm256_cmp_ps(gt, zero, _CMP_GT_OQ));
          lg_m = _mm256_blendv_ps(lg_zero, lg, _mm256_cmp_ps(gt, zero, _CMP_LT_OQ));
        }
        const __m256 a = device8(gp, lg_p, _mm256_loadu_ps(xp[h]),
                                 _mm256_loadu_ps(xp[h] + 2 * kLanes),
                                 _mm256_loadu_ps(xr + h * kLanes), p);
        const __m256 c = device8(gm, lg_m, _mm256_loadu_ps(xp[h] + kLanes),
                                 _mm256_loadu_ps(xp[h] + 3 * kLanes),
                                 _mm256_loadu_ps(xr + kChunk + h * kLanes), p);
        _mm256_storeu_ps(res + h * kLanes, _mm256_div_ps(_mm256_sub_ps(a, c), st));
      }
#else
      for (int k = 0; k < kChunk; ++k) {
        const int h = k / kLanes, l = k % kLanes;
        const float gt = gw[k] * gs[k];
        const float gp = std::min(std::max(gt, 0.0f), p.g_max);
        const float gm = std::min(std::max(-gt, 0.0f), p.g_max);
        const float a = device(gp, xp[h][l], xp[h][2 * kLanes + l], xr[k], p);
        const float c = device(gm, xp[h][kLanes + l], xp[h][3 * kLanes + l], xr[kChunk + k], p);
        res[k] = (a - c) / gs[k];
      }
#endif
      if (res == tail) narrow(tail, dst + e0, n);
    }
  });
}

}  // namespace

}  // namespace analog
