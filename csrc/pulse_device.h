// The pulsed devices of the update kernels (csrc/tile_update.cpp, csrc/transfer_update.cpp;
// semantics: runtime/update.py): the device and update configs as the kernels unpack them, the
// per-device response, one pulse with its cycle-to-cycle noise and bounds, the BL/A/B of a
// vector pair, the Bernoulli trains, and the random streams.
//
// Random numbers: streams keyed by (seed, purpose, tile, vector or row), uniforms from
// splitmix64, normals in blocks from rng.h's vectorised Philox + Box-Muller (float accuracy);
// each stream is consumed by one task in a fixed order, so results depend on the seed only,
// never on the thread count. Bits compare 32-bit uniforms with p * 2^32.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "rng.h"

namespace analog {
namespace pulsed {

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

// kStreamBlocks batches of rng.h's normal_block, counters c0, c0 + kLanes, ... (a Stream
// refills that many at once; interleaving two batches' Philox rounds measured no faster on top
// of rng.h's even/odd-halves philox8).
constexpr int kStreamBlocks = 4;
inline void normal_blocks(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, RngKey key,
                          float* out) {
  for (int b = 0; b < kStreamBlocks; ++b) {
    normal_block(c0 + static_cast<uint32_t>(b * kLanes), c1, c2, c3, key, out + b * kBlock);
  }
}

// Uniforms from splitmix64; normals kStreamBlocks * kBlock at a time from the vectorised Philox
// + Box-Muller of rng.h (float accuracy), keyed by the same (seed, purpose, tile, index): a
// pulse's cycle-to-cycle noise costs a few cycles instead of a double log, sqrt, sin and cos.
struct Stream {
  static constexpr int kSize = kStreamBlocks * kBlock;
  uint64_t s;
  RngKey key;
  uint32_t c1, c2, c3, c0 = 0;
  int pos = kSize;
  alignas(32) float buf[kSize];
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
    normal_blocks(c0, c1, c2, c3, key, buf);
    c0 += kStreamBlocks * kLanes;
    pos = 0;
  }
  inline double normal() {
    if (pos == kSize) refill();
    return static_cast<double>(buf[pos++]);
  }
  inline float normal_f() {
    if (pos == kSize) refill();
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
  // bits set by comparisons, not branches: a bit is a coin flip of probability p
  const uint64_t thr = static_cast<uint64_t>(p * 4294967296.0);
  for (int64_t t = 0; t < bl; t += 2) {
    const uint64_t r = rng.next();
    words[t >> 6] |= static_cast<uint64_t>((r & 0xffffffffULL) < thr) << (t & 63);
    const uint64_t hi = static_cast<uint64_t>(t + 1 < bl && (r >> 32) < thr);
    words[(t + 1) >> 6] |= hi << ((t + 1) & 63);
  }
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

inline DeviceCfg device_cfg(int64_t kind, at::ArrayRef<double> p) {
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

inline UpdateCfg update_cfg(at::ArrayRef<double> p) {
  TORCH_CHECK(p.size() == 9, "analog: expected 9 update params");
  return UpdateCfg{static_cast<int64_t>(p[0]), p[1] != 0, p[2] != 0, p[3] != 0, p[6] != 0,
                   p[4], p[5], p[7], p[8]};
}


}  // namespace pulsed
}  // namespace analog
