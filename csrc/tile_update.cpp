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

#include <algorithm>
#include <cmath>
#include <cstdint>
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

struct Stream {
  uint64_t s;
  bool has_spare = false;
  double spare = 0.0;
  Stream(int64_t seed, uint64_t purpose, uint64_t tile, uint64_t index)
      : s(mix64(static_cast<uint64_t>(seed) ^ mix64(purpose * 0x9E3779B97F4A7C15ULL ^
                                                    mix64(tile * 0xD1B54A32D192ED03ULL ^
                                                          mix64(index + 1))))) {}
  inline uint64_t next() {
    s += 0x9E3779B97F4A7C15ULL;
    return mix64(s);
  }
  inline double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  inline double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 6.283185307179586 * uniform();
    spare = r * std::sin(t);
    has_spare = true;
    return r * std::cos(t);
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

// `count` pulses (the last one scaled by the fraction of a fractional count) on one device.
template <int64_t KIND>
inline double pulses(const DeviceCfg& c, double w, double count, bool up, double su, double sd,
                     double hi, double lo, double shu, double shd, Stream& rng) {
  const double scale = up ? su : -sd;
  const double shape = up ? shu : shd;
  for (int64_t k = 0; count - k > 0; ++k) {
    const double factor = std::min(1.0, count - k);
    double dw = response<KIND>(c, w, up, scale, hi, lo, shape);
    if (c.std > 0) {
      const double xi = rng.normal();
      if constexpr (KIND == kExp) {
        dw += c.std * (c.std_add + std::abs(dw) + c.std_slope * std::abs(w)) * xi;
      } else if constexpr (KIND == kLinear) {
        dw = c.mult_noise ? dw * (1.0 + c.std * xi) : dw + scale * c.std * xi;
      } else {
        dw *= 1.0 + c.std * xi;
      }
    }
    w = std::min(hi, std::max(lo, w + factor * dw));
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

template <typename scalar_t, int64_t KIND>
void update_one_tile(const DeviceCfg& c, const UpdateCfg& u, int64_t pulse_type, double lr,
                     int64_t seed, int64_t tile_id, scalar_t* w, const scalar_t* const* st,
                     int64_t ld, const scalar_t* x, int64_t ldx, const scalar_t* d, int64_t ldd,
                     int64_t N, int64_t rows, int64_t cols) {
  // Per vector: BL, A, B (vectors with a zero x or d give no pulses).
  std::vector<int64_t> bl(N, 0);
  std::vector<double> A(N, 0.0), B(N, 0.0);
  int64_t max_bl = 1;
  for (int64_t n = 0; n < N; ++n) {
    double xa = 0, da = 0;
    for (int64_t i = 0; i < cols; ++i) xa = std::max(xa, std::abs(double(x[n * ldx + i])));
    for (int64_t j = 0; j < rows; ++j) da = std::max(da, std::abs(double(d[n * ldd + j])));
    if (xa == 0 || da == 0) continue;
    bit_line(u, lr, c.dw_min, xa, da, &bl[n], &A[n], &B[n]);
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
      Stream rng(seed, 3, tile_id, j);
      scalar_t* wr = w + j * ld;
      const int64_t o = j * ld;
      for (int64_t n = 0; n < N; ++n) {
        const double q = Q[n * rows + j];
        if (bl[n] == 0 || q <= 0) continue;
        const bool d_pos = d[n * ldd + j] > 0;
        const uint64_t* dj = stochastic ? &db[(n * rows + j) * n_words] : nullptr;
        if (stochastic && std::none_of(dj, dj + n_words, [](uint64_t v) { return v != 0; })) {
          continue;
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
      }
    }
  });
}

template <typename scalar_t>
void update_tile_dispatch(int64_t kind, const DeviceCfg& c, const UpdateCfg& u,
                          int64_t pulse_type, double lr, int64_t seed, int64_t tile_id,
                          scalar_t* w, const scalar_t* const* st, int64_t ld, const scalar_t* x,
                          int64_t ldx, const scalar_t* d, int64_t ldd, int64_t N, int64_t rows,
                          int64_t cols) {
#define ANALOG_UPDATE_CASE(K)                                                                \
  case K:                                                                                    \
    update_one_tile<scalar_t, K>(c, u, pulse_type, lr, seed, tile_id, w, st, ld, x, ldx, d, \
                                 ldd, N, rows, cols);                                        \
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
          update_tile_dispatch<scalar_t>(device_kind, c, u, pulse_type, lr, seed, tile_id,
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

}  // namespace analog
