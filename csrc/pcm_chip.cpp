// CPU kernel of analog::pcm_chip (schema and reference in runtime/chip_ops.py): the weights of
// a PCM chip, re-derived from (target weights, program seed) in one fused pass per weight.
//
// Per tile: s = g_max / max|W_tile|. Per weight: targets G+ = clamp(W s, 0, g_max) and
// G- = clamp(-W s, 0, g_max); programming noise, drift exponent nu, drift to t and 1/f read
// noise (runtime/config/noise.py PCMLikeNoiseModel); the result is (G+ - G-) / s.
// Randoms (rng.h's block streams): the block of kRngBlock = 256 consecutive elements (flat
// index) b seeds three 8-lane xoshiro128+ generators from Philox counters (b * 8 + lane): the
// programming normals (stream 0) and the drift-exponent normals (stream 2) under the program
// seed, the read normals (stream 1) under the read seed. The block's elements go 8 at a time
// (element k of the block in lane k % 8); each group of 8 takes, per stream, one Box-Muller pair
// per lane (two words): G+'s normal and G-'s. A value depends on the seeds, its block and its
// place in it only: the chip is the same at every call, whatever the threads or the tiles.
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

constexpr int kRngBlock = 256;  // elements per random block (see the header)

// The model's constants folded for the kernel (conductances in uS, not relative to g_max).
struct Params {
  float g_max;
  float s0, s1, s2;  // programming noise sigma(g) = s0 + s1 g + s2 g^2 (prog_coeff, scaled)
  float mu0, sd0;    // drift exponent mean / sd at log g: clamp(-0.0155 log(g / g_max) +
                     // 0.0244), clamp(-0.0125 log(g / g_max) - 0.0059): these intercepts
  float min_g;       // 1e-7 g_max: the floor of g in those logs
  float read_scale;  // read_noise_scale * sqrt(log((t + t_0 + t_read) / (2 t_read)))
  float q0;          // the read noise's log(0.0088) + 0.65 log(g_max) (see min_gp)
  float min_gp;      // 1e-4 g_max (see below)
  float drift_rate;  // -drift_scale * log((t + t_0) / t_0), 0 without drift
  bool drift, read;
};

// The drift exponent's mean and sd at lg = log(max(g, 1e-7 g_max)).
inline float drift_mu(float lg, const Params& p) {
  return vclamp(-0.0155f * lg + p.mu0, 0.049f, 0.1f);
}
inline float drift_sd(float lg, const Params& p) {
  return vclamp(-0.0125f * lg + p.sd0, 0.008f, 0.045f);
}

// The read noise's q = min(0.0088 / max(rp^0.65, 1e-3), 0.2) at rp = g_p / g_max is computed as
// min(e^(q0 - 0.65 log g_p), 0.2): no division. g_p is floored at 1e-4 g_max, where (as for all
// rp <= 0.0082) q is 0.2 either way, and which keeps the exponent finite for g_p = 0.

// One device: target conductance g (uS), its drift exponent's mean and sd, its normals ->
// conductance read at t (the portable form of device8).
inline float device(float g, float mu, float sd, float xi_p, float xi_nu, float xi_r,
                    const Params& p) {
  const float sigma = (p.s2 * g + p.s1) * g + p.s0;
  const float g_p = std::max(g + sigma * xi_p, 0.0f);
  float g_d = g_p;
  if (p.drift) {
    const float nu = std::fabs(mu + sd * xi_nu);
    g_d = g_p * vexp(nu * p.drift_rate);
  }
  if (p.read) {
    const float q = std::min(vexp(-0.65f * vlog(std::max(g_p, p.min_gp)) + p.q0), 0.2f);
    g_d = std::max(g_d * (q * p.read_scale) * xi_r + g_d, 0.0f);
  }
  return g_d;
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 clamp8(__m256 x, float lo, float hi) {
  return _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}

// device() on 8 lanes (g_d >= 0 throughout, so |g_d| is g_d).
inline __m256 device8(__m256 g, __m256 mu, __m256 sd, __m256 xi_p, __m256 xi_nu, __m256 xi_r,
                      const Params& p) {
  const __m256 zero = _mm256_setzero_ps(), abs_mask = _mm256_castsi256_ps(
      _mm256_set1_epi32(0x7fffffff));
  const __m256 sigma = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(p.s2), g, _mm256_set1_ps(p.s1)), g, _mm256_set1_ps(p.s0));
  const __m256 g_p = _mm256_max_ps(_mm256_fmadd_ps(sigma, xi_p, g), zero);
  __m256 g_d = g_p;
  if (p.drift) {
    const __m256 nu = _mm256_and_ps(_mm256_fmadd_ps(sd, xi_nu, mu), abs_mask);
    g_d = _mm256_mul_ps(g_p, simd::exp8(_mm256_mul_ps(nu, _mm256_set1_ps(p.drift_rate))));
  }
  if (p.read) {
    const __m256 lgp = simd::log8(_mm256_max_ps(g_p, _mm256_set1_ps(p.min_gp)));
    const __m256 q = _mm256_min_ps(
        simd::exp8(_mm256_fmadd_ps(_mm256_set1_ps(-0.65f), lgp, _mm256_set1_ps(p.q0))),
        _mm256_set1_ps(0.2f));
    const __m256 k = _mm256_mul_ps(q, _mm256_set1_ps(p.read_scale));
    g_d = _mm256_max_ps(_mm256_fmadd_ps(_mm256_mul_ps(g_d, k), xi_r, g_d), zero);
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
  const double k = prog_noise_scale * g_max / 25.0;  // (the polynomial is of g / g_max, in uS)
  p.s0 = static_cast<float>(prog_coeff[0] * k);
  p.s1 = static_cast<float>(prog_coeff[1] * k / g_max);
  p.s2 = static_cast<float>(prog_coeff[2] * k / (g_max * g_max));
  p.mu0 = static_cast<float>(0.0244 + 0.0155 * std::log(g_max));
  p.sd0 = static_cast<float>(-0.0059 + 0.0125 * std::log(g_max));
  p.min_g = static_cast<float>(1e-7 * g_max);
  p.drift = t_inference > 0.0;
  p.drift_rate = p.drift ? static_cast<float>(-drift_scale * std::log((t_inference + t_0) / t_0))
                         : 0.0f;
  p.read = read_noise;
  p.read_scale = static_cast<float>(
      read_noise_scale * std::sqrt(std::log((t_inference + t_0 + t_read) / (2.0 * t_read))));
  p.q0 = static_cast<float>(std::log(0.0088) + 0.65 * std::log(g_max));
  p.min_gp = static_cast<float>(1e-4 * g_max);

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

  // Parallel over the random blocks: the block alone picks the numbers, so blocks may go to any
  // thread.
  const int64_t n_blocks = (total + kRngBlock - 1) / kRngBlock;
  // the scales of row r's tiles (indexed by input split)
  const auto row_scales = [&](int64_t r) {
    return scale.data() + ((r / O) * n_out + row_split[r % O]) * n_in;
  };
  // the drift exponent's mean and sd for a target 0 (log(1e-7): constants)
  const float lg_zero = vlog(p.min_g), mu_zero = drift_mu(lg_zero, p);
  const float sd_zero = drift_sd(lg_zero, p);
  at::parallel_for(0, n_blocks, 16, [&](int64_t b, int64_t e) {
    float gw[kRngBlock], gs[kRngBlock], tail[kRngBlock];
    float xp[2][kRngBlock], xn[2][kRngBlock] = {}, xr[2][kRngBlock] = {};
    // the position (row, column) of the next element, walked forward block by block
    int64_t r = b * kRngBlock / I, col = b * kRngBlock % I;
    const float* srow = row_scales(r);
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t e0 = blk * kRngBlock;
      const int64_t n = std::min<int64_t>(kRngBlock, total - e0);
      const int64_t n8 = (n + kLanes - 1) / kLanes * kLanes;
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
      for (int64_t k = n; k < n8; ++k) gw[k] = 0.0f, gs[k] = 1.0f;
      // (float chips are written in place; half-precision ones through tail, rounded)
      float* res = std::is_same_v<S, float> && n == kRngBlock
                       ? reinterpret_cast<float*>(dst + e0) : tail;
      const uint64_t ub = static_cast<uint64_t>(blk);
      // the normals of the streams this call uses, G+'s in [0], G-'s in [1] (the others stay 0)
      block_normal_pairs(BlockGen(ub, 0u, key), n8, xp[0], xp[1]);
      if (p.drift) block_normal_pairs(BlockGen(ub, 2u, key), n8, xn[0], xn[1]);
      if (p.read) block_normal_pairs(BlockGen(ub, 1u, rkey), n8, xr[0], xr[1]);
#if defined(__AVX2__) && defined(__FMA__)
      const __m256 zero = _mm256_setzero_ps();
      for (int64_t k = 0; k < n8; k += kLanes) {
        const __m256 wt = _mm256_loadu_ps(gw + k), st = _mm256_loadu_ps(gs + k);
        const __m256 gt = _mm256_mul_ps(wt, st);
        const __m256 gp = clamp8(gt, 0.0f, p.g_max);
        const __m256 gm = clamp8(_mm256_sub_ps(zero, gt), 0.0f, p.g_max);
        // drift exponents: the nonzero target's (G+ or G-) from its log, the other's constant
        __m256 mu_p = _mm256_set1_ps(mu_zero), sd_p = _mm256_set1_ps(sd_zero);
        __m256 mu_m = mu_p, sd_m = sd_p;
        if (p.drift) {
          const __m256 lg = simd::log8(_mm256_max_ps(_mm256_max_ps(gp, gm),
                                                     _mm256_set1_ps(p.min_g)));
          const __m256 mu = clamp8(_mm256_fmadd_ps(_mm256_set1_ps(-0.0155f), lg,
                                                   _mm256_set1_ps(p.mu0)), 0.049f, 0.1f);
          const __m256 sd = clamp8(_mm256_fmadd_ps(_mm256_set1_ps(-0.0125f), lg,
                                                   _mm256_set1_ps(p.sd0)), 0.008f, 0.045f);
          const __m256 pos = _mm256_cmp_ps(gt, zero, _CMP_GT_OQ);
          const __m256 neg = _mm256_cmp_ps(gt, zero, _CMP_LT_OQ);
          mu_p = _mm256_blendv_ps(mu_p, mu, pos);
          sd_p = _mm256_blendv_ps(sd_p, sd, pos);
          mu_m = _mm256_blendv_ps(mu_m, mu, neg);
          sd_m = _mm256_blendv_ps(sd_m, sd, neg);
        }
        const __m256 a = device8(gp, mu_p, sd_p, _mm256_loadu_ps(xp[0] + k),
                                 _mm256_loadu_ps(xn[0] + k), _mm256_loadu_ps(xr[0] + k), p);
        const __m256 c = device8(gm, mu_m, sd_m, _mm256_loadu_ps(xp[1] + k),
                                 _mm256_loadu_ps(xn[1] + k), _mm256_loadu_ps(xr[1] + k), p);
        _mm256_storeu_ps(res + k, _mm256_div_ps(_mm256_sub_ps(a, c), st));
      }
#else
      for (int64_t k = 0; k < n8; ++k) {
        const float gt = gw[k] * gs[k];
        const float gp = std::min(std::max(gt, 0.0f), p.g_max);
        const float gm = std::min(std::max(-gt, 0.0f), p.g_max);
        const float lg = vlog(std::max(std::max(gp, gm), p.min_g));
        const float mu = drift_mu(lg, p), sd = drift_sd(lg, p);
        const float a = device(gp, gt > 0.0f ? mu : mu_zero, gt > 0.0f ? sd : sd_zero, xp[0][k],
                               xn[0][k], xr[0][k], p);
        const float c = device(gm, gt < 0.0f ? mu : mu_zero, gt < 0.0f ? sd : sd_zero, xp[1][k],
                               xn[1][k], xr[1][k], p);
        res[k] = (a - c) / gs[k];
      }
#endif
      if (res == tail) narrow(tail, dst + e0, n);
    }
  });
}

}  // namespace

}  // namespace analog
