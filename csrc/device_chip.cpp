// CPU kernel of analog::device_chip (schema in runtime/ops.py, encoding in runtime/chip_codec.py,
// reference in runtime/chip_ops.py): the chip of every noise model of the family except
// PCMLikeNoiseModel (csrc/pcm_chip.cpp), with any conductance converter, re-derived from
// (target weights, program seed) in one pass per weight.
//
// Per tile the converter's scale (max|W|, or min/max W for a single device); per weight the
// target conductance of each device of its unit cell; per device programming noise, the drift
// parameter, the read at t (drift / relaxation, read noise) as in the model classes
// (runtime/config/noise_pcm.py, noise_reram.py); then back through the converter.
// Randoms (rng.h's block streams, as pcm_chip.cpp): the block of kRngBlock = 256 consecutive
// elements b seeds, per device d, an 8-lane xoshiro128+ stream (Philox counters (b * 8 + lane),
// stream 16 d + 2) under the program seed, whose Box-Muller pairs give each element of the block
// its programming normal (first of the pair) and its drift-parameter normal (second); and per
// read stream s (stream 16 s + 3, under the read seed) a pair per element: devices 2s and 2s + 1
// take one each, ReRamCMO's single device (s = d) both (read noise and relaxation). A value
// depends on the seeds, its block and its place in it only: the same chip at every call,
// whatever the threads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "device_chip_params.h"
#include "fast_math.h"
#include "rng.h"
#include "tile_kernels.h"

namespace analog {
namespace {

using namespace devchip;  // the kinds, Model and Converter of device_chip_params.h

constexpr int kRngBlock = 256;  // elements per random block (see the header); kChunk divides it
static_assert(kRngBlock % kChunk == 0);

// PCM-like read noise Q of the programmed conductance (PCMLikeNoiseModel, CustomDrift).
inline float pcm_q(float g_p, float g_norm) {
  const float rp = vmax(std::fabs(g_p) / g_norm, 1e-30f);
  return vmin(0.0088f / vmax(vexp(0.65f * vlog(rp)), 1e-3f), 0.2f);
}

// HERMES's piecewise drift exponent (from the relative target g) and read-noise Q (from the
// relative programmed conductance), runtime/config/noise_pcm.py.
template <int NDev>
inline float hermes_nu(float g, float xi) {
  const float gr = vmax(std::fabs(g), kZeroClip), lg = vlog(gr);
  const float mu = vsel(gr < 0.0945f, vclamp(-0.0387f * lg - 0.0182f, 0.0720f, 0.13f),
                        -0.0436f * gr * gr - 0.0126f * gr + 0.0736f);
  const float sd = NDev == 1 ? vsel(gr < 0.3039f, vclamp(-0.0120f * lg - 0.0023f, 0.0124f, 0.04f),
                                    -0.0165f * gr * gr + 0.0116f * gr + 0.0104f)
                             : vsel(gr < 0.3055f, vclamp(-0.0117f * lg - 0.0057f, 0.0091f, 0.04f),
                                    -0.0118f * gr * gr + 0.0093f * gr + 0.0073f);
  return std::fabs(mu + sd * xi);
}

template <int NDev>
inline float hermes_q(float g_p, float g_norm) {
  const float g = std::fabs(g_p) / g_norm, lg = vlog(vmax(g, 1e-30f));
  if constexpr (NDev == 1)
    return vsel(g < 0.1591f, vclamp(-0.0078f * lg + 0.0038f, 0.0179f, 0.04f),
                ((0.0664f * g - 0.1352f) * g + 0.0768f) * g + 0.0088f);
  return vsel(g < 0.16f, vclamp(-0.0117f * lg - 0.0069f, 0.015f, 0.04f),
              ((0.0069f * g - 0.0280f) * g + 0.0211f) * g + 0.0123f);
}

// sig[k] = poly(x[k]) over kChunk values (Horner, one pass per coefficient: vectorises).
inline void poly_chunk(const std::vector<float>& c, const float* x, float* sig) {
  const int nc = static_cast<int>(c.size());
  for (int k = 0; k < kChunk; ++k) sig[k] = c[nc - 1];
  for (int j = nc - 2; j >= 0; --j)
    for (int k = 0; k < kChunk; ++k) sig[k] = sig[k] * x[k] + c[j];
}

// kChunk devices of one kind: target conductances g -> conductances read at t. xp / xd: the
// programming normals (noise, drift parameter); xr / xx: the read normals (read noise,
// relaxation). Written as passes over the chunk, each a loop the compiler vectorises.
template <int Kind>
void read_devices(const Model& m, const float* g, const float* xp, const float* xd,
                  const float* xr, const float* xx, float* out) {
  float x[kChunk], sig[kChunk], gp[kChunk];
  // (CMO's polynomial is in g itself, the others' in g / g_norm)
  const float inv = Kind == kCmo ? 1.0f : 1.0f / m.g_norm;
  for (int k = 0; k < kChunk; ++k) x[k] = g[k] * inv;
  poly_chunk(m.coeff, x, sig);
  for (int k = 0; k < kChunk; ++k) gp[k] = g[k] + sig[k] * m.prog_factor * xp[k];
  if constexpr (Kind == kCmo) {
    if (!m.drift) {
      std::copy(gp, gp + kChunk, out);
      return;
    }
    if (m.read) {
      for (int k = 0; k < kChunk; ++k) {
        const float v = gp[k] + m.shift + xx[k] * m.relax_std;
        const float r = v + m.read_factor * vlog(vmax(v, m.g_min)) * xr[k];
        out[k] = vclamp(r, m.g_min, m.g_max);
      }
    } else {
      for (int k = 0; k < kChunk; ++k) out[k] = vclamp(gp[k] + m.shift, m.g_min, m.g_max);
    }
  } else if constexpr (Kind == kWan2022) {
    if (!m.drift) {
      for (int k = 0; k < kChunk; ++k) out[k] = vmax(gp[k], 0.0f);
    } else if (!m.read) {
      for (int k = 0; k < kChunk; ++k) out[k] = vmax(g[k], 0.0f);
    } else {  // a fresh draw around the target
      poly_chunk(m.coeff_read, x, sig);
      for (int k = 0; k < kChunk; ++k)
        out[k] = vmax(g[k] + sig[k] * m.prog_factor * xr[k], 0.0f);
    }
  } else {  // the PCM family: power-law drift, read noise relative to |g_d|
    float nu[kChunk], gd[kChunk];
    for (int k = 0; k < kChunk; ++k) gp[k] = vmax(gp[k], 0.0f);
    if constexpr (Kind == kStateIndependent) {
      for (int k = 0; k < kChunk; ++k) nu[k] = std::fabs(m.nu_mean + m.nu_std * xd[k]);
    } else if constexpr (Kind == kCustomDrift) {
      // linear interpolation at g clipped to the table: each segment overwrites the values of
      // the conductances at or above its start (ascending, so the last one that does wins)
      float mean[kChunk], sd[kChunk], gc[kChunk];
      const auto& xs = m.tab_g;
      for (int k = 0; k < kChunk; ++k) {
        gc[k] = vclamp(g[k], xs.front(), xs.back());
        mean[k] = m.tab_mean[0];
        sd[k] = m.tab_std[0];
      }
      for (size_t j = 0; j + 1 < xs.size(); ++j) {
        const float dx = xs[j + 1] - xs[j];
        if (!(dx > 0.0f)) continue;
        const float am = (m.tab_mean[j + 1] - m.tab_mean[j]) / dx;
        const float as = (m.tab_std[j + 1] - m.tab_std[j]) / dx;
        for (int k = 0; k < kChunk; ++k) {
          const bool in = gc[k] >= xs[j];
          mean[k] = vsel(in, m.tab_mean[j] + (gc[k] - xs[j]) * am, mean[k]);
          sd[k] = vsel(in, m.tab_std[j] + (gc[k] - xs[j]) * as, sd[k]);
        }
      }
      for (int k = 0; k < kChunk; ++k) nu[k] = std::fabs(mean[k] + sd[k] * xd[k]);
    } else if (m.num_devices == 1) {
      for (int k = 0; k < kChunk; ++k) nu[k] = hermes_nu<1>(x[k], xd[k]);
    } else {
      for (int k = 0; k < kChunk; ++k) nu[k] = hermes_nu<2>(x[k], xd[k]);
    }
    if (m.drift) {
      const float a = -m.drift_scale * m.log_drift;
      for (int k = 0; k < kChunk; ++k) gd[k] = gp[k] * vexp(a * nu[k]);
    } else {
      std::copy(gp, gp + kChunk, gd);
    }
    if (!m.read) {
      std::copy(gd, gd + kChunk, out);
      return;
    }
    float rel[kChunk];
    if constexpr (Kind == kStateIndependent) {
      for (int k = 0; k < kChunk; ++k) rel[k] = m.read_factor;
    } else if constexpr (Kind == kCustomDrift) {
      for (int k = 0; k < kChunk; ++k) rel[k] = m.read_factor * pcm_q(gp[k], m.g_norm);
    } else if (m.num_devices == 1) {
      for (int k = 0; k < kChunk; ++k) rel[k] = m.read_factor * hermes_q<1>(gp[k], m.g_norm);
    } else {
      for (int k = 0; k < kChunk; ++k) rel[k] = m.read_factor * hermes_q<2>(gp[k], m.g_norm);
    }
    for (int k = 0; k < kChunk; ++k)
      out[k] = vmax(gd[k] + std::fabs(gd[k]) * rel[k] * xr[k], 0.0f);
  }
}

using ReadFn = void (*)(const Model&, const float*, const float*, const float*, const float*,
                        const float*, float*);

ReadFn read_fn(int kind) {
  switch (kind) {
    case kStateIndependent: return &read_devices<kStateIndependent>;
    case kCustomDrift: return &read_devices<kCustomDrift>;
    case kHermes: return &read_devices<kHermes>;
    case kWan2022: return &read_devices<kWan2022>;
    default: return &read_devices<kCmo>;
  }
}

// Target conductances gt of device d for the weights u = W * s (uS) of a pair converter.
void pair_targets(const Converter& c, int d, const float* u, float* gt) {
  const float sign = d % 2 == 0 ? 1.0f : -1.0f;
  if (c.kind == kSinglePair) {
    for (int k = 0; k < kChunk; ++k)
      gt[k] = vmin(vmax(sign * u[k], 0.0f), c.g_max) + c.g_min;
  } else if (c.kind == kNPair) {
    const float lower = c.lower[d / 2], inv_f = 1.0f / c.f[d / 2];
    for (int k = 0; k < kChunk; ++k)
      gt[k] = vclamp((vmax(sign * u[k], 0.0f) - lower) * inv_f + c.g_min, c.g_min, c.g_max);
  } else {  // CustomPair: the device's row interpolated at u on levels evenly over +-span_total
    const float span = static_cast<float>(c.span_total), top = static_cast<float>(c.levels - 1);
    const float* row = c.rows.data() + static_cast<size_t>(d) * c.levels;
    for (int k = 0; k < kChunk; ++k) {
      const float pos = vclamp((u[k] + span) / (2.0f * span) * top, 0.0f, top);
      const int j = std::min(static_cast<int>(pos), c.levels - 2);
      gt[k] = row[j] + (pos - j) * (row[j + 1] - row[j]);
    }
  }
}

}  // namespace

at::Tensor device_chip_cpu(const at::Tensor& weight, at::IntArrayRef in_sizes,
                           at::IntArrayRef out_sizes, const at::Tensor& seed, double t_inference,
                           bool read_noise, const at::Tensor& read_seed, int64_t model_kind,
                           at::ArrayRef<double> model_params, int64_t converter_kind,
                           at::ArrayRef<double> converter_params) {
  TORCH_CHECK(weight.dim() == 3, "analog::device_chip: weight must be [G, out_g, in_g]");
  const Model m = parse_model(model_kind, model_params, t_inference, read_noise);
  const Converter c = parse_converter(converter_kind, converter_params);
  const int n_dev = c.devices();
  const int64_t G = weight.size(0), O = weight.size(1), I = weight.size(2);
  const int64_t n_in = static_cast<int64_t>(in_sizes.size());
  const int64_t n_out = static_cast<int64_t>(out_sizes.size());
  int64_t sum_in = 0, sum_out = 0;
  for (auto s : in_sizes) sum_in += s;
  for (auto s : out_sizes) sum_out += s;
  TORCH_CHECK(sum_in == I && sum_out == O, "analog::device_chip: tile sizes do not cover weight");
  const auto w = weight.to(at::kFloat).contiguous();
  auto out = at::empty({G, O, I}, w.options());
  const int64_t rows = G * O, total = rows * I;
  if (total == 0) return out.to(weight.scalar_type());
  const float* src = w.data_ptr<float>();
  float* dst = out.data_ptr<float>();

  std::vector<int32_t> col_split(I);
  std::vector<int64_t> row_tile(rows), in_off(n_in + 1, 0);
  for (int64_t i = 0, col = 0; i < n_in; ++i) {
    in_off[i + 1] = in_off[i] + in_sizes[i];
    for (int64_t k = 0; k < in_sizes[i]; ++k) col_split[col++] = static_cast<int32_t>(i);
  }
  for (int64_t g = 0, r = 0; g < G; ++g)
    for (int64_t j = 0; j < n_out; ++j)
      for (int64_t k = 0; k < out_sizes[j]; ++k) row_tile[r++] = (g * n_out + j) * n_in;

  // min and max W per (row, input split), then per tile: the scale s (and min W)
  std::vector<float> row_lo(static_cast<size_t>(rows * n_in)), row_hi(row_lo.size());
  at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t i = 0; i < n_in; ++i) {
        const float* x = src + r * I + in_off[i];
        float lo = x[0], hi = x[0];
        for (int64_t k = 1; k < in_sizes[i]; ++k) lo = std::min(lo, x[k]), hi = std::max(hi, x[k]);
        row_lo[r * n_in + i] = lo;
        row_hi[r * n_in + i] = hi;
      }
  });
  const int64_t n_tiles = G * n_out * n_in;
  std::vector<float> t_lo(n_tiles, INFINITY), t_hi(n_tiles, -INFINITY);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n_in; ++i) {
      const int64_t t = row_tile[r] + i;
      t_lo[t] = std::min(t_lo[t], row_lo[r * n_in + i]);
      t_hi[t] = std::max(t_hi[t], row_hi[r * n_in + i]);
    }
  std::vector<float> scale(n_tiles), w_min(n_tiles);
  for (int64_t t = 0; t < n_tiles; ++t) {
    const float range = c.kind == kSingleDevice ? t_hi[t] - t_lo[t]
                                                : std::max(-t_lo[t], t_hi[t]);
    scale[t] = static_cast<float>(c.span_total / std::max(range, kZeroClip));
    w_min[t] = t_lo[t];
  }

  const RngKey key = make_key(seed.item<int64_t>());
  const RngKey rkey = make_key(read_noise ? read_seed.item<int64_t>() : 0);
  const ReadFn read_chunk = read_fn(m.kind);
  const int64_t n_chunks = (total + kChunk - 1) / kChunk;
  constexpr int kChunks = kRngBlock / kChunk;  // chunks per random block
  const int64_t n_blocks = (total + kRngBlock - 1) / kRngBlock;
  // Read normals: the PCM family and Wan use one of them per device, so devices 2p and 2p + 1
  // share read stream p (halves 0 and 1); CMO (one device) takes both halves.
  const bool both_read_halves = m.kind == kCmo;
  const int n_read = both_read_halves ? n_dev : (n_dev + 1) / 2;
  at::parallel_for(0, n_blocks, 4, [&](int64_t b, int64_t e) {
    float gt[kChunk], g[kChunk], sv[kChunk], lo[kChunk], wv[kChunk], u[kChunk], acc[kChunk];
    // the block's normals: programming and drift parameter of device d, read stream s's halves
    std::vector<float> xpd(static_cast<size_t>(n_dev) * 2 * kRngBlock);
    std::vector<float> xr(static_cast<size_t>(n_read) * 2 * kRngBlock, 0.0f);
    const auto xp = [&](int d) { return xpd.data() + static_cast<size_t>(2 * d) * kRngBlock; };
    const auto xd = [&](int d) { return xp(d) + kRngBlock; };
    const auto xrh = [&](int s, int h) {
      return xr.data() + static_cast<size_t>(2 * s + h) * kRngBlock;
    };
    for (int64_t blk = b; blk < e; ++blk) {
      const uint64_t ub = static_cast<uint64_t>(blk);
      for (int d = 0; d < n_dev; ++d)
        block_normal_pairs(BlockGen(ub, static_cast<uint32_t>(d) << 4 | 2u, key), kRngBlock,
                           xp(d), xd(d));
      if (m.read)
        for (int s = 0; s < n_read; ++s)
          block_normal_pairs(BlockGen(ub, static_cast<uint32_t>(s) << 4 | 3u, rkey), kRngBlock,
                             xrh(s, 0), xrh(s, 1));
      const int64_t ch_end = std::min<int64_t>((blk + 1) * kChunks, n_chunks);
      for (int64_t ch = blk * kChunks; ch < ch_end; ++ch) {
        const int64_t e0 = ch * kChunk, k0 = e0 - blk * kRngBlock;
        const int64_t n = std::min<int64_t>(kChunk, total - e0);
        // the tile of each element, walking the row (a short tail repeats its last element)
        int64_t r = e0 / I, col = e0 % I;
        for (int k = 0; k < kChunk; ++k) {
          const int64_t t = row_tile[r] + col_split[col];
          sv[k] = scale[t];
          lo[k] = w_min[t];
          wv[k] = src[r * I + col];
          if (k + 1 < n && ++col == I) col = 0, ++r;
        }
        for (int k = 0; k < kChunk; ++k)
          u[k] = c.kind == kSingleDevice ? wv[k] - lo[k] : wv[k] * sv[k];
        std::fill(acc, acc + kChunk, 0.0f);
        for (int d = 0; d < n_dev; ++d) {
          if (c.kind == kSingleDevice) {
            for (int k = 0; k < kChunk; ++k) gt[k] = u[k] * sv[k] + c.g_min;
          } else {
            pair_targets(c, d, u, gt);
          }
          const int s = both_read_halves ? d : d / 2;
          read_chunk(m, gt, xp(d) + k0, xd(d) + k0,
                     xrh(s, both_read_halves ? 0 : d % 2) + k0, xrh(s, 1) + k0, g);
          if (c.kind == kSingleDevice) {
            for (int k = 0; k < kChunk; ++k) acc[k] = lo[k] + (g[k] - c.g_min) / sv[k];
          } else {
            const float f = (d % 2 == 0 ? 1.0f : -1.0f) * c.f[d / 2];
            for (int k = 0; k < kChunk; ++k) acc[k] += f * g[k];
          }
        }
        if (c.kind != kSingleDevice)
          for (int k = 0; k < kChunk; ++k) acc[k] /= sv[k];
        std::memcpy(dst + e0, acc, static_cast<size_t>(n) * sizeof(float));
      }
    }
  });
  return out.scalar_type() == weight.scalar_type() ? out : out.to(weight.scalar_type());
}

}  // namespace analog
