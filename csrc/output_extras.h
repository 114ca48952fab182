// The per-call state of two output-pass features of the forward driver (tile_driver.h):
// out_noise_std's fixed output-noise std per tile row, and the IR drop's input ramps and its two
// extra products per tile (|W| |x| and W (x ramp)). Semantics: runtime/reference.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "gemm.h"
#include "rng.h"
#include "tile_periphery.h"

namespace analog {
namespace driver {

using namespace periphery;  // Io, RowExtras

struct Plan {
  int64_t groups, out_g, in_g, n, n_in, n_out;
  std::vector<int64_t> in_sizes, out_sizes, in_off, out_off;
};

template <typename T>
class OutputExtras {
 public:
  OutputExtras(const Plan& p, const Io& io, int64_t max_out) : io_(io), max_out_(max_out) {
    ir_ = io.ir();
    if (ir_) {  // per input split: 1 - (1 - j / n)^2, as aihwkit computes it in T
      ramps_.resize(p.n_in);
      for (int64_t i = 0; i < p.n_in; ++i) {
        const int64_t n = p.in_sizes[i];
        ramps_[i].resize(n);
        for (int64_t j = 0; j < n; ++j) {
          const T q = T(1) - static_cast<T>(j) / static_cast<T>(n);
          ramps_[i][j] = T(1) - q * q;
        }
      }
    }
    if (io.out_noise_std > 0 && !io.is_perfect) column_noise(p.groups * p.n_in * p.n_out);
  }

  bool ir() const { return ir_; }

  // The IR drop's two products for `rows` DAC'd vectors xs of input split `split` (si columns,
  // as rows [r * si + k], or transposed [k * rows + r] when trans) against the tile's weights w
  // and |W| wa (row o at + o * ldw): currents |W| |x| into cbuf, W (x ramp) into zbuf (so
  // outputs per row); xa and xz are scratch of rows * si values.
  void aux_gemms(int64_t split, int64_t si, int64_t so, const T* xs, int64_t rows, bool trans,
                 const T* w, const T* wa, int64_t ldw, T* xa, T* xz, T* cbuf, T* zbuf) const {
    const T* ramp = ramps_[split].data();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < si; ++k) {
        const int64_t q = trans ? k * rows + r : r * si + k;
        xa[q] = std::abs(xs[q]);
        xz[q] = xs[q] * ramp[k];
      }
    const int64_t lda = trans ? rows : si;
    gemm_nt(rows, so, si, xa, lda, wa, ldw, cbuf, so, trans);
    gemm_nt(rows, so, si, xz, lda, w, ldw, zbuf, so, trans);
  }

  // Fill in e's IR-drop rows (cur, irz: the row's products) and column noise for one output row
  // of tile `tile` with si inputs.
  void fill(RowExtras<T>& e, uint32_t tile, int64_t si, const T* cur, const T* irz) const {
    if (ir_) {
      e.cur = cur;
      e.irz = irz;
      e.ir_scale = static_cast<T>(si) / static_cast<T>(io_.ir_drop_g_ratio);
    }
    if (!ostd_.empty()) e.ostd = ostd_.data() + tile * max_out_;
  }

 private:
  // out_noise_std: each tile row's output noise std |out_noise (1 + out_noise_std xi)|, xi
  // from Philox keyed by the chip seed (not the call's seed): one chip, the same columns.
  void column_noise(int64_t tiles) {
    ostd_.resize(tiles * max_out_);
    std::vector<float> z(max_out_ + 64);
    const RngKey chip = make_key(io_.chip_seed);
    const T on = static_cast<T>(io_.out_noise), sd = static_cast<T>(io_.out_noise_std);
    for (int64_t t = 0; t < tiles; ++t) {
      fill_normal(z.data(), max_out_, 0, static_cast<uint32_t>(t), kColumnNoise, chip);
      for (int64_t o = 0; o < max_out_; ++o)
        ostd_[t * max_out_ + o] = std::abs(on * (T(1) + sd * static_cast<T>(z[o])));
    }
  }

  const Io& io_;
  int64_t max_out_;
  bool ir_ = false;
  std::vector<T> ostd_;
  std::vector<std::vector<T>> ramps_;
};

}  // namespace driver
}  // namespace analog
