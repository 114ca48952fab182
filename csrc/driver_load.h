// The load stages of the forward driver (tile_driver.h), out of its class: batch_alpha (the
// batch-wide noise-management scale of AVERAGE_ABS_MAX), load_block_t and load_rows (input
// segments, noise management, DAC and the tile's GEMMs). tile_driver.h includes this file after
// its class.
#pragma once

#include "tile_driver.h"

namespace analog {
namespace driver {

// Phase 1 (AVERAGE_ABS_MAX): the batch mean of the per-vector abs-max, per (group, split).
template <typename T, typename Src, typename W, typename Y>
void TileDriver<T, Src, W, Y>::batch_alpha() {
  const int64_t G = p_.groups, N = p_.n, n_in = p_.n_in;
  std::vector<T> amax(static_cast<size_t>(G * n_in * N));
  at::parallel_for(0, N, 256, [&](int64_t b, int64_t e) {
    std::vector<T> scratch(src_.kDirect ? 0 : max_in_);
    for (int64_t v = b; v < e; ++v)
      for (int64_t gi = 0; gi < G * n_in; ++gi) {
        const int64_t len = p_.in_sizes[gi % n_in];
        const T* row = src_.row(v, (gi / n_in) * p_.in_g + p_.in_off[gi % n_in], len,
                                scratch.data());
        T m = 0;  // NaN sticks (as in the reference): a NaN makes the batch's scale NaN
        for (int64_t k = 0; k < len && !std::isnan(m); ++k) {
          const T a = std::abs(row[k]);
          m = (std::isnan(a) || a > m) ? a : m;
        }
        amax[gi * N + v] = m;
      }
  });
  mean_alpha_.resize(G * n_in);
  for (int64_t gi = 0; gi < G * n_in; ++gi) {
    double s = 0;
    for (int64_t v = 0; v < N; ++v) s += amax[gi * N + v];
    mean_alpha_[gi] = static_cast<T>(s / static_cast<double>(N));
  }
}

// Load (block transposed), noise management, DAC, GEMM: the GEMM covers every vector of the
// block (output row r is vector n0 + r). Returns the number of active vectors (ws.act).
template <typename T, typename Src, typename W, typename Y>
int64_t TileDriver<T, Src, W, Y>::load_block_t(Workspace& ws, const Task& k,
                                               const Split& s) {
  const int64_t m = k.m, si = s.si;
  T* xt = ws.xb.data();
  const bool absmax = !batch_nm_ && io_.nm_type == nm::ABS_MAX;
  src_.block_t(k.n0, m, s.xo, si, xt, absmax ? ws.ab.data() : nullptr);
  if (!absmax) {
    for (int64_t r = 0; r < m; ++r)
      ws.ab[r] = batch_nm_ ? mean_alpha_[s.gi] : segment_alpha(xt + r, si, io_, m);
  } else if (io_.nm_thres > 0) {
    for (int64_t r = 0; r < m; ++r) ws.ab[r] = std::min(ws.ab[r], static_cast<T>(io_.nm_thres));
  }
  for (int64_t r = 0; r < m; ++r) ws.ab[r] = nan_aware(ws.ab[r], xt + r, si, m);
  for (int64_t r = 0; r < m; ++r) {
    ws.ar[r] = dac_scale(ws.ab[r]);
    if (!skip_zero(k, s, r, ws.ab[r])) ws.act.push_back(r);
  }
  dac_block_t(xt, m, si, ws.ar.data(), ws.inv.data(), io_);
  if (io_.additive()) block_norm_t(xt, m, si, ws.norms.data());
  gemm_nt(m, k.so, si, xt, m, s.w, s.ldw, ws.ybuf.data(), k.so, true);
  if (pcm_) {
    for (int64_t q = 0; q < m * si; ++q) ws.xb2[q] = xt[q] * xt[q];
    gemm_nt(m, k.so, si, ws.xb2.data(), m, s.wa, s.ldw, ws.vbuf.data(), k.so, true);
  }
  if (ir_) aux_gemms(ws, s, k.so, xt, m, true);
  return static_cast<int64_t>(ws.act.size());
}

// Load, noise management and DAC vector by vector (keyed by vector and split: the same for
// every output split), then one GEMM over the active vectors (output row q is ws.act[q]).
template <typename T, typename Src, typename W, typename Y>
int64_t TileDriver<T, Src, W, Y>::load_rows(Workspace& ws, const Task& k,
                                            const Split& s) {
  const int64_t si = s.si;
  for (int64_t r = 0; r < k.m; ++r) {
    const int64_t v = k.n0 + r;
    if (io_.is_perfect) {
      if (!Src::kDirect) src_.row(v, s.xo, si, ws.xb.data() + r * si);
      ws.act.push_back(r);
      continue;
    }
    T* xq = ws.xb.data() + r * si;
    const OneHotDac* d = nullptr;  // the vector's DAC, when onehot_dac did it
    if constexpr (Src::kOneHot) {
      if (!pre_.empty()) d = &pre_[s.gi * p_.n + v];
    }
    const T* xv = d != nullptr ? nullptr : src_.row(v, s.xo, si, xq);
    const T a = d != nullptr ? d->a : nan_aware(batch_nm_ ? mean_alpha_[s.gi]
                                                          : segment_alpha(xv, si, io_), xv, si);
    ws.ab[r] = a;
    if (skip_zero(k, s, r, a)) continue;
    ws.act.push_back(r);
    if (d != nullptr && d->col != kDense) {  // one-hot (or zero) after the DAC
      ws.onehot[r] = d->col;
      ws.xk[r] = d->x;
      ws.norms[r] = d->norm;
      continue;
    }
    if (d != nullptr) xv = src_.row(v, s.xo, si, xq);
    dac_row(xv, xq, si, dac_scale(a), io_, key_, static_cast<uint32_t>(v),
            static_cast<uint32_t>(s.gi), 0, ws.nbuf.data(), ws.ubuf.data());
    if (io_.additive()) ws.norms[r] = row_norm(xq, si);
    if (pcm_)
      for (int64_t c = 0; c < si; ++c) ws.xb2[r * si + c] = xq[c] * xq[c];
    if constexpr (Src::kOneHot) {
      const int32_t c = ir_ ? kDense : sole_nonzero(xq, si);
      ws.onehot[r] = c;
      ws.xk[r] = c >= 0 ? xq[c] : T(0);
    }
  }
  if (io_.is_perfect) std::fill(ws.ab.begin(), ws.ab.end(), T(1));
  const int64_t na = static_cast<int64_t>(ws.act.size());
  int64_t nd = na;  // the dense vectors come first in ws.act
  if constexpr (Src::kOneHot) {
    if (io_.is_perfect) std::fill(ws.onehot.begin(), ws.onehot.end(), kDense);
    std::stable_partition(ws.act.begin(), ws.act.end(),
                          [&](int64_t r) { return ws.onehot[r] == kDense; });
    nd = 0;
    while (nd < na && ws.onehot[ws.act[nd]] == kDense) ++nd;
  }
  const T* a1 = ws.xb.data();
  const T* a2 = ws.xb2.data();
  int64_t lda = si;
  if constexpr (Src::kDirect) {
    if (io_.is_perfect) {  // the GEMM reads the input in place
      a1 = src_.row(k.n0, s.xo, si, nullptr);
      lda = src_.ld;
    }
  }
  if (nd < k.m) {  // gather the dense vectors
    ws.xr.resize(nd * si);
    ws.xr2.resize(pcm_ ? nd * si : 0);
    for (int64_t q = 0; q < nd; ++q) {
      std::copy_n(a1 + ws.act[q] * lda, si, ws.xr.data() + q * si);
      if (pcm_) std::copy_n(a2 + ws.act[q] * si, si, ws.xr2.data() + q * si);
    }
    a1 = ws.xr.data();
    a2 = ws.xr2.data();
  }
  gemm_nt(nd, k.so, si, a1, nd < k.m ? si : lda, s.w, s.ldw, ws.ybuf.data(), k.so);
  if (pcm_) gemm_nt(nd, k.so, si, a2, si, s.wa, s.ldw, ws.vbuf.data(), k.so);
  if (ir_) aux_gemms(ws, s, k.so, a1, nd, false);  // (with the IR drop, no vector is one-hot)
  if constexpr (Src::kOneHot) onehot_columns(ws, k, s, nd, na);
  return na;
}

}  // namespace driver
}  // namespace analog
