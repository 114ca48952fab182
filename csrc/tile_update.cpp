// Fused CPU kernel of analog::tile_update (runtime/update_ops.py; the semantics are those of the
// reference kernel runtime/update.py). Per tile, for a batch of N vector pairs (x, d):
//
//   1. per vector: BL, A, B (BL and update management), the pulse probabilities
//      p_i = min(1, A|x_i|), q_j = min(1, B|d_j|);
//   2. the pulse trains as bits: ceil(BL / 64) 64-bit words per input and per error, never a
//      tensor of pulses (x trains drawn in parallel over vectors, d trains likewise);
//   3. in parallel over the tile's rows, vectors in order: the coincidence count of (i, j) is
//      popcount(x_i & d_j); that many device pulses in direction -sign(x_i d_j), each with its
//      cycle-to-cycle noise, clipped to the device's bounds.
//
// Random numbers: splitmix64 streams keyed by (seed, purpose, tile, vector or row); each stream
// is consumed by one task in a fixed order, so results depend on the seed only, never on the
// thread count. Bits compare 32-bit uniforms with p * 2^32; normals are Box-Muller pairs.
// The statistics equal the reference kernel's (the random streams differ).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "tile_kernels.h"
#include "rng.h"
#include "tile_periphery.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace analog {
namespace {

enum DeviceKind : int64_t { kIdeal = 0, kConstant, kLinear, kSoft, kExp, kPow, kPiecewise };
// Index in list(PulseType): NONE, STOCHASTIC_COMPRESSED, STOCHASTIC, NONE_WITH_DEVICE,
// MEAN_COUNT, DETERMINISTIC_IMPLICIT.
enum PulseKind : int64_t {
  kNone = 0, kStoCompressed, kStochastic, kNoneWithDevice, kMeanCount, kDetImplicit
};

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniforms from splitmix64; normals in blocks of kBlock from the vectorised Philox + Box-Muller
// of rng.h (float accuracy), keyed by the same (seed, purpose, tile, index): a pulse's
// cycle-to-cycle noise costs a few cycles instead of a double log, sqrt, sin and cos.
struct Stream {
  uint64_t s;
  RngKey key;
  uint32_t c1, c2, c3, c0 = 0;
  int pos = kBlock;
  alignas(32) float buf[kBlock];
  Stream(int64_t seed, uint64_t purpose, uint64_t tile, uint64_t index)
      : s(mix64(static_cast<uint64_t>(seed) ^ mix64(purpose * 0x9E3779B97F4A7C15ULL ^
                                                    mix64(tile * 0xD1B54A32D192ED03ULL ^
                                                          mix64(index + 1))))),
        key(make_key(static_cast<int64_t>(mix64(s)))),
        c1(static_cast<uint32_t>(tile)), c2(static_cast<uint32_t>(index)),
        c3(static_cast<uint32_t>(purpose) ^ static_cast<uint32_t>(index >> 32)) {}
  inline uint64_t next() {
    s += 0x9E3779B97F4A7C15ULL;
    return mix64(s);
  }
  inline double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  __attribute__((noinline)) void refill() {
    normal_block(c0, c1, c2, c3, key, buf);
    c0 += kLanes;
    pos = 0;
  }
  inline double normal() {
    if (pos == kBlock) refill();
    return static_cast<double>(buf[pos++]);
  }
  inline float normal_f() {
    if (pos == kBlock) refill();
    return buf[pos++];
  }
};

struct UpdateCfg {
  int64_t desired_bl;
  bool fixed_bl, bl_management, update_management, sto_round;
  double um_grad_scale, res, x_res_implicit, d_res_implicit;
};

struct DeviceCfg {
  int64_t kind;
  double dw_min, std, A_up, A_down, gamma_up, gamma_down, a, b, std_add, std_slope;
  bool mult_noise;
  std::vector<double> up_nodes, down_nodes;
};

inline double quantize(double p, double res, bool sto_round, Stream* rng) {
  if (res <= 0) return p;
  const double step = res < 1 ? res : 1.0 / res;
  if (sto_round && rng != nullptr) return std::floor(p / step + rng->uniform()) * step;
  return std::nearbyint(p / step) * step;
}

// BL, A, B of one vector pair (runtime/update.py bit_line_params).
inline void bit_line(const UpdateCfg& u, double lr, double dw_min, double xa, double da,
                     int64_t* bl, double* a, double* b) {
  double A;
  int64_t BL;
  if (u.bl_management) {
    BL = static_cast<int64_t>(std::ceil(lr * xa * da / dw_min));
    BL = std::min<int64_t>(std::max<int64_t>(BL, 1), u.desired_bl);
    A = std::sqrt(lr / (dw_min * BL));
  } else {
    BL = u.desired_bl;
    A = std::sqrt(lr / (dw_min * BL));
    if (!u.fixed_bl && dw_min * u.desired_bl < lr) {
      BL = static_cast<int64_t>(std::ceil(lr / dw_min));
      A = 1.0;
    }
  }
  double B = A;
  if (u.update_management || u.bl_management) {
    const double g = std::sqrt(da * u.um_grad_scale / xa);
    A *= g;
    B /= g;
  }
  *bl = BL;
  *a = A;
  *b = B;
}

// Signed mean change of one pulse at weight w (runtime/update.py response).
template <int64_t KIND>
inline double response(const DeviceCfg& c, double w, bool up, double scale, double hi,
                       double lo, double shape) {
  if constexpr (KIND == kLinear || KIND == kSoft) {
    return scale * std::max(0.0, 1.0 + shape * w);
  } else if constexpr (KIND == kExp) {
    const double z = 2.0 * c.a * w / (hi - lo) + c.b;
    const double y = up ? 1.0 - c.A_up * std::exp(c.gamma_up * z)
                        : 1.0 - c.A_down * std::exp(-c.gamma_down * z);
    return scale * std::max(0.0, y);
  } else if constexpr (KIND == kPow) {
    const double omega = std::min(1.0, std::max(0.0, (hi - w) / (hi - lo)));
    return scale * std::pow(up ? omega : 1.0 - omega, shape);
  } else if constexpr (KIND == kPiecewise) {
    const auto& v = up ? c.up_nodes : c.down_nodes;
    const int64_t m = static_cast<int64_t>(v.size());
    if (m == 1) return scale * v[0];
    const double pos = std::min(1.0, std::max(0.0, (w - lo) / (hi - lo))) * (m - 1);
    const int64_t k = std::min<int64_t>(static_cast<int64_t>(std::floor(pos)), m - 2);
    const double q = pos - k;
    return scale * ((1.0 - q) * v[k] + q * v[k + 1]);
  } else {
    return scale;
  }
}

// One pulse (scaled by `factor`) on one device: the mean step, its cycle-to-cycle noise, the
// bounds (runtime/update.py apply_pulse).
template <int64_t KIND>
__attribute__((always_inline)) inline double one_pulse(const DeviceCfg& c, double w,
                                                       double factor, bool up, double scale,
                                                       double hi, double lo, double shape,
                                                       Stream& rng) {
  double dw = response<KIND>(c, w, up, scale, hi, lo, shape);
  if (c.std > 0) {
    const double xi = rng.normal();
    if constexpr (KIND == kExp) {
      dw += c.std * (c.std_add + std::abs(dw) + c.std_slope * std::abs(w)) * xi;
    } else if constexpr (KIND == kLinear || KIND == kSoft) {
      dw = c.mult_noise ? dw * (1.0 + c.std * xi) : dw + scale * c.std * xi;
    } else {
      dw *= 1.0 + c.std * xi;
    }
  }
  return std::min(hi, std::max(lo, w + factor * dw));
}

// One whole pulse in float arithmetic, for the models whose step is at most linear in w
// (constant, linear, soft bounds): the common single-coincidence case of the fast path.
template <int64_t KIND>
__attribute__((always_inline)) inline float one_pulse_f(float std, bool mult, float w,
                                                        float scale, float hi, float lo,
                                                        float shape, Stream& rng) {
  float dw = scale;
  if constexpr (KIND == kLinear || KIND == kSoft) dw = scale * std::max(0.0f, 1.0f + shape * w);
  if (std > 0) {
    const float xi = rng.normal_f();
    if constexpr (KIND == kLinear || KIND == kSoft) {
      dw = mult ? dw * (1.0f + std * xi) : dw + scale * std * xi;
    } else {
      dw *= 1.0f + std * xi;
    }
  }
  return std::min(hi, std::max(lo, w + dw));
}

// `count` pulses (the last one scaled by the fraction of a fractional count) on one device.
template <int64_t KIND>
inline double pulses(const DeviceCfg& c, double w, double count, bool up, double su, double sd,
                     double hi, double lo, double shu, double shd, Stream& rng) {
  const double scale = up ? su : -sd;
  const double shape = up ? shu : shd;
  for (int64_t k = 0; count - k > 0; ++k) {
    w = one_pulse<KIND>(c, w, std::min(1.0, count - k), up, scale, hi, lo, shape, rng);
  }
  return w;
}

// Bernoulli(p) train of `bl` bits into `words` (p = 1: all ones; p = 0: none).
inline void draw_train(double p, int64_t bl, uint64_t* words, int64_t n_words, Stream& rng) {
  std::fill(words, words + n_words, 0ULL);
  if (p <= 0) return;
  if (p >= 1) {
    for (int64_t t = 0; t < bl; ++t) words[t >> 6] |= 1ULL << (t & 63);
    return;
  }
  const uint64_t thr = static_cast<uint64_t>(p * 4294967296.0);
  for (int64_t t = 0; t < bl; t += 2) {
    const uint64_t r = rng.next();
    if ((r & 0xffffffffULL) < thr) words[t >> 6] |= 1ULL << (t & 63);
    if (t + 1 < bl && (r >> 32) < thr) words[(t + 1) >> 6] |= 1ULL << ((t + 1) & 63);
  }
}

// A row hook that does nothing (the plain update).
struct NoHook {
  template <typename scalar_t>
  inline void operator()(int64_t, int64_t, scalar_t*, Stream&) const {}
};

// `lrs[n]`: the learning rate of vector n. After vector n has been applied to row j, `hook(j,
// n, row pointer, row stream)` runs (the transfer compounds' per-row transfer).
template <typename scalar_t, int64_t KIND, typename Hook = NoHook>
void update_one_tile(const DeviceCfg& c, const UpdateCfg& u, int64_t pulse_type,
                     const double* lrs, int64_t seed, int64_t tile_id, scalar_t* w,
                     const scalar_t* const* st, int64_t ld, const scalar_t* x, int64_t ldx,
                     const scalar_t* d, int64_t ldd, int64_t N, int64_t rows, int64_t cols,
                     const Hook& hook = Hook()) {
  // Per vector: BL, A, B (vectors with a zero x or d give no pulses).
  std::vector<int64_t> bl(N, 0);
  std::vector<double> A(N, 0.0), B(N, 0.0);
  int64_t max_bl = 1;
  for (int64_t n = 0; n < N; ++n) {
    double xa = 0, da = 0;
    for (int64_t i = 0; i < cols; ++i) xa = std::max(xa, std::abs(double(x[n * ldx + i])));
    for (int64_t j = 0; j < rows; ++j) da = std::max(da, std::abs(double(d[n * ldd + j])));
    if (xa == 0 || da == 0) continue;
    bit_line(u, lrs[n], c.dw_min, xa, da, &bl[n], &A[n], &B[n]);
    max_bl = std::max(max_bl, bl[n]);
  }
  const bool stochastic = pulse_type == kStoCompressed || pulse_type == kStochastic;
  const int64_t n_words = (max_bl + 63) / 64;
  // Probabilities (and, for stochastic pulses, the trains) of every vector.
  std::vector<double> P(N * cols), Q(N * rows);
  std::vector<std::vector<int32_t>> active(N);  // per vector: the inputs that fire at all
  std::vector<uint64_t> xb, db;
  if (stochastic) {
    xb.assign(N * cols * n_words, 0);
    db.assign(N * rows * n_words, 0);
  }
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      if (bl[n] == 0) continue;
      Stream rx(seed, 1, tile_id, n), rd(seed, 2, tile_id, n);
      for (int64_t i = 0; i < cols; ++i) {
        double p = quantize(std::min(1.0, A[n] * std::abs(double(x[n * ldx + i]))), u.res,
                            u.sto_round, &rx);
        if (pulse_type == kDetImplicit) p = quantize(p, u.x_res_implicit, false, nullptr);
        P[n * cols + i] = p;
        bool fires = p > 0;
        if (stochastic) {
          uint64_t* words = &xb[(n * cols + i) * n_words];
          draw_train(p, bl[n], words, n_words, rx);
          fires = std::any_of(words, words + n_words, [](uint64_t v) { return v != 0; });
        }
        if (fires) active[n].push_back(static_cast<int32_t>(i));
      }
      for (int64_t j = 0; j < rows; ++j) {
        double q = quantize(std::min(1.0, B[n] * std::abs(double(d[n * ldd + j]))), u.res,
                            u.sto_round, &rd);
        if (pulse_type == kDetImplicit) q = quantize(q, u.d_res_implicit, false, nullptr);
        Q[n * rows + j] = q;
        if (stochastic) draw_train(q, bl[n], &db[(n * rows + j) * n_words], n_words, rd);
      }
    }
  });
  const scalar_t *su = st[0], *sd = st[1], *hi = st[2], *lo = st[3], *shu = st[4], *shd = st[5];
  at::parallel_for(0, rows, 4, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      Stream rng(seed, 3, tile_id, j), hook_rng(seed, 4, tile_id, j);
      scalar_t* wr = w + j * ld;
      const int64_t o = j * ld;
      auto apply = [&](int64_t n) {
        const double q = Q[n * rows + j];
        if (bl[n] == 0 || q <= 0) return;
        const bool d_pos = d[n * ldd + j] > 0;
        const uint64_t* dj = stochastic ? &db[(n * rows + j) * n_words] : nullptr;
        if (stochastic && std::none_of(dj, dj + n_words, [](uint64_t v) { return v != 0; })) {
          return;
        }
        if (stochastic && n_words == 1) {  // BL <= 64: one AND and one popcount per input
          // the row's pointers as locals: the loop reloads nothing through the closure
          const uint64_t dw = dj[0];
          const uint64_t* __restrict xw = &xb[n * cols];
          const scalar_t* __restrict xn = x + n * ldx;
          const scalar_t *__restrict su_r = su + o, *__restrict sd_r = sd + o;
          const scalar_t *__restrict hi_r = hi + o, *__restrict lo_r = lo + o;
          const scalar_t *__restrict shu_r = shu + o, *__restrict shd_r = shd + o;
          scalar_t* __restrict w_r = wr;
          const float std_f = static_cast<float>(c.std);
          const int32_t* idx = active[n].data();
          const int64_t n_act = static_cast<int64_t>(active[n].size());
          for (int64_t a = 0; a < n_act; ++a) {
            const int32_t i = idx[a];
            const uint64_t hit = xw[i] & dw;
            if (!hit) continue;
            const bool up = (xn[i] > 0) != d_pos;
            if constexpr (std::is_same_v<scalar_t, float> &&
                          (KIND == kConstant || KIND == kLinear || KIND == kSoft)) {
              if ((hit & (hit - 1)) == 0) {  // one coincidence (BL management keeps most so)
                w_r[i] = one_pulse_f<KIND>(std_f, c.mult_noise, w_r[i], up ? su_r[i] : -sd_r[i],
                                           hi_r[i], lo_r[i], up ? shu_r[i] : shd_r[i], rng);
                continue;
              }
            }
            if ((hit & (hit - 1)) == 0) {
              w_r[i] = static_cast<scalar_t>(one_pulse<KIND>(
                  c, double(w_r[i]), 1.0, up, up ? double(su_r[i]) : -double(sd_r[i]),
                  double(hi_r[i]), double(lo_r[i]), up ? double(shu_r[i]) : double(shd_r[i]),
                  rng));
              continue;
            }
            w_r[i] = static_cast<scalar_t>(pulses<KIND>(
                c, double(w_r[i]), static_cast<double>(__builtin_popcountll(hit)), up,
                double(su_r[i]), double(sd_r[i]), double(hi_r[i]), double(lo_r[i]),
                double(shu_r[i]), double(shd_r[i]), rng));
          }
          return;
        }
        for (const int32_t i : active[n]) {
          double count;
          if (stochastic) {
            const uint64_t* xi = &xb[(n * cols + i) * n_words];
            int64_t c = 0;
            for (int64_t k = 0; k < n_words; ++k) c += __builtin_popcountll(xi[k] & dj[k]);
            count = static_cast<double>(c);
          } else {
            count = bl[n] * q * P[n * cols + i];
            if (pulse_type == kDetImplicit) count = std::nearbyint(count);
          }
          if (count <= 0) continue;
          const bool up = (x[n * ldx + i] > 0) != d_pos;  // W -= lr d x^T: up where x d < 0
          const int64_t e = o + i;
          wr[i] = static_cast<scalar_t>(pulses<KIND>(
              c, double(wr[i]), count, up, double(su[e]), double(sd[e]), double(hi[e]),
              double(lo[e]), double(shu[e]), double(shd[e]), rng));
        }
      };
      for (int64_t n = 0; n < N; ++n) {
        apply(n);
        hook(j, n, wr, hook_rng);
      }
    }
  });
}

template <typename scalar_t>
void update_tile_dispatch(int64_t kind, const DeviceCfg& c, const UpdateCfg& u,
                          int64_t pulse_type, const double* lrs, int64_t seed, int64_t tile_id,
                          scalar_t* w, const scalar_t* const* st, int64_t ld, const scalar_t* x,
                          int64_t ldx, const scalar_t* d, int64_t ldd, int64_t N, int64_t rows,
                          int64_t cols) {
#define ANALOG_UPDATE_CASE(K)                                                                \
  case K:                                                                                    \
    update_one_tile<scalar_t, K>(c, u, pulse_type, lrs, seed, tile_id, w, st, ld, x, ldx, d, \
                                 ldd, N, rows, cols);                                         \
    break;
  switch (kind) {
    ANALOG_UPDATE_CASE(kConstant)
    ANALOG_UPDATE_CASE(kLinear)
    ANALOG_UPDATE_CASE(kSoft)
    ANALOG_UPDATE_CASE(kExp)
    ANALOG_UPDATE_CASE(kPow)
    ANALOG_UPDATE_CASE(kPiecewise)
    default:
      TORCH_CHECK(false, "analog::tile_update: unknown device kind ", kind);
  }
#undef ANALOG_UPDATE_CASE
}

// `count` pulses on one device of any kind (the slow array's writes are rare: a switch is fine).
inline double pulses_any(const DeviceCfg& c, double w, double count, bool up, double su,
                         double sd, double hi, double lo, double shu, double shd, Stream& rng) {
  switch (c.kind) {
    case kLinear: return pulses<kLinear>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
    case kSoft: return pulses<kSoft>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
    case kExp: return pulses<kExp>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
    case kPow: return pulses<kPow>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
    case kPiecewise: return pulses<kPiecewise>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
    default: return pulses<kConstant>(c, w, count, up, su, sd, hi, lo, shu, shd, rng);
  }
}

DeviceCfg device_cfg(int64_t kind, at::ArrayRef<double> p) {
  TORCH_CHECK(p.size() >= 11, "analog: expected >= 11 device params");
  DeviceCfg c;
  c.kind = kind;
  c.dw_min = p[0];
  c.std = p[1];
  c.mult_noise = p[2] != 0;
  c.A_up = p[3];
  c.A_down = p[4];
  c.gamma_up = p[5];
  c.gamma_down = p[6];
  c.a = p[7];
  c.b = p[8];
  c.std_add = p[9];
  c.std_slope = p[10];
  const int64_t n_nodes = (static_cast<int64_t>(p.size()) - 11) / 2;
  c.up_nodes.assign(p.begin() + 11, p.begin() + 11 + n_nodes);
  c.down_nodes.assign(p.begin() + 11 + n_nodes, p.end());
  return c;
}

UpdateCfg update_cfg(at::ArrayRef<double> p) {
  TORCH_CHECK(p.size() == 9, "analog: expected 9 update params");
  return UpdateCfg{static_cast<int64_t>(p[0]), p[1] != 0, p[2] != 0, p[3] != 0, p[6] != 0,
                   p[4], p[5], p[7], p[8]};
}

// The c-TTv2 transfer of one tile, run per row after each vector (runtime/transfer.py): the
// read of column col[n] of A (row j), the buffer, and the pulses on C[j, col[n]].
template <typename scalar_t>
struct ChopHook {
  const int64_t* col;          // [N]: the column read after vector n, or -1
  const double* scale;         // [N]: lr_scale of that read
  const int8_t* in_chop;       // [N]: the read column's input chopper
  const int8_t* out_snap;      // [N * rows]: output choppers at vector n
  int64_t rows;
  scalar_t* slow;              // C, H and the slow devices' parameters (ld = row stride)
  scalar_t* buf;
  const scalar_t* const* sst;
  int64_t ld;
  const DeviceCfg* dc;
  const UpdateCfg* tu;
  int64_t t_pulse;
  double write_lr, max_steps, momentum, one;
  bool forget, no_buffer;
  periphery::Io io;
  int64_t t_bl;
  double t_a, t_b;

  inline void operator()(int64_t j, int64_t n, scalar_t* wr, Stream& rng) const {
    const int64_t k = col[n];
    if (k < 0) return;
    const int64_t e = j * ld + k;
    // the read: a one-hot forward, noise and bound management off
    const double a = double(wr[k]);
    double v = a;
    if (!io.is_perfect) {
      v = a * one;
      if (io.additive()) v += io.w_noise * std::abs(one) * rng.normal();
      else if (io.pcm()) v += io.w_noise * std::sqrt(one * one * std::abs(a)) * rng.normal();
      if (io.out_noise > 0) v += io.out_noise * rng.normal();
      if (io.out_step > 0) {
        v = io.out_sto_round ? std::floor(v / io.out_step + rng.uniform()) * io.out_step
                             : std::nearbyint(v / io.out_step) * io.out_step;
      }
      if (io.out_bound > 0) v = std::min(io.out_bound, std::max(-io.out_bound, v));
    }
    v *= scale[n];
    if (in_chop[n] != out_snap[n * rows + j]) v = -v;
    double omega = no_buffer ? v : double(buf[e]) + v;
    double steps = 0.0;
    if (std::abs(omega) >= 1.0) {
      steps = std::max(-max_steps, std::min(max_steps, std::trunc(omega)));
      omega = forget ? omega * momentum : omega - (1.0 - momentum) * steps;
    }
    buf[e] = static_cast<scalar_t>(omega);
    if (steps == 0.0) return;
    // the write C -= lr (-steps) e_k^T: `steps` up (> 0) or down pulses by the transfer update
    const bool up = steps > 0;
    double w = double(slow[e]);
    if (dc->kind == kIdeal || t_pulse == kNone || t_pulse == kNoneWithDevice) {
      w += write_lr * steps;
      if (dc->kind != kIdeal && t_pulse == kNoneWithDevice) {
        w = std::min(double(sst[2][e]), std::max(double(sst[3][e]), w));
      }
      slow[e] = static_cast<scalar_t>(w);
      return;
    }
    double p = quantize(std::min(1.0, t_a), tu->res, tu->sto_round, &rng);
    double q = quantize(std::min(1.0, t_b * std::abs(steps)), tu->res, tu->sto_round, &rng);
    double count;
    if (t_pulse == kMeanCount) {
      count = t_bl * p * q;
    } else if (t_pulse == kDetImplicit) {
      p = quantize(p, tu->x_res_implicit, false, nullptr);
      q = quantize(q, tu->d_res_implicit, false, nullptr);
      count = std::nearbyint(t_bl * p * q);
    } else {
      int64_t c = 0;
      for (int64_t t = 0; t < t_bl; ++t) c += (rng.uniform() < p) & (rng.uniform() < q);
      count = static_cast<double>(c);
    }
    if (count <= 0) return;
    slow[e] = static_cast<scalar_t>(pulses_any(*dc, w, count, up, double(sst[0][e]),
                                               double(sst[1][e]), double(sst[2][e]),
                                               double(sst[3][e]), double(sst[4][e]),
                                               double(sst[5][e]), rng));
  }
};

inline int64_t every_of(bool in_mbatch, double every, int64_t batch) {
  if (in_mbatch) return std::max<int64_t>(static_cast<int64_t>(std::ceil(every * batch)), 0);
  return std::max<int64_t>(static_cast<int64_t>(std::floor(every + 0.5)), 0);
}

inline double ema(double m, double v, int64_t batch, double momentum) {
  if (m <= 0) return v;
  if (v <= 0) return m;
  const double tau = (1.0 - momentum) / static_cast<double>(batch);
  return (1.0 - tau) * m + tau * v;
}

}  // namespace

void tile_update_cpu(const at::Tensor& weight, at::TensorList state, const at::Tensor& x_in,
                     const at::Tensor& d_in, double lr, const at::Tensor& seed_t,
                     at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, int64_t device_kind,
                     at::ArrayRef<double> device_params, int64_t pulse_type,
                     at::ArrayRef<double> update_params) {
  TORCH_CHECK(weight.dim() == 3 && weight.is_contiguous(),
              "analog::tile_update: weight must be a contiguous [G, out_g, in_g] tensor");
  TORCH_CHECK(state.size() == 6, "analog::tile_update: expected 6 device state tensors");
  TORCH_CHECK(update_params.size() == 9, "analog::tile_update: expected 9 update params");
  TORCH_CHECK(device_params.size() >= 11, "analog::tile_update: expected >= 11 device params");
  const int64_t G = weight.size(0), out_g = weight.size(1), in_g = weight.size(2);
  const int64_t N = x_in.size(0);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g && d_in.dim() == 2 &&
                  d_in.size(0) == N && d_in.size(1) == G * out_g,
              "analog::tile_update: x must be [N, G * in_g] and d [N, G * out_g]");
  const auto x = x_in.to(weight.scalar_type()).contiguous();
  const auto d = d_in.to(weight.scalar_type()).contiguous();
  if (device_kind == kIdeal || pulse_type == kNone || pulse_type == kNoneWithDevice) {
    auto upd = at::bmm(d.reshape({N, G, out_g}).permute({1, 2, 0}),
                       x.reshape({N, G, in_g}).transpose(0, 1));  // [G, out_g, in_g]
    weight.sub_(upd * lr);
    if (device_kind != kIdeal && pulse_type == kNoneWithDevice) {
      weight.copy_(at::minimum(at::maximum(weight, state[3]), state[2]));
    }
    return;
  }
  UpdateCfg u{static_cast<int64_t>(update_params[0]), update_params[1] != 0,
              update_params[2] != 0, update_params[3] != 0, update_params[6] != 0,
              update_params[4], update_params[5], update_params[7], update_params[8]};
  DeviceCfg c;
  c.kind = device_kind;
  c.dw_min = device_params[0];
  c.std = device_params[1];
  c.mult_noise = device_params[2] != 0;
  c.A_up = device_params[3];
  c.A_down = device_params[4];
  c.gamma_up = device_params[5];
  c.gamma_down = device_params[6];
  c.a = device_params[7];
  c.b = device_params[8];
  c.std_add = device_params[9];
  c.std_slope = device_params[10];
  const int64_t n_nodes = (static_cast<int64_t>(device_params.size()) - 11) / 2;
  c.up_nodes.assign(device_params.begin() + 11, device_params.begin() + 11 + n_nodes);
  c.down_nodes.assign(device_params.begin() + 11 + n_nodes, device_params.end());
  std::vector<at::Tensor> st;
  for (const auto& t : state) {
    TORCH_CHECK(t.sizes() == weight.sizes(), "analog::tile_update: state tensors must have "
                "the weight's shape");
    st.push_back(t.to(weight.scalar_type()).contiguous());
  }
  const int64_t seed = seed_t.item<int64_t>();
  const std::vector<double> lrs(N, lr);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "analog::tile_update", [&] {
    scalar_t* w = weight.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dp = d.data_ptr<scalar_t>();
    int64_t tile_id = 0;
    for (int64_t g = 0; g < G; ++g) {
      int64_t c0 = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(in_sizes.size()); ++i) {
        int64_t r0 = 0;
        for (int64_t j = 0; j < static_cast<int64_t>(out_sizes.size()); ++j) {
          const int64_t off = (g * out_g + r0) * in_g + c0;
          const scalar_t* sp[6];
          for (int k = 0; k < 6; ++k) sp[k] = st[k].data_ptr<scalar_t>() + off;
          update_tile_dispatch<scalar_t>(device_kind, c, u, pulse_type, lrs.data(), seed, tile_id,
                                         w + off, sp, in_g, xp + g * in_g + c0, G * in_g,
                                         dp + g * out_g + r0, G * out_g, N, out_sizes[j],
                                         in_sizes[i]);
          r0 += out_sizes[j];
          ++tile_id;
        }
        c0 += in_sizes[i];
      }
    }
  });
}

#define ANALOG_TRANSFER_CASE(K)                                                              \
  case K:                                                                                    \
    update_one_tile<scalar_t, K, ChopHook<scalar_t>>(ca, u, pulse_type, lrs.data(), seed,   \
                                           tile_id, w, fp, in_g, xt.data(), cols, \
                                           dt.data(), rows, N, rows, cols, hook); \
    break;

// Fused c-TTv2 update (analog::transfer_update; semantics: runtime/transfer.py). Per tile: a
// serial prologue over the vectors (running maxima, learning rates, the transfer schedule and
// the choppers: nothing there depends on the weights), then the chopped fast update in
// parallel over rows with each row's transfers inline (a one-hot read touches only its row).
void transfer_update_cpu(const at::Tensor& fast, const at::Tensor& slow, const at::Tensor& buffer,
                         const at::Tensor& in_chop, const at::Tensor& out_chop,
                         const at::Tensor& tile_state, at::TensorList fast_state,
                         at::TensorList slow_state, const at::Tensor& x_in,
                         const at::Tensor& d_in, double lr, const at::Tensor& seed_t,
                         int64_t counter, at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
                         int64_t fast_kind, at::ArrayRef<double> fast_params, int64_t slow_kind,
                         at::ArrayRef<double> slow_params, int64_t pulse_type,
                         at::ArrayRef<double> update_params, int64_t t_pulse_type,
                         at::ArrayRef<double> t_update_params, at::ArrayRef<double> io_f,
                         at::ArrayRef<int64_t> io_i, at::ArrayRef<double> tp) {
  for (const auto* t : {&fast, &slow, &buffer}) {
    TORCH_CHECK(t->dim() == 3 && t->is_contiguous() && t->sizes() == fast.sizes() &&
                    t->scalar_type() == fast.scalar_type(),
                "analog::transfer_update: fast, slow and buffer must be contiguous [G, out_g, "
                "in_g] tensors of one dtype");
  }
  TORCH_CHECK(in_chop.scalar_type() == at::kChar && out_chop.scalar_type() == at::kChar &&
                  in_chop.is_contiguous() && out_chop.is_contiguous(),
              "analog::transfer_update: the choppers must be contiguous int8 tensors");
  TORCH_CHECK(tile_state.scalar_type() == at::kDouble && tile_state.is_contiguous(),
              "analog::transfer_update: tile_state must be a contiguous float64 tensor");
  TORCH_CHECK(fast_state.size() == 6 && slow_state.size() == 6,
              "analog::transfer_update: expected 6 state tensors per array");
  TORCH_CHECK(tp.size() == 18, "analog::transfer_update: expected 18 transfer params");
  TORCH_CHECK(fast_kind != kIdeal, "analog::transfer_update: the fast device must be pulsed");
  const int64_t G = fast.size(0), out_g = fast.size(1), in_g = fast.size(2);
  const int64_t N = x_in.size(0);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g && d_in.dim() == 2 &&
                  d_in.size(0) == N && d_in.size(1) == G * out_g,
              "analog::transfer_update: x must be [N, G * in_g] and d [N, G * out_g]");
  const int64_t n_in = in_sizes.size(), n_out = out_sizes.size();
  TORCH_CHECK(in_chop.numel() == G * n_out * in_g && out_chop.numel() == G * n_in * out_g &&
                  tile_state.numel() == G * n_in * n_out * 4,
              "analog::transfer_update: chopper or tile_state shape does not match the plan");
  const auto x = x_in.to(at::kDouble).contiguous();
  const auto d = d_in.to(at::kDouble).contiguous();
  const DeviceCfg ca = device_cfg(fast_kind, fast_params);
  const DeviceCfg cc = device_cfg(slow_kind, slow_params);
  const UpdateCfg u = update_cfg(update_params);
  const UpdateCfg tu = update_cfg(t_update_params);
  const periphery::Io io = periphery::unpack_io(io_f, io_i);
  const bool in_mbatch = tp[0] != 0, scale_fast = tp[3] != 0, scale_transfer = tp[5] != 0;
  const bool auto_scale = tp[6] != 0, correct = tp[10] != 0, forget = tp[13] != 0;
  const bool no_buffer = tp[14] != 0, chop_random = tp[16] != 0;
  const double every_f = tp[1], fast_lr = tp[2], lr_transfer = tp[4], auto_mom = tp[7];
  const double buffer_gran = tp[8], auto_gran = tp[9], step = tp[11], momentum = tp[12];
  const double in_chop_prob = tp[15], out_chop_prob = tp[17];
  const int64_t seed = seed_t.item<int64_t>();
  const int64_t every = every_of(in_mbatch, every_f, N);
  // the slow write's BL, A, B: constant (x = 1; |steps| <= desired_bl, validated in Python)
  const double write_lr = step * cc.dw_min;
  int64_t t_bl = 1;
  double t_a = 1.0, t_b = 1.0;
  if (slow_kind != kIdeal) bit_line(tu, write_lr, cc.dw_min, 1.0, 1.0, &t_bl, &t_a, &t_b);
  const double one = io.inp_step <= 0
      ? 1.0 : std::min(io.inp_bound, std::max(-io.inp_bound,
                                              std::nearbyint(1.0 / io.inp_step) * io.inp_step));
  int8_t* ic_all = in_chop.data_ptr<int8_t>();
  int8_t* oc_all = out_chop.data_ptr<int8_t>();
  double* ts_all = tile_state.data_ptr<double>();
  const double* xp = x.data_ptr<double>();
  const double* dp = d.data_ptr<double>();
  std::vector<at::Tensor> fst, sst;
  for (int k = 0; k < 6; ++k) {
    TORCH_CHECK(fast_state[k].sizes() == fast.sizes() && slow_state[k].sizes() == fast.sizes(),
                "analog::transfer_update: state tensors must have the weight's shape");
    fst.push_back(fast_state[k].to(fast.scalar_type()).contiguous());
    sst.push_back(slow_state[k].to(fast.scalar_type()).contiguous());
  }
  AT_DISPATCH_FLOATING_TYPES(fast.scalar_type(), "analog::transfer_update", [&] {
    int64_t tile_id = 0;
    for (int64_t g = 0; g < G; ++g) {
      int64_t c0 = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        const int64_t cols = in_sizes[i];
        int64_t r0 = 0;
        for (int64_t j = 0; j < n_out; ++j, ++tile_id) {
          const int64_t rows = out_sizes[j];
          double* ts = ts_all + ((g * n_in + i) * n_out + j) * 4;
          int8_t* ic = ic_all + (g * n_out + j) * in_g + c0;
          int8_t* oc = oc_all + (g * n_in + i) * out_g + r0;
          int64_t slice = static_cast<int64_t>(ts[0]), sweeps = static_cast<int64_t>(ts[1]);
          double m_x = ts[2], m_d = ts[3];
          // prologue: per vector its learning rate, chopped copy of x and d, the transfer
          std::vector<double> lrs(N), scales(N, 0.0), xs(N * cols), ds(N * rows);
          std::vector<int64_t> col(N, -1);
          std::vector<int8_t> in_read(N, 0), out_snap(N * rows);
          Stream prng(seed, 5, tile_id, 0);
          for (int64_t n = 0; n < N; ++n) {
            const double* xv = xp + n * G * in_g + g * in_g + c0;
            const double* dv = dp + n * G * out_g + g * out_g + r0;
            if (auto_scale) {
              double xa = 0, da = 0;
              for (int64_t c = 0; c < cols; ++c) xa = std::max(xa, std::abs(xv[c]));
              for (int64_t r = 0; r < rows; ++r) da = std::max(da, std::abs(dv[r]));
              m_x = ema(m_x, xa, N, auto_mom);
              m_d = ema(m_d, da, N, auto_mom);
            }
            double c_lr;
            if (auto_scale && fast_lr > 0) {
              c_lr = fast_lr * u.desired_bl * ca.dw_min;
              if (m_x > 0 && m_d > 0) c_lr /= m_x * m_d;
              if (scale_fast) c_lr *= lr;
            } else if (fast_lr > 0) {
              c_lr = scale_fast ? fast_lr * lr : fast_lr;
            } else {
              c_lr = lr;
            }
            lrs[n] = c_lr;
            for (int64_t c = 0; c < cols; ++c) xs[n * cols + c] = ic[c] ? -xv[c] : xv[c];
            for (int64_t r = 0; r < rows; ++r) {
              ds[n * rows + r] = oc[r] ? -dv[r] : dv[r];
              out_snap[n * rows + r] = oc[r];
            }
            ++counter;
            if (every <= 0 || counter % every != 0) continue;
            const int64_t k = slice;
            col[n] = k;
            in_read[n] = ic[k];
            const double lr_t = lr_transfer * (scale_transfer ? lr : 1.0);
            double bg = buffer_gran > 0 ? buffer_gran : 1.0;
            bg *= auto_gran > 0 ? ca.dw_min * auto_gran / (cols * std::abs(every_f)) : ca.dw_min;
            scales[n] = correct ? std::abs(lr_t) / c_lr / (bg * cc.dw_min / ca.dw_min)
                                : std::abs(lr_t) / bg;
            if (in_chop_prob > 0) {
              bool flip;
              if (chop_random) {
                flip = prng.uniform() < in_chop_prob;
              } else {
                const int64_t period =
                    std::max<int64_t>(static_cast<int64_t>(std::ceil(1.0 / in_chop_prob)), 2);
                flip = sweeps % period + 1 == period;
              }
              if (flip) ic[k] = static_cast<int8_t>(1 - ic[k]);
            }
            if (k == cols - 1) {
              if (out_chop_prob > 0) {
                for (int64_t r = 0; r < rows; ++r) {
                  if (prng.uniform() < out_chop_prob) oc[r] = static_cast<int8_t>(1 - oc[r]);
                }
              }
              ++sweeps;
            }
            slice = (k + 1) % cols;
          }
          ts[0] = static_cast<double>(slice);
          ts[1] = static_cast<double>(sweeps);
          ts[2] = m_x;
          ts[3] = m_d;
          // the fast update, each row's transfers inline
          const int64_t off = (g * out_g + r0) * in_g + c0;
          const scalar_t* fp[6];
          const scalar_t* sp[6];
          for (int k = 0; k < 6; ++k) {
            fp[k] = fst[k].data_ptr<scalar_t>() + off;
            sp[k] = sst[k].data_ptr<scalar_t>() + off;
          }
          std::vector<scalar_t> xt(xs.begin(), xs.end()), dt(ds.begin(), ds.end());
          ChopHook<scalar_t> hook{col.data(), scales.data(), in_read.data(), out_snap.data(),
                                  rows, slow.data_ptr<scalar_t>() + off,
                                  buffer.data_ptr<scalar_t>() + off, sp, in_g, &cc, &tu,
                                  t_pulse_type, write_lr, static_cast<double>(tu.desired_bl),
                                  std::min(1.0, std::max(0.0, momentum)), one, forget,
                                  no_buffer, io, t_bl, t_a, t_b};
          if (!forget) hook.momentum = std::min(1.0, std::max(0.0, momentum));
          else hook.momentum = momentum;
          scalar_t* w = fast.data_ptr<scalar_t>() + off;
          switch (fast_kind) {
            ANALOG_TRANSFER_CASE(kConstant)
            ANALOG_TRANSFER_CASE(kLinear)
            ANALOG_TRANSFER_CASE(kSoft)
            ANALOG_TRANSFER_CASE(kExp)
            ANALOG_TRANSFER_CASE(kPow)
            ANALOG_TRANSFER_CASE(kPiecewise)
            default:
              TORCH_CHECK(false, "analog::transfer_update: unknown device kind ", fast_kind);
          }
          r0 += rows;
        }
        c0 += cols;
      }
    }
  });
}

#undef ANALOG_TRANSFER_CASE

}  // namespace analog
