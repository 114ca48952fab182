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

// One row's pulses from one vector when every train is one word: `pl` holds the vector's x bit
// planes (plane t: bit t of every input's train, `cw` words over the columns), `xpos` the inputs
// with x > 0, `xw` their trains. The columns hit are `ones`, those hit more than once `twos` (a
// carry-save count over the set bits of the d train `dw`); their set bits are visited in column
// order, so no branch depends on whether a device is hit, and the direction is a bit.
template <typename scalar_t, int64_t KIND>
inline void row_planes(const DeviceCfg& c, uint64_t dw, bool d_pos, const uint64_t* pl,
                       const uint64_t* xpos, int64_t cw, const uint64_t* xw, int64_t o,
                       scalar_t* __restrict wr, const scalar_t* const* st, uint64_t* ones,
                       uint64_t* twos, Stream& rng) {
  std::fill(ones, ones + cw, 0ULL);
  std::fill(twos, twos + cw, 0ULL);
  for (uint64_t m = dw; m; m &= m - 1) {
    const uint64_t* p = pl + __builtin_ctzll(m) * cw;
    for (int64_t k = 0; k < cw; ++k) {
      twos[k] |= ones[k] & p[k];
      ones[k] |= p[k];
    }
  }
  const scalar_t *__restrict su = st[0] + o, *__restrict sd = st[1] + o;
  const scalar_t *__restrict hi = st[2] + o, *__restrict lo = st[3] + o;
  const scalar_t *__restrict shu = st[4] + o, *__restrict shd = st[5] + o;
  const uint64_t flip = d_pos ? ~0ULL : 0ULL;  // W -= lr d x^T: up where x d < 0
  const float std_f = static_cast<float>(c.std);
  const scalar_t* const by_dir[2][2] = {{sd, shd}, {su, shu}};
  const scalar_t sign[2] = {scalar_t(-1), scalar_t(1)};
  for (int64_t k = 0; k < cw; ++k) {
    const uint64_t up_bits = xpos[k] ^ flip, multi = twos[k];
    // column order (as the per-input loop it replaces): the stream's normals go to the same
    // pulses, so the result is the same to the bit
    for (uint64_t m = ones[k]; m; m &= m - 1) {
      const int b = __builtin_ctzll(m);
      const int64_t i = k * 64 + b;
      const bool up = (up_bits >> b) & 1;
      if ((multi >> b) & 1) {  // rare while BL management keeps BL small
        wr[i] = static_cast<scalar_t>(pulses<KIND>(
            c, double(wr[i]), static_cast<double>(__builtin_popcountll(xw[i] & dw)), up,
            double(su[i]), double(sd[i]), double(hi[i]), double(lo[i]), double(shu[i]),
            double(shd[i]), rng));
        continue;
      }
      // the step and shape of the pulse's direction by an indexed pointer: a branch on the
      // direction (a coin flip) would be mispredicted every other pulse
      const scalar_t scale = sign[up] * by_dir[up][0][i];
      const scalar_t shape = by_dir[up][1][i];
      if constexpr (std::is_same_v<scalar_t, float> &&
                    (KIND == kConstant || KIND == kLinear || KIND == kSoft)) {
        wr[i] = one_pulse_f<KIND>(std_f, c.mult_noise, wr[i], scale, hi[i], lo[i], shape, rng);
      } else {
        wr[i] = static_cast<scalar_t>(one_pulse<KIND>(c, double(wr[i]), 1.0, up, double(scale),
                                                      double(hi[i]), double(lo[i]),
                                                      double(shape), rng));
      }
    }
  }
}

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
  // BL <= 64 (one word per train): the x trains also as bit planes over the columns, plane t of
  // vector n holding bit t of every input's train, and the inputs' signs as bits, so that a row
  // finds its coincidences with a few word operations per set bit of its d train.
  const bool planes = stochastic && n_words == 1;
  const int64_t cw = (cols + 63) / 64;
  // Probabilities (and, for stochastic pulses, the trains) of every vector.
  std::vector<double> P(N * cols), Q(N * rows);
  std::vector<std::vector<int32_t>> active(N);  // per vector: the inputs that fire at all
  std::vector<uint64_t> xb, db, xpl, xpos;
  if (stochastic) {
    xb.assign(N * cols * n_words, 0);
    db.assign(N * rows * n_words, 0);
  }
  if (planes) {
    xpl.assign(N * max_bl * cw, 0);
    xpos.assign(N * cw, 0);
  }
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      if (bl[n] == 0) continue;
      Stream rx(seed, 1, tile_id, n), rd(seed, 2, tile_id, n);
      for (int64_t i = 0; i < cols; ++i) {
        double p = std::min(1.0, A[n] * std::abs(double(x[n * ldx + i])));
        if (u.res > 0) p = quantize(p, u.res, u.sto_round, &rx);
        if (pulse_type == kDetImplicit) p = quantize(p, u.x_res_implicit, false, nullptr);
        P[n * cols + i] = p;
        bool fires = p > 0;
        if (stochastic) {
          uint64_t* words = &xb[(n * cols + i) * n_words];
          draw_train(p, bl[n], words, n_words, rx);
          fires = std::any_of(words, words + n_words, [](uint64_t v) { return v != 0; });
        }
        if (!fires) continue;
        if (planes) {
          const uint64_t bit = 1ULL << (i & 63);
          for (uint64_t m = xb[n * cols + i]; m; m &= m - 1) {
            xpl[(n * max_bl + __builtin_ctzll(m)) * cw + (i >> 6)] |= bit;
          }
          if (x[n * ldx + i] > 0) xpos[n * cw + (i >> 6)] |= bit;
        } else {
          active[n].push_back(static_cast<int32_t>(i));
        }
      }
      for (int64_t j = 0; j < rows; ++j) {
        double q = std::min(1.0, B[n] * std::abs(double(d[n * ldd + j])));
        if (u.res > 0) q = quantize(q, u.res, u.sto_round, &rd);
        if (pulse_type == kDetImplicit) q = quantize(q, u.d_res_implicit, false, nullptr);
        Q[n * rows + j] = q;
        if (stochastic) draw_train(q, bl[n], &db[(n * rows + j) * n_words], n_words, rd);
      }
    }
  });
  const scalar_t *su = st[0], *sd = st[1], *hi = st[2], *lo = st[3], *shu = st[4], *shd = st[5];
  at::parallel_for(0, rows, 4, [&](int64_t j0, int64_t j1) {
    std::vector<uint64_t> ones(planes ? cw : 0), twos(planes ? cw : 0);
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
        if (planes) {
          row_planes<scalar_t, KIND>(c, dj[0], d_pos, &xpl[n * max_bl * cw], &xpos[n * cw], cw,
                                     &xb[n * cols], o, wr, st, ones.data(), twos.data(), rng);
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
