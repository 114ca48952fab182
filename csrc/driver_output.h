// The output stages of the forward driver (tile_driver.h), out of its class: output_pass (read
// and output noise, ADC, clip test, then rescale and accumulate) and bound_management (the
// vectors that clipped, again with the input halved). tile_driver.h includes this file after
// its class; including this one first works too (it includes tile_driver.h).
#pragma once

#include "tile_driver.h"

namespace analog {
namespace driver {

// Read and output noise, ADC, clip test; vectors that clipped go to ws.redo, the others are
// rescaled (alpha, output scales) into the partial sums.
template <typename T, typename Src, typename W, typename Y>
void TileDriver<T, Src, W, Y>::output_pass(Workspace& ws, const Task& k, const Split& s,
                                           int64_t na) {
  const T wn = static_cast<T>(io_.w_noise);
  ws.redo.clear();
  for (int64_t q = 0; q < na; ++q) {
    const int64_t r = ws.act[q], v = k.n0 + r, yq = block_ ? r : q;
    T* yr = ws.ybuf.data() + yq * k.so;
    bool* keep = mask_ ? mask_ + (s.gi * p_.n + v) * p_.out_g + k.oo : nullptr;
    const T a = ws.ab[r];
    bool hit = false;
    if (io_.is_perfect) {
      if (keep) std::fill(keep, keep + k.so, true);
    } else {
      hit = out_row(yr, extras(ws, s, k.so, yq, io_.additive() ? wn * ws.norms[r] : T(0)),
                    k.so, io_, key_, static_cast<uint32_t>(v), s.tile, 0, ws.nbuf.data(),
                    ws.ubuf.data(), keep);
    }
    if (hit && io_.bm_rounds > 0)
      ws.redo.push_back(v);
    else
      accumulate(k.yb + r * k.ldy, yr, k.so, dac_scale(a), s.sc, s.i == 0, a <= 0);
  }
}

// Bound management: redo only the vectors that clipped, input halved each round.
// ITERATIVE_WORST_CASE (aihwkit): round 1 at reduction 1 with the ABS_MAX_NP_SUM scale (under a
// noise management), then halving as ITERATIVE.
template <typename T, typename Src, typename W, typename Y>
void TileDriver<T, Src, W, Y>::bound_management(Workspace& ws, const Task& k,
                                                 const Split& s) {
  const int64_t si = s.si, so = k.so;
  const T wn = static_cast<T>(io_.w_noise);
  const bool worst = io_.bm_type == bm::ITERATIVE_WORST_CASE;
  T red = 1;
  for (int64_t round = 1; round <= io_.bm_rounds && !ws.redo.empty(); ++round) {
    if (!(worst && round == 1)) red *= 2;
    const int64_t nr = static_cast<int64_t>(ws.redo.size());
    ws.xr.resize(nr * si);
    if (io_.pcm()) ws.xr2.resize(nr * si);
    for (int64_t q = 0; q < nr; ++q) {
      T* xq = ws.xr.data() + q * si;
      const T* xv = src_.row(ws.redo[q], s.xo, si, xq);
      T& a = ws.ab[ws.redo[q] - k.n0];
      if (worst && round == 1 && io_.nm_type != nm::NONE) {
        Io np = io_;
        np.nm_type = nm::ABS_MAX_NP_SUM;
        a = segment_alpha(xv, si, np);
      }
      dac_row(xv, xq, si, (dac_scale(a)) * red, io_, key_,
              static_cast<uint32_t>(ws.redo[q]), static_cast<uint32_t>(s.gi), round,
              ws.nbuf.data(), ws.ubuf.data());
      if (io_.pcm())
        for (int64_t c = 0; c < si; ++c) ws.xr2[q * si + c] = xq[c] * xq[c];
    }
    gemm_nt(nr, so, si, ws.xr.data(), si, s.w, s.ldw, ws.ybuf.data(), so);
    if (io_.pcm())
      gemm_nt(nr, so, si, ws.xr2.data(), si, s.wa, s.ldw, ws.vbuf.data(), so);
    if (ir_) aux_gemms(ws, s, so, ws.xr.data(), nr, false);
    ws.next.clear();
    for (int64_t q = 0; q < nr; ++q) {
      const int64_t v = ws.redo[q];
      T* yr = ws.ybuf.data() + q * so;
      bool* keep = mask_ ? mask_ + (s.gi * p_.n + v) * p_.out_g + k.oo : nullptr;
      const T add = io_.additive() ? wn * row_norm(ws.xr.data() + q * si, si) : T(0);
      const bool hit = out_row(yr, extras(ws, s, so, q, add), so, io_, key_,
                               static_cast<uint32_t>(v), s.tile, round, ws.nbuf.data(),
                               ws.ubuf.data(), keep);
      const T a = ws.ab[v - k.n0];
      if (hit && round < io_.bm_rounds)
        ws.next.push_back(v);
      else
        accumulate(k.yb + (v - k.n0) * k.ldy, yr, so, (dac_scale(a)) * red, s.sc,
                   s.i == 0, a <= 0);
    }
    ws.redo.swap(ws.next);
  }
}

}  // namespace driver
}  // namespace analog
