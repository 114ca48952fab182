// The tile periphery of analog::tile_forward (csrc/tile_forward.cpp; semantics:
// runtime/reference.py): the kernel arguments, the DAC of an input segment, the output pass of
// one tile row (read and output noise, ADC, clip test) and the digital accumulation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include "rng.h"

namespace analog {
namespace periphery {

// The packed periphery. runtime/periphery.py holds the spec (PERIPHERY); these lists repeat its
// float and int fields in its order, and its enum codes. Before registering any kernel the
// library's load compares layout() with the spec's (runtime/_ext.py), so a field added on one
// side only stops the load with both layouts in the message instead of shifting arguments.
#define ANALOG_IO_FLOATS(X) \
  X(nm_thres) X(nm_assumed_wmax) X(inp_bound) X(inp_step) X(inp_noise) X(out_bound) \
  X(out_step) X(out_noise) X(out_noise_std) X(w_noise) X(ir_drop) X(ir_drop_g_ratio) \
  X(max_bm_res)
#define ANALOG_IO_INTS(X) \
  X(is_perfect) X(nm_type) X(inp_sto_round) X(out_sto_round) X(chip_seed) X(w_noise_type) \
  X(bm_type) X(bm_rounds) X(bm_neg)
#define ANALOG_NM_CODES(X) \
  X(NONE, 0) X(ABS_MAX, 1) X(CONSTANT, 2) X(AVERAGE_ABS_MAX, 3) X(MAX, 4) X(ABS_MAX_NP_SUM, 5)
#define ANALOG_WN_CODES(X) X(NONE, 0) X(ADDITIVE_CONSTANT, 1) X(PCM_READ, 2)
#define ANALOG_BM_CODES(X) X(NONE, 0) X(ITERATIVE, 1) X(ITERATIVE_WORST_CASE, 2) X(SHIFT, 3)

#define ANALOG_CODE_ENUM(name, value) name = value,
namespace nm { enum : int64_t { ANALOG_NM_CODES(ANALOG_CODE_ENUM) }; }  // io.nm_type
namespace wn { enum : int64_t { ANALOG_WN_CODES(ANALOG_CODE_ENUM) }; }  // io.w_noise_type
namespace bm { enum : int64_t { ANALOG_BM_CODES(ANALOG_CODE_ENUM) }; }  // io.bm_type
#undef ANALOG_CODE_ENUM

enum { kOutNormal = 0, kOutUniform = 1, kInNormal = 2, kInUniform = 3, kColumnNoise = 4 };

struct Io {
#define ANALOG_IO_DOUBLE(name) double name = 0;
#define ANALOG_IO_INT(name) int64_t name = 0;
  ANALOG_IO_FLOATS(ANALOG_IO_DOUBLE)
  ANALOG_IO_INTS(ANALOG_IO_INT)
#undef ANALOG_IO_DOUBLE
#undef ANALOG_IO_INT
  bool pcm() const { return w_noise_type == wn::PCM_READ && w_noise > 0; }
  bool additive() const { return w_noise_type == wn::ADDITIVE_CONSTANT && w_noise > 0; }
  bool ir() const { return ir_drop > 0 && !is_perfect; }
  // |W| is read by the PCM read noise and the IR drop's currents
  bool needs_wabs() const { return !is_perfect && (pcm() || ir_drop > 0); }
};

#define ANALOG_IO_COUNT(name) +1
constexpr size_t kIoFloats = 0 ANALOG_IO_FLOATS(ANALOG_IO_COUNT);
constexpr size_t kIoInts = 0 ANALOG_IO_INTS(ANALOG_IO_COUNT);
#undef ANALOG_IO_COUNT

// The forward ops' io_f / io_i arguments, unpacked once per call.
inline Io unpack_io(c10::ArrayRef<double> f, c10::ArrayRef<int64_t> i) {
  TORCH_CHECK(f.size() == kIoFloats && i.size() == kIoInts, "analog: the packed periphery has ",
              f.size(), " floats and ", i.size(), " ints; the kernels take ", kIoFloats, " and ",
              kIoInts, " (runtime/periphery.py)");
  Io io;
  size_t kf = 0, ki = 0;
#define ANALOG_IO_TAKE_F(name) io.name = f[kf++];
#define ANALOG_IO_TAKE_I(name) io.name = i[ki++];
  ANALOG_IO_FLOATS(ANALOG_IO_TAKE_F)
  ANALOG_IO_INTS(ANALOG_IO_TAKE_I)
#undef ANALOG_IO_TAKE_F
#undef ANALOG_IO_TAKE_I
  return io;
}

// "float:a,b;int:c,d;nm_type:NONE=0,...": the format of runtime/periphery.py's layout().
inline std::string io_layout() {
  std::string f, i, nmc, wnc, bmc;
#define ANALOG_IO_NAME_F(name) f += (f.empty() ? "" : ",") + std::string(#name);
#define ANALOG_IO_NAME_I(name) i += (i.empty() ? "" : ",") + std::string(#name);
#define ANALOG_CODE_NM(name, value) nmc += (nmc.empty() ? "" : ",") + std::string(#name "=" #value);
#define ANALOG_CODE_WN(name, value) wnc += (wnc.empty() ? "" : ",") + std::string(#name "=" #value);
#define ANALOG_CODE_BM(name, value) bmc += (bmc.empty() ? "" : ",") + std::string(#name "=" #value);
  ANALOG_IO_FLOATS(ANALOG_IO_NAME_F)
  ANALOG_IO_INTS(ANALOG_IO_NAME_I)
  ANALOG_NM_CODES(ANALOG_CODE_NM)
  ANALOG_WN_CODES(ANALOG_CODE_WN)
  ANALOG_BM_CODES(ANALOG_CODE_BM)
#undef ANALOG_IO_NAME_F
#undef ANALOG_IO_NAME_I
#undef ANALOG_CODE_NM
#undef ANALOG_CODE_WN
#undef ANALOG_CODE_BM
  return "float:" + f + ";int:" + i + ";nm_type:" + nmc + ";w_noise_type:" + wnc +
         ";bm_type:" + bmc;
}

// Noise-management scale of one input segment (every type but the batch-wide AVERAGE_ABS_MAX),
// elements stride apart, in T as aihwkit computes it. <= 0: the vector's output is 0.
template <typename T>
T segment_alpha(const T* row, int64_t len, const Io& io, int64_t stride = 1) {
  if (io.nm_type == nm::CONSTANT) return static_cast<T>(io.nm_thres);
  if (io.nm_type != nm::ABS_MAX && io.nm_type != nm::MAX && io.nm_type != nm::ABS_MAX_NP_SUM)
    return T(1);
  T m = 0, pos = 0, neg = 0;
  if (io.nm_type == nm::MAX) {
    m = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < len; ++k) m = std::max(m, row[k * stride]);
  } else {
    for (int64_t k = 0; k < len; ++k) m = std::max(m, std::abs(row[k * stride]));
  }
  if (io.nm_type == nm::ABS_MAX_NP_SUM)
    for (int64_t k = 0; k < len; ++k) {
      const T x = row[k * stride];
      pos += x > T(0) ? x : T(0);
      neg += x < T(0) ? x : T(0);
    }
  if (io.nm_thres > 0) m = std::min(m, static_cast<T>(io.nm_thres));
  if (io.nm_type != nm::ABS_MAX_NP_SUM) return m;
  // aihwkit's AbsMaxNPSum: the larger one-signed sum times the assumed largest weight must fit
  // the output range, limited by what the DAC resolves
  const T bound = io.out_bound > 0 ? static_cast<T>(io.out_bound) : T(1);
  T np = std::max(pos, -neg) * static_cast<T>(io.nm_assumed_wmax) / bound;
  if (io.inp_step > 0)
    np = std::min(m / static_cast<T>(io.inp_step) * static_cast<T>(io.max_bm_res), np);
  return std::max(m, np);
}

// Noise management gives a vector of zeros the scale 0, and the driver then writes 0 with no
// GEMM. abs-max skips NaN, so a vector of NaN (and zeros) gets 0 too: it must not take that
// shortcut (NaN in, NaN out, as nn.Linear). Scans only vectors whose scale is not positive.
template <typename T>
T nan_aware(T alpha, const T* v, int64_t len, int64_t stride = 1) {
  if (alpha > 0) return alpha;
  for (int64_t k = 0; k < len; ++k)
    if (std::isnan(v[k * stride])) return std::numeric_limits<T>::quiet_NaN();
  return alpha;
}

// The DAC rounds (x / alpha) / step as aihwkit does: a correctly rounded division, whose result
// can sit exactly on a half step (bound management's reductions make that systematic), where the
// plain product with 1 / step may land an ulp off and round the other way. quotient() gives the
// division's exact result without dividing: the product q0 = a * (1 / step) is within an ulp of
// a / step, the FMA gives its remainder a - q0 step exactly, and one more FMA step rounds to the
// correctly rounded quotient (Markstein's theorem: 1 / step correctly rounded, q0 within an ulp).
// An infinite product (a infinite, or overflow) is the quotient already.
template <typename T>
inline T quotient(T a, T step, T inv_step) {
  const T q0 = a * inv_step;
  const T q = std::fma(std::fma(-q0, step, a), inv_step, q0);
  return std::abs(q0) <= std::numeric_limits<T>::max() ? q : q0;
}

// The scale a vector goes through the DAC and back with: its noise-management scale, 1 for a
// vector of zeros, NaN for a NaN scale (AVERAGE_ABS_MAX of a batch with a NaN: all outputs NaN).
template <typename T>
T dac_scale(T alpha) {
  return (alpha > 0 || std::isnan(alpha)) ? alpha : T(1);
}

inline uint32_t stream(int64_t round, int s) { return static_cast<uint32_t>(round << 4 | s); }

// DAC of one input segment: round((x * (1 / ar)) / step) * step, clip to +-inp_bound, + input
// noise. aihwkit's arithmetic (scale = (1 / alpha) / red, multiply, divide by the step, round):
// 1 / (alpha * red) is exactly (1 / alpha) / red for a power-of-two red, and the quotient by the
// step (quotient(): exact, not the product with its reciprocal) decides the ties at
// x / ar = k / 2 steps as aihwkit does.
template <typename T>
void dac_row(const T* x, T* out, int64_t len, T ar, const Io& io, RngKey key, uint32_t vec,
             uint32_t tile, int64_t round, float* nbuf, float* ubuf) {
  const T step = static_cast<T>(io.inp_step), bound = static_cast<T>(io.inp_bound);
  const T inv = T(1) / ar;
  if (io.inp_step > 0 && io.inp_sto_round) {
    fill_uniform(ubuf, len, vec, tile, stream(round, kInUniform), key);
    for (int64_t k = 0; k < len; ++k)
      out[k] = std::floor((x[k] * inv) / step + static_cast<T>(ubuf[k])) * step;
  } else if (io.inp_step > 0) {
    const T inv_step = T(1) / step;
    for (int64_t k = 0; k < len; ++k)
      out[k] = std::nearbyint(quotient(x[k] * inv, step, inv_step)) * step;
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

// What the output pass of one vector adds besides the output noise (all optional): the PCM
// read-noise variance per output (var) or the additive read-noise std (add_std), the IR drop
// (its currents sum_j |w_ij| |x_j| and sums sum_j w_ij x_j ramp_j, and n / ir_drop_g_ratio),
// and the per-output noise std of out_noise_std (ostd, else io.out_noise).
template <typename T>
struct RowExtras {
  const T* var = nullptr;
  T add_std = 0;
  const T* cur = nullptr;
  const T* irz = nullptr;
  T ir_scale = 0;
  const T* ostd = nullptr;
};

// Output pass of one vector of one tile, in place: IR drop, read noise and output noise (one
// normal with the summed variance), SHIFT, ADC, clip test. Writes keep = not clipped when asked;
// returns whether bound management must redo the vector (aihwkit: an output beyond +out_bound,
// or below -out_bound with bm_neg).
template <typename T>
bool out_row(T* v, const RowExtras<T>& e, int64_t len, const Io& io, RngKey key, uint32_t vec,
             uint32_t tile, int64_t round, float* nbuf, float* ubuf, bool* keep) {
  const T on = static_cast<T>(io.out_noise), wn = static_cast<T>(io.w_noise);
  if (e.cur != nullptr) {  // aihwkit's IR drop: y_i -= c(a_i) * (ir_drop * sum_j w_ij x'_j)
    const T ir = static_cast<T>(io.ir_drop);
    for (int64_t k = 0; k < len; ++k) {
      const T a = e.ir_scale * e.cur[k];
      v[k] -= a * (a * (T(0.05) * a - T(0.2)) + T(0.5)) * (ir * e.irz[k]);
    }
  }
  if (io.out_noise > 0 || e.ostd != nullptr || io.pcm() || io.additive()) {
    fill_normal(nbuf, len, vec, tile, stream(round, kOutNormal), key);
    if (e.var == nullptr && e.ostd == nullptr) {  // one std for the whole row
      const T sd = std::sqrt(e.add_std * e.add_std + on * on);
      for (int64_t k = 0; k < len; ++k) v[k] += sd * static_cast<T>(nbuf[k]);
    } else if (e.ostd == nullptr) {  // PCM read noise
      for (int64_t k = 0; k < len; ++k) {
        const T sw2 = wn * wn * std::max(e.var[k], T(0));
        v[k] += std::sqrt(sw2 + on * on) * static_cast<T>(nbuf[k]);
      }
    } else {  // a noise std per output line (out_noise_std)
      for (int64_t k = 0; k < len; ++k) {
        const T sw =
            e.var != nullptr ? wn * wn * std::max(e.var[k], T(0)) : e.add_std * e.add_std;
        v[k] += std::sqrt(sw + e.ostd[k] * e.ostd[k]) * static_cast<T>(nbuf[k]);
      }
    }
  }
  if (io.bm_type == bm::SHIFT) {  // the largest output to +out_bound (for a softmax after)
    T top = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < len; ++k) top = std::max(top, v[k]);
    const T shift = static_cast<T>(io.out_bound) - top;
    for (int64_t k = 0; k < len; ++k) v[k] += shift;
  }
  const T step = static_cast<T>(io.out_step);
  if (io.out_step > 0 && io.out_sto_round) {
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
  if (keep != nullptr)
    for (int64_t k = 0; k < len; ++k) keep[k] = !(std::abs(v[k]) > bound);
  if (io.bm_neg) {
    for (int64_t k = 0; k < len; ++k) {
      hits |= std::abs(v[k]) > bound;
      v[k] = std::min(std::max(v[k], -bound), bound);
    }
  } else {
    for (int64_t k = 0; k < len; ++k) {
      hits |= v[k] > bound;
      v[k] = std::min(std::max(v[k], -bound), bound);
    }
  }
  return hits != 0;
}

// The same arithmetic on a transposed block xt[k * m + r] (vector r, element k), vectorised
// across vectors: the DAC with deterministic rounding and no input noise (the per-vector
// functions above serve the other settings), and the vector norms.
template <typename T>
void dac_block_t(T* xt, int64_t m, int64_t len, const T* ar, T* inv, const Io& io) {
  const T step = static_cast<T>(io.inp_step), bound = static_cast<T>(io.inp_bound);
  const T inv_step = T(1) / step;
  for (int64_t r = 0; r < m; ++r) inv[r] = T(1) / ar[r];  // as dac_row
  for (int64_t k = 0; k < len; ++k) {
    T* row = xt + k * m;
    if (io.inp_step > 0) {
      for (int64_t r = 0; r < m; ++r)
        row[r] = std::min(
            std::max(std::nearbyint(quotient(row[r] * inv[r], step, inv_step)) * step, -bound),
            bound);
    } else {
      for (int64_t r = 0; r < m; ++r) row[r] = std::min(std::max(row[r] / ar[r], -bound), bound);
    }
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
