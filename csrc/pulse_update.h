// The fused pulsed update of one tile (csrc/tile_update.cpp, csrc/transfer_update.cpp;
// semantics: runtime/update.py update_tile), with a per-row hook after each vector.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "pulse_device.h"

namespace analog {
namespace pulsed {

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


}  // namespace pulsed
}  // namespace analog
