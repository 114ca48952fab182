// The tile periphery of analog::tile_forward (csrc/tile_forward.cpp; semantics:
// runtime/reference.py): the kernel arguments, the DAC of an input segment, the output pass of
// one tile row (read and output noise, ADC, clip test) and the digital accumulation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "rng.h"

namespace analog {
namespace periphery {

enum { kNmNone = 0, kNmAbsMax = 1, kNmConstant = 2, kNmAverageAbsMax = 3 };
enum { kWnNone = 0, kWnAdditive = 1, kWnPcmRead = 2 };
enum { kOutNormal = 0, kOutUniform = 1, kInNormal = 2, kInUniform = 3 };

struct Io {
  bool perfect;
  int64_t nm_type;
  double nm_thres, inp_bound, inp_step;
  bool inp_sto;
  double inp_noise, out_bound, out_step;
  bool out_sto;
  double out_noise;
  int64_t wn_type;
  double w_noise;
  int64_t bm_rounds;
  bool pcm() const { return wn_type == kWnPcmRead && w_noise > 0; }
  bool additive() const { return wn_type == kWnAdditive && w_noise > 0; }
};

inline uint32_t stream(int64_t round, int s) { return static_cast<uint32_t>(round << 4 | s); }

// DAC of one input segment: round((x * (1 / ar)) / step) * step, clip to +-inp_bound, + input
// noise. aihwkit's arithmetic (scale = (1 / alpha) / red, multiply, divide by the step, round):
// 1 / (alpha * red) is exactly (1 / alpha) / red for a power-of-two red, and dividing by the step
// (not multiplying by its reciprocal) decides the ties at x / ar = k / 2 steps as aihwkit does.
template <typename T>
void dac_row(const T* x, T* out, int64_t len, T ar, const Io& io, RngKey key, uint32_t vec,
             uint32_t tile, int64_t round, float* nbuf, float* ubuf) {
  const T step = static_cast<T>(io.inp_step), bound = static_cast<T>(io.inp_bound);
  const T inv = T(1) / ar;
  if (io.inp_step > 0 && io.inp_sto) {
    fill_uniform(ubuf, len, vec, tile, stream(round, kInUniform), key);
    for (int64_t k = 0; k < len; ++k)
      out[k] = std::floor((x[k] * inv) / step + static_cast<T>(ubuf[k])) * step;
  } else if (io.inp_step > 0) {
    for (int64_t k = 0; k < len; ++k) out[k] = std::nearbyint((x[k] * inv) / step) * step;
  } else {
    for (int64_t k = 0; k < len; ++k) out[k] = x[k] / ar;
  }
  for (int64_t k = 0; k < len; ++k) out[k] = std::min(std::max(out[k], -bound), bound);
  if (io.inp_noise > 0) {
    fill_normal(nbuf, len, vec, tile, stream(round, kInNormal), key);
    const T s = static_cast<T>(io.inp_noise);
    for (int64_t k = 0; k < len; ++k) out[k] += s * static_cast<T>(nbuf[k]);
  }
}

// The only nonzero position of v, -1 when all are zero, -2 when two or more are nonzero.
// Dense vectors stop at their second nonzero; one-hot ones (identity readouts) are scanned in
// chunks of 16 that vectorise, not value by value.
template <typename T>
int32_t sole_nonzero(const T* v, int64_t len) {
  int64_t k0 = 0;
  for (; k0 + 16 <= len; k0 += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) any |= v[k0 + j] != T(0);
    if (any) break;
  }
  while (k0 < len && v[k0] == T(0)) ++k0;
  if (k0 == len) return -1;
  int64_t k = k0 + 1;
  for (const int64_t stop = std::min(len, k0 + 16); k < stop; ++k)
    if (v[k] != T(0)) return -2;
  int any = 0;
  for (; k < len; ++k) any |= v[k] != T(0);
  return any ? -2 : static_cast<int32_t>(k0);
}

template <typename T>
T row_norm(const T* v, int64_t len) {
  T acc = 0;
  for (int64_t k = 0; k < len; ++k) acc += v[k] * v[k];
  return std::sqrt(acc);
}

// Output pass of one vector of one tile, in place: read noise and output noise (one normal with
// the summed variance), ADC, clip test. Writes keep = !clipped when asked; returns any clip.
template <typename T>
bool out_row(T* v, const T* var, T add_std, int64_t len, const Io& io, RngKey key, uint32_t vec,
             uint32_t tile, int64_t round, float* nbuf, float* ubuf, bool* keep) {
  const T on = static_cast<T>(io.out_noise), wn = static_cast<T>(io.w_noise);
  if (io.out_noise > 0 || io.pcm() || io.additive()) {
    fill_normal(nbuf, len, vec, tile, stream(round, kOutNormal), key);
    if (var != nullptr) {
      for (int64_t k = 0; k < len; ++k) {
        const T sw2 = wn * wn * std::max(var[k], T(0));
        v[k] += std::sqrt(sw2 + on * on) * static_cast<T>(nbuf[k]);
      }
    } else {
      const T sd = std::sqrt(add_std * add_std + on * on);
      for (int64_t k = 0; k < len; ++k) v[k] += sd * static_cast<T>(nbuf[k]);
    }
  }
  const T step = static_cast<T>(io.out_step);
  if (io.out_step > 0 && io.out_sto) {
    fill_uniform(ubuf, len, vec, tile, stream(round, kOutUniform), key);
    for (int64_t k = 0; k < len; ++k)
      v[k] = std::floor(v[k] / step + static_cast<T>(ubuf[k])) * step;
  } else if (io.out_step > 0) {
    for (int64_t k = 0; k < len; ++k) v[k] = std::nearbyint(v[k] / step) * step;
  }
  if (io.out_bound <= 0) {
    if (keep != nullptr) std::fill(keep, keep + len, true);
    return false;
  }
  const T bound = static_cast<T>(io.out_bound);
  int hits = 0;
  for (int64_t k = 0; k < len; ++k) {
    const bool h = std::abs(v[k]) >= bound;
    hits |= h;
    v[k] = std::min(std::max(v[k], -bound), bound);
  }
  if (keep != nullptr)
    for (int64_t k = 0; k < len; ++k) keep[k] = std::abs(v[k]) < bound;
  return hits != 0;
}

// The same arithmetic on a transposed block xt[k * m + r] (vector r, element k), vectorised
// across vectors: the DAC with deterministic rounding and no input noise (the per-vector
// functions above serve the other settings), and the vector norms.
template <typename T>
void dac_block_t(T* xt, int64_t m, int64_t len, const T* ar, T* inv, const Io& io) {
  const T step = static_cast<T>(io.inp_step), bound = static_cast<T>(io.inp_bound);
  for (int64_t r = 0; r < m; ++r) inv[r] = T(1) / ar[r];  // as dac_row
  for (int64_t k = 0; k < len; ++k) {
    T* row = xt + k * m;
    if (io.inp_step > 0)
      for (int64_t r = 0; r < m; ++r)
        row[r] = std::min(std::max(std::nearbyint((row[r] * inv[r]) / step) * step, -bound),
                          bound);
    else
      for (int64_t r = 0; r < m; ++r) row[r] = std::min(std::max(row[r] / ar[r], -bound), bound);
  }
}

template <typename T>
void block_norm_t(const T* xt, int64_t m, int64_t len, T* norms) {
  std::fill(norms, norms + m, T(0));
  for (int64_t k = 0; k < len; ++k)
    for (int64_t r = 0; r < m; ++r) norms[r] += xt[k * m + r] * xt[k * m + r];
  for (int64_t r = 0; r < m; ++r) norms[r] = std::sqrt(norms[r]);
}

// y (=|+=) (v * ar) * scale, or 0 for a vector whose noise-management alpha was 0.
template <typename T>
void accumulate(T* y, const T* v, int64_t len, T ar, const T* scale, bool first, bool zero) {
  if (zero) {
    if (first) std::fill(y, y + len, T(0));
    return;
  }
  if (scale != nullptr) {
    if (first)
      for (int64_t k = 0; k < len; ++k) y[k] = v[k] * ar * scale[k];
    else
      for (int64_t k = 0; k < len; ++k) y[k] += v[k] * ar * scale[k];
  } else {
    if (first)
      for (int64_t k = 0; k < len; ++k) y[k] = v[k] * ar;
    else
      for (int64_t k = 0; k < len; ++k) y[k] += v[k] * ar;
  }
}

}  // namespace periphery
}  // namespace analog
