// Where the input vectors of the tile driver (tile_driver.h) come from: rows of a dense matrix
// (analog::tile_forward), or the receptive fields of a zero-padded image (analog::tile_conv2d),
// gathered on the fly so no im2col buffer ever exists. row() hands out one segment of one vector
// (a pointer into x, or a copy in the caller's buffer); block_t() loads a segment of a block of
// vectors transposed (element-major), optionally with each vector's abs-max. X is the input's
// storage type: bfloat16 / float16 inputs are widened to T as they are loaded (widen.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "widen.h"

namespace analog {
namespace driver {

// kDirect: row() returns a pointer into the input (no copy); kBlockT: block_t() loads blocks
// transposed; kOneHot: the vectors are one-hot, so the driver reads one weight column per
// vector instead of a GEMM (identity readouts only: no other source pays for the test).
// (Half-precision rows are widened into the caller's buffer: kDirect only when X = T.)
template <typename T, typename X = T>
struct DenseRows {
  const X* x;
  int64_t ld;
  static constexpr bool kDirect = std::is_same_v<T, X>, kBlockT = false, kOneHot = false;
  const T* row(int64_t v, int64_t col, int64_t len, T* scratch) const {
    if constexpr (kDirect) {
      return x + v * ld + col;
    } else {
      widen(x + v * ld + col, scratch, len);
      return scratch;
    }
  }
  void block_t(int64_t, int64_t, int64_t, int64_t, T*, T*) const {}
};

// Vector v = (n, ho, wo) of an [N, C, H, W] image; its column (c, i, j) is
// x[n, c, ho * sh + i * dh - ph, wo * sw + j * dw - pw], or 0 in the padding.
template <typename T, typename X = T>
struct ConvRows {
  const X* x;
  int64_t C, H, W, Ho, Wo, sh, sw, ph, pw;
  std::vector<int64_t> chan, di, dj;  // per column: c * H * W, i * dh, j * dw

  ConvRows(const X* x_, int64_t C_, int64_t H_, int64_t W_, int64_t kh, int64_t kw, int64_t dh,
           int64_t dw, int64_t sh_, int64_t sw_, int64_t ph_, int64_t pw_)
      : x(x_), C(C_), H(H_), W(W_), sh(sh_), sw(sw_), ph(ph_), pw(pw_) {
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          chan.push_back(c * H * W);
          di.push_back(i * dh);
          dj.push_back(j * dw);
        }
  }

  static constexpr bool kDirect = false, kBlockT = true, kOneHot = false;

  const T* row(int64_t v, int64_t col, int64_t len, T* dst) const {
    const int64_t n = v / (Ho * Wo), rem = v % (Ho * Wo);
    const int64_t h0 = (rem / Wo) * sh - ph, w0 = (rem % Wo) * sw - pw;
    const X* img = x + n * C * H * W;
    for (int64_t k = 0; k < len; ++k) {
      const int64_t h = h0 + di[col + k], w = w0 + dj[col + k];
      dst[k] = (h >= 0 && h < H && w >= 0 && w < W) ? static_cast<T>(img[chan[col + k] + h * W + w])
                                                     : T(0);
    }
    return dst;
  }

  // Segment [col, col + len) of vectors v0 .. v0 + m - 1 into dst[k * m + r]; with amax, also
  // amax[r] = max_k |dst[k * m + r]|. The block splits into runs of vectors along one output
  // line, which read consecutive (stride sw) values of an image line: vector loads, not
  // gathers. Column by column over the runs, so one column reads a compact stretch of one
  // channel and the next column (the neighbouring kernel tap) finds it in L1; run by run over
  // the columns instead, every column jumps to another channel plane, and planes a power of
  // two apart all compete for the same cache sets.
  void block_t(int64_t v0, int64_t m, int64_t col, int64_t len, T* dst, T* amax) const {
    if (amax != nullptr) std::fill(amax, amax + m, T(0));
    Run runs[kMaxRuns];
    int64_t nr = 0;
    for (int64_t r = 0; r < m;) {
      const int64_t v = v0 + r, n = v / (Ho * Wo), rem = v % (Ho * Wo), wo = rem % Wo;
      const int64_t run = std::min(m - r, Wo - wo);
      runs[nr++] = {x + n * C * H * W, r, run, (rem / Wo) * sh - ph, wo * sw - pw};
      r += run;
      if (nr == kMaxRuns || r == m) {
        copy_runs(runs, nr, m, col, len, dst, amax);
        nr = 0;
      }
    }
  }

 private:
  struct Run {
    const X* img;
    int64_t r, run, h0, w0;  // first vector in the block, length, top-left input position
  };
  static constexpr int64_t kMaxRuns = 32;

  // (GCC would otherwise split the copy-and-max loop into a memmove call plus a max loop.)
  __attribute__((optimize("no-tree-loop-distribute-patterns"))) void copy_runs(
      const Run* runs, int64_t nr, int64_t ld, int64_t col, int64_t len, T* __restrict__ dst,
      T* __restrict__ amax) const {
    for (int64_t k = 0; k < len; ++k)
      for (int64_t u = 0; u < nr; ++u) {
        const Run& R = runs[u];
        const int64_t run = R.run, h = R.h0 + di[col + k], w = R.w0 + dj[col + k];
        T* __restrict__ d = dst + k * ld + R.r;
        // positions q in [lo, hi) read inside the image; the rest is padding
        const int64_t lo = h < 0 || h >= H ? run : std::min(run, w < 0 ? (-w + sw - 1) / sw : 0);
        const int64_t hi = lo >= run || w >= W ? lo : std::min(run, (W - 1 - w) / sw + 1);
        for (int64_t q = 0; q < lo; ++q) d[q] = T(0);
        for (int64_t q = hi; q < run; ++q) d[q] = T(0);
        if (lo >= hi) continue;
        const X* __restrict__ s = R.img + chan[col + k] + h * W + w;
        T* __restrict__ am = amax != nullptr ? amax + R.r : nullptr;
        if (sw == 1 && !std::is_same_v<T, X>) {  // half precision: widen the stretch first
          widen(s + lo, d + lo, hi - lo);
          if (am != nullptr)
            for (int64_t q = lo; q < hi; ++q) am[q] = std::max(am[q], std::abs(d[q]));
        } else if (am != nullptr) {
          if (sw == 1)
            for (int64_t q = lo; q < hi; ++q) am[q] = std::max(am[q], std::abs(d[q] = T(s[q])));
          else
            for (int64_t q = lo; q < hi; ++q)
              am[q] = std::max(am[q], std::abs(d[q] = T(s[q * sw])));
        } else if (sw == 1) {
          for (int64_t q = lo; q < hi; ++q) d[q] = T(s[q]);
        } else {
          for (int64_t q = lo; q < hi; ++q) d[q] = T(s[q * sw]);
        }
      }
  }
};

// Vector v of the identity readout (analog::tile_readout): e_v in every group's segment, the
// rows of eye(in_g) repeated over the groups.
template <typename T>
struct IdentityRows {
  int64_t in_g;
  static constexpr bool kDirect = false, kBlockT = false, kOneHot = true;
  const T* row(int64_t v, int64_t col, int64_t len, T* dst) const {
    std::fill(dst, dst + len, T(0));
    const int64_t k = v - col % in_g;
    if (k >= 0 && k < len) dst[k] = T(1);
    return dst;
  }
  void block_t(int64_t, int64_t, int64_t, int64_t, T*, T*) const {}
};

}  // namespace driver
}  // namespace analog
