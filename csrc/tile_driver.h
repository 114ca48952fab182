// The blocked driver of the analog forward's CPU kernels (semantics: runtime/reference.py),
// shared by analog::tile_forward (x holds the input vectors), analog::tile_conv2d (the vectors
// are the receptive fields of an image, gathered on the fly: no im2col buffer ever exists) and
// analog::tile_readout (the vectors are the identity's rows, one-hot).
//
// TileDriver below runs it stage by stage (the load stages: driver_load.h; the identity
// readout's: driver_onehot.h; the output stages: driver_output.h). Random numbers
// come from Philox keyed by (element, vector, tile, round, stream): reproducible per seed,
// independent of the number of threads, and the same for every row source.
//
// T is the compute type (float or double); W the weights' storage type: T, or bfloat16 /
// float16 with T = float, whose tile panels each task widens into its workspace (no float copy
// of the whole weight; the GEMMs and everything after run in float, as for float weights).
// Y is the output's type: T, or W (half precision), which each task rounds its block to once
// at the end (no float output and no copy of it in the caller). The weight may be a column
// slice of a wider matrix (row stride ldw >= in_g, as a readout of one input split reads it).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.h"
#include "output_extras.h"
#include "rng.h"
#include "row_sources.h"
#include "tile_periphery.h"
#include "widen.h"

namespace analog {
namespace driver {

using namespace periphery;  // Io, dac_row, out_row, accumulate (tile_periphery.h)

// The blocked forward of one call, stage by stage. Phase 1 (AVERAGE_ABS_MAX only):
// batch_alpha. Phase 2, one task per (group, output split, block of vectors), per input split:
//   load   load_block_t (receptive fields, transposed) or load_rows (per vector): the block's
//          segments, noise management, DAC, and the tile's GEMM (plus |W| x^2 for PCM noise,
//          |W| |x| and W (x ramp) for the IR drop: aux_gemms);
//          load_rows hands one-hot vectors (identity readouts) to onehot_columns instead,
//          whose DAC onehot_dac did once per vector and input split (driver_onehot.h);
//   output output_pass: noise, ADC, clip test, then rescale and accumulate, or queue the vector
//          for bound management;
//   redo   bound_management: the queued vectors again with the input halved, round by round
//          (ITERATIVE_WORST_CASE: first at reduction 1 with the ABS_MAX_NP_SUM scale);
// then finish_block: bias, and the NCHW store for convolutions, or (mean_abs: the readouts of
// drift compensation) only the sum of |y| per output and block of vectors: no y at all.
template <typename T, typename Src, typename W = T, typename Y = T>
class TileDriver {
 public:
  // y is [N, G * out_g] or, with image_positions = P > 0, [N / P, G * out_g, P] (NCHW): each
  // task then accumulates its block in a buffer and writes it out transposed at the end (as it
  // does, untransposed, for a half-precision y). Weight row o of group g: w + (g * out_g + o) *
  // ldw (wabs, when given, has the same layout).
  TileDriver(const Plan& p, const Io& io, RngKey key, const Src& src, const W* w, int64_t ldw,
             const T* wabs, const T* scales, const T* bias, Y* y, bool* mask,
             int64_t image_positions, bool mean_abs = false)
      : p_(p), io_(io), key_(key), src_(src), w_(w), ldw_(ldw), wabs_(wabs), scales_(scales),
        bias_(bias), y_(y), mask_(mask), P_(image_positions),
        max_in_(*std::max_element(p.in_sizes.begin(), p.in_sizes.end())),
        max_out_(*std::max_element(p.out_sizes.begin(), p.out_sizes.end())),
        ext_(p, io, max_out_) {
    batch_nm_ = !io.is_perfect && io.nm_type == nm::AVERAGE_ABS_MAX;
    pcm_ = io.pcm() && !io.is_perfect;
    ir_ = ext_.ir();
    // Receptive-field sources load whole blocks transposed when the DAC is deterministic.
    block_ = Src::kBlockT && !io.is_perfect && !(io.inp_step > 0 && io.inp_sto_round) &&
             io.inp_noise <= 0;
    // The block size depends on the shapes only (large blocks: BLAS packs each tile once per
    // block), so results do not depend on the thread count or on which thread runs a task.
    rb_ = 256;
    while (rb_ > 32 && p.groups * p.n_out * ((p.n + rb_ - 1) / rb_) < 4) rb_ /= 2;
    n_blocks_ = (p.n + rb_ - 1) / rb_;
    if (mean_abs) absum_.assign(static_cast<size_t>(n_blocks_ * p.groups * p.out_g), 0.0);
  }

  void run() {
    if (batch_nm_) batch_alpha();
    if constexpr (Src::kOneHot) {
      if (!io_.is_perfect && !ir_) onehot_dac();
    }
    // Threads take tasks from a shared counter, so a thread slowed down (a busy core, more
    // bound-management redos) does not hold the others up. Small problems run inline (no
    // thread wake-up for batch-1 latency).
    const int64_t n_tasks = p_.groups * p_.n_out * n_blocks_;
    const int64_t macs = p_.n * p_.groups * p_.in_g * p_.out_g;
    const int64_t workers =
        macs < (int64_t{1} << 18) ? 1 : std::min<int64_t>(at::get_num_threads(), n_tasks);
    std::atomic<int64_t> next_task{0};
    at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
      Workspace ws(*this);
      for (int64_t t = next_task++; t < n_tasks; t = next_task++) run_task(ws, t);
    });
  }

  // mean_abs: the mean |y| of every output over the vectors (after run()), into out [G * out_g].
  void abs_means(double* out) const {
    const int64_t ch = p_.groups * p_.out_g;
    std::fill(out, out + ch, 0.0);
    for (int64_t b = 0; b < n_blocks_; ++b)  // block by block: the same sums on any thread count
      for (int64_t o = 0; o < ch; ++o) out[o] += absum_[b * ch + o];
    for (int64_t o = 0; o < ch; ++o) out[o] /= static_cast<double>(p_.n);
  }

 private:
  // The only nonzero column of a DAC'd vector (-1: none) or kDense.
  static constexpr int32_t kDense = -2;

  // Whether a task accumulates its block in ws.acc (NCHW output, or an output in W), not in y.
  bool buffered() const { return P_ > 0 || !std::is_same_v<T, Y> || !absum_.empty(); }

  struct Workspace {  // per thread
    std::vector<T> ybuf, vbuf, xb, xb2, norms, ab, ar, inv, xr, xr2, acc, cbuf, zbuf, xa, xz, wp,
        wpa, xk;
    std::vector<int32_t> onehot;
    std::vector<float> nbuf, ubuf;
    std::vector<int64_t> act, redo, next;
    explicit Workspace(const TileDriver& d) {
      const int64_t rb = d.rb_, mi = d.max_in_, mo = d.max_out_;
      ybuf.resize(rb * mo);
      vbuf.resize(d.io_.pcm() ? rb * mo : 0);
      xb.resize(d.io_.is_perfect && Src::kDirect ? 0 : rb * mi);
      xb2.resize(d.io_.pcm() ? rb * mi : 0);
      for (auto* v : {&norms, &ab, &ar, &inv, &xk}) v->resize(rb);
      onehot.assign(rb, kDense);
      nbuf.resize(std::max(mi, mo) + 64);
      ubuf.resize(nbuf.size());
      acc.resize(d.buffered() ? rb * mo : 0);
      for (auto* v : {&cbuf, &zbuf}) v->resize(d.ir_ ? rb * mo : 0);
      for (auto* v : {&xa, &xz}) v->resize(d.ir_ ? rb * mi : 0);
      if constexpr (!std::is_same_v<T, W>) {
        wp.resize(mo * mi);
        wpa.resize(d.pcm_ || d.ir_ ? mo * mi : 0);
      }
    }
  };

  struct Task {  // one (group, output split, block of vectors)
    int64_t g, j, n0, m, so, oo, ldy;
    T* yb;  // the block's first output row (in y, or in the NCHW accumulation buffer)
  };

  struct Split {  // one input split of a task: one tile
    int64_t i, si, xo, gi, woff;
    uint32_t tile;
    const T* sc;  // the tile rows' output scales, or null
    const T* w = nullptr;   // the tile's weights (row o at w + o * ldw), and |W| for PCM noise
    const T* wa = nullptr;
    int64_t ldw = 0;
  };

  // The IR drop's two products for `rows` DAC'd vectors xs of split s (OutputExtras::aux_gemms).
  void aux_gemms(Workspace& ws, const Split& s, int64_t so, const T* xs, int64_t rows,
                 bool trans) const {
    ext_.aux_gemms(s.i, s.si, so, xs, rows, trans, s.w, s.wa, s.ldw, ws.xa.data(), ws.xz.data(),
                   ws.cbuf.data(), ws.zbuf.data());
  }

  // The output pass's extras of output row yq (its row in ybuf, vbuf, cbuf, zbuf).
  RowExtras<T> extras(const Workspace& ws, const Split& s, int64_t so, int64_t yq,
                      T add_std) const {
    RowExtras<T> e;
    if (pcm_) e.var = ws.vbuf.data() + yq * so;
    e.add_std = add_std;
    ext_.fill(e, s.tile, s.si, ir_ ? ws.cbuf.data() + yq * so : nullptr,
              ir_ ? ws.zbuf.data() + yq * so : nullptr);
    return e;
  }

  // Point the split at its tile: in place for weights stored as T, else the tile's panel
  // widened into the workspace (once per task and split), with |W| for PCM read
  // noise and the IR drop.
  void bind_tile(Workspace& ws, const Task& k, Split& s) const {
    if constexpr (std::is_same_v<T, W>) {
      s.w = w_ + s.woff;
      s.wa = wabs_ != nullptr ? wabs_ + s.woff : nullptr;
      s.ldw = ldw_;
    } else {
      T* wp = ws.wp.data();
      for (int64_t o = 0; o < k.so; ++o) widen(w_ + s.woff + o * ldw_, wp + o * s.si, s.si);
      if (pcm_ || ir_)
        for (int64_t q = 0; q < k.so * s.si; ++q) ws.wpa[q] = std::abs(wp[q]);
      s.w = wp;
      s.wa = pcm_ || ir_ ? ws.wpa.data() : nullptr;
      s.ldw = s.si;
    }
  }

  // Phase 1 (AVERAGE_ABS_MAX): the batch mean of the per-vector abs-max, per (group, split).
  void batch_alpha();

  void run_task(Workspace& ws, int64_t t) {
    Task k;
    k.g = t / (p_.n_out * n_blocks_);
    k.j = (t / n_blocks_) % p_.n_out;
    k.n0 = (t % n_blocks_) * rb_;
    k.m = std::min(p_.n, k.n0 + rb_) - k.n0;
    k.so = p_.out_sizes[k.j];
    k.oo = p_.out_off[k.j];
    k.ldy = buffered() ? k.so : p_.groups * p_.out_g;
    if constexpr (std::is_same_v<T, Y>)
      k.yb = buffered() ? ws.acc.data() : y_ + k.n0 * k.ldy + k.g * p_.out_g + k.oo;
    else
      k.yb = ws.acc.data();
    for (int64_t i = 0; i < p_.n_in; ++i) {
      const int64_t gi = k.g * p_.n_in + i;
      Split s{i, p_.in_sizes[i], k.g * p_.in_g + p_.in_off[i], gi,
              (k.g * p_.out_g + k.oo) * ldw_ + p_.in_off[i],
              static_cast<uint32_t>(gi * p_.n_out + k.j),
              scales_ ? scales_ + gi * p_.out_g + k.oo : nullptr};
      bind_tile(ws, k, s);
      // Vectors with alpha = 0 give 0: without a mask to fill, they skip the output pass (and,
      // per vector, the GEMM).
      ws.act.clear();
      int64_t na = 0;
      if constexpr (Src::kBlockT) {
        if (block_) na = load_block_t(ws, k, s);
      }
      if (!block_) na = load_rows(ws, k, s);
      output_pass(ws, k, s, na);
      bound_management(ws, k, s);
    }
    finish_block(k);
  }

  // The zero-vector shortcut (alpha <= 0, no mask to fill): the vector's output is 0.
  bool skip_zero(const Task& k, const Split& s, int64_t r, T a) const {
    if (mask_ != nullptr || !(a <= 0)) return false;  // a NaN scale is not a zero vector
    if (s.i == 0) std::fill(k.yb + r * k.ldy, k.yb + r * k.ldy + k.so, T(0));
    return true;
  }

  // The load stages (driver_load.h): load_block_t (receptive fields, the block transposed) or
  // load_rows (vector by vector); each returns the number of active vectors (ws.act).
  int64_t load_block_t(Workspace& ws, const Task& k, const Split& s);
  int64_t load_rows(Workspace& ws, const Task& k, const Split& s);

  // The identity readout's stages (driver_onehot.h): every vector's DAC once per input split,
  // and the one-hot vectors' outputs as the tile's columns.
  struct OneHotDac {
    T a, x, norm;  // noise-management scale, the nonzero value, the row norm
    int32_t col;   // its column, -1 (none) or kDense (the DAC left the vector dense)
  };
  void onehot_dac();
  void onehot_columns(Workspace& ws, const Task& k, const Split& s, int64_t nd, int64_t na);

  // The output stages (driver_output.h): output_pass, then bound_management for the
  // vectors that clipped.
  void output_pass(Workspace& ws, const Task& k, const Split& s, int64_t na);
  void bound_management(Workspace& ws, const Task& k, const Split& s);

  // The digital bias, and the store of a buffered block: into NCHW for convolutions, else
  // row by row (both rounded to Y once, as Tensor.to(dtype)).
  void finish_block(const Task& k) {
    const int64_t ch = p_.groups * p_.out_g;
    if (!absum_.empty()) {  // mean_abs: |y| as y would hold it (rounded to Y), summed per output
      double* acc = absum_.data() + (k.n0 / rb_) * ch + k.g * p_.out_g + k.oo;
      for (int64_t r = 0; r < k.m; ++r)
        for (int64_t o = 0; o < k.so; ++o)
          acc[o] += std::abs(static_cast<double>(static_cast<Y>(k.yb[r * k.so + o])));
      return;
    }
    if (bias_ != nullptr)
      for (int64_t r = 0; r < k.m; ++r)
        for (int64_t o = 0; o < k.so; ++o) k.yb[r * k.ldy + o] += bias_[k.g * p_.out_g + k.oo + o];
    if (P_ == 0 && buffered())
      for (int64_t r = 0; r < k.m; ++r)
        narrow(k.yb + r * k.so, y_ + (k.n0 + r) * ch + k.g * p_.out_g + k.oo, k.so);
    for (int64_t r = 0; r < k.m && P_ > 0;) {  // NCHW: one contiguous run per image and channel
      const int64_t v = k.n0 + r, pos = v % P_, run = std::min(k.m - r, P_ - pos);
      Y* dst = y_ + ((v / P_) * ch + k.g * p_.out_g + k.oo) * P_ + pos;
      // Channel by channel: contiguous writes; the run's block rows stay in L1 across
      // channels (writing all channels per position instead strides by P, which for
      // power-of-two image sizes maps every store to one cache set).
      for (int64_t o = 0; o < k.so; ++o)
        for (int64_t q = 0; q < run; ++q)
          dst[o * P_ + q] = static_cast<Y>(k.yb[(r + q) * k.so + o]);
      r += run;
    }
  }

  const Plan& p_;
  const Io& io_;
  const RngKey key_;
  const Src& src_;
  const W* w_;
  const int64_t ldw_;
  const T *wabs_, *scales_, *bias_;
  Y* y_;
  bool* mask_;
  const int64_t P_;
  int64_t max_in_ = 0, max_out_ = 0;
  OutputExtras<T> ext_;  // out_noise_std and the IR drop
  int64_t rb_ = 256, n_blocks_ = 0;
  bool batch_nm_ = false, pcm_ = false, block_ = false, ir_ = false;
  std::vector<T> mean_alpha_;
  std::vector<OneHotDac> pre_;  // [G * n_in, N] (onehot_dac), else empty
  std::vector<double> absum_;   // mean_abs: [n_blocks, G * out_g] sums of |y|, else empty
};

// The analog forward of the vectors of src (see TileDriver).
template <typename T, typename Src, typename W = T, typename Y = T>
void forward_impl(const Plan& p, const Io& io, RngKey key, const Src& src, const W* w,
                  int64_t ldw, const T* wabs, const T* scales, const T* bias, Y* y, bool* mask,
                  int64_t image_positions = 0) {
  TileDriver<T, Src, W, Y>(p, io, key, src, w, ldw, wabs, scales, bias, y, mask,
                           image_positions)
      .run();
}

}  // namespace driver
}  // namespace analog

// (after the class: the out-of-class definitions of its stages)
#include "driver_load.h"
#include "driver_onehot.h"
#include "driver_output.h"
