// The identity readout's stages of the forward driver (tile_driver.h), out of its class: the
// vectors of analog::tile_readout are the identity's rows, one-hot, so each reads one weight
// column. onehot_dac runs every vector's noise management and DAC once per input split (a task
// per output split would repeat them); onehot_columns writes the one-hot vectors' outputs as
// the tile's columns, transposed in blocks (transpose.h). The results are those of the
// vector-by-vector path bit for bit: the same keys, the same products x_k w_ok.
#pragma once

#include "tile_driver.h"
#include "transpose.h"

namespace analog {
namespace driver {

template <typename T, typename Src, typename W, typename Y>
void TileDriver<T, Src, W, Y>::onehot_dac() {
  const int64_t N = p_.n, GI = p_.groups * p_.n_in;
  pre_.resize(static_cast<size_t>(GI * N));
  at::parallel_for(0, N, 64, [&](int64_t b, int64_t e) {
    std::vector<T> xq(max_in_);
    std::vector<float> nb(max_in_ + 64), ub(max_in_ + 64);
    for (int64_t v = b; v < e; ++v)
      for (int64_t gi = 0; gi < GI; ++gi) {
        const int64_t i = gi % p_.n_in, si = p_.in_sizes[i];
        const T* xv = src_.row(v, (gi / p_.n_in) * p_.in_g + p_.in_off[i], si, xq.data());
        OneHotDac& d = pre_[gi * N + v];
        d.a = nan_aware(batch_nm_ ? mean_alpha_[gi] : segment_alpha(xv, si, io_), xv, si);
        dac_row(xv, xq.data(), si, dac_scale(d.a), io_, key_, static_cast<uint32_t>(v),
                static_cast<uint32_t>(gi), 0, nb.data(), ub.data());
        d.col = sole_nonzero(xq.data(), si);
        d.x = d.col >= 0 ? xq[d.col] : T(0);
        d.norm = io_.additive() ? row_norm(xq.data(), si) : T(0);
      }
  });
}

// Output row q (of ws.act[nd, na)) is x_k times the tile's column k: runs of vectors whose
// columns follow each other are transposed as one block, then each row is scaled.
template <typename T, typename Src, typename W, typename Y>
void TileDriver<T, Src, W, Y>::onehot_columns(Workspace& ws, const Task& k, const Split& s,
                                              int64_t nd, int64_t na) {
  const int64_t so = k.so;
  for (int64_t q = nd; q < na;) {
    const int32_t c = ws.onehot[ws.act[q]];
    T* yq = ws.ybuf.data() + q * so;
    T* vq = pcm_ ? ws.vbuf.data() + q * so : nullptr;
    if (c < 0) {
      std::fill(yq, yq + so, T(0));
      if (pcm_) std::fill(vq, vq + so, T(0));
      ++q;
      continue;
    }
    int64_t run = 1;
    while (q + run < na && ws.onehot[ws.act[q + run]] == c + run) ++run;
    transpose(s.w + c, s.ldw, so, run, yq, so);
    if (pcm_) transpose(s.wa + c, s.ldw, so, run, vq, so);
    for (int64_t j = 0; j < run; ++j) {
      const T xk = ws.xk[ws.act[q + j]];
      T* y = yq + j * so;
      for (int64_t o = 0; o < so; ++o) y[o] = xk * y[o];
      if (pcm_) {
        T* v = vq + j * so;
        for (int64_t o = 0; o < so; ++o) v[o] = (xk * xk) * v[o];
      }
    }
    q += run;
  }
}

}  // namespace driver
}  // namespace analog
