// What the fused transfer kernels (csrc/transfer_update.cpp: c-TTv2, csrc/agad_update.cpp: AGAD)
// share: their transfer parameters, the serial prologue of a tile (running maxima, learning
// rates, chopped copies of x and d, the column schedule and the choppers: nothing there depends
// on the weights, so it runs before the row-parallel update), the one-hot read of A and the
// pulsed write of C. Semantics: runtime/transfer.py and runtime/agad.py.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pulse_device.h"
#include "pulse_update.h"
#include "tile_periphery.h"

namespace analog {
namespace pulsed {

// transfer_params (runtime/transfer.py TRANSFER_FIELDS), named.
struct TransferParams {
  bool in_mbatch, scale_fast, scale_transfer, auto_scale, correct, forget, no_buffer,
      chop_random;
  double every_f, fast_lr, lr_transfer, auto_mom, buffer_gran, auto_gran, step, momentum,
      in_chop_prob, out_chop_prob;
};

inline TransferParams transfer_params(const char* op, at::ArrayRef<double> tp) {
  TORCH_CHECK(tp.size() == 18, op, ": expected 18 transfer params");
  return {tp[0] != 0, tp[3] != 0, tp[5] != 0, tp[6] != 0, tp[10] != 0, tp[13] != 0,
          tp[14] != 0, tp[16] != 0, tp[1], tp[2], tp[4], tp[7], tp[8], tp[9], tp[11],
          tp[12], tp[15], tp[17]};
}

inline int64_t every_of(bool in_mbatch, double every, int64_t batch) {
  if (in_mbatch) return std::max<int64_t>(static_cast<int64_t>(std::ceil(every * batch)), 0);
  return std::max<int64_t>(static_cast<int64_t>(std::floor(every + 0.5)), 0);
}

inline double ema(double m, double v, int64_t batch, double momentum) {
  if (m <= 0) return v;
  if (v <= 0) return m;
  const double tau = (1.0 - momentum) / static_cast<double>(batch);
  return (1.0 - tau) * m + tau * v;
}

// AGAD's schedule (runtime/agad.py): regular chopper periods of n_samples reads, the reference
// reset after a flip (switched: per column), the write only after n_samples sweeps.
struct AgadRule {
  int64_t n_samples;
  bool correct_accumulation;
  int8_t* switched;  // [cols] of this tile
};

// A tile's prologue, per vector n: its learning rate, the chopped x and d, the output choppers
// it saw; for a vector followed by a read: the column, its scale, the column's input chopper;
// AGAD also: whether the read resets the reference (reset) and may write C (write).
struct Schedule {
  std::vector<double> lrs, scales, xs, ds;
  std::vector<int64_t> col;
  std::vector<int8_t> in_read, out_snap, reset, write;
};

// The prologue of one tile (rows x cols at x[:, c0:], d[:, r0:] of group g; ic, oc: its
// choppers; ts: slice, sweeps, m_x, m_d, updated). agad == nullptr: c-TTv2.
inline void schedule_tile(const TransferParams& p, const DeviceCfg& ca, const DeviceCfg& cc,
                          const UpdateCfg& u, double lr, int64_t every, const double* xp,
                          const double* dp, int64_t ldx, int64_t ldd, int64_t N, int64_t rows,
                          int64_t cols, int64_t counter, int8_t* ic, int8_t* oc, double* ts,
                          Stream& prng, const AgadRule* agad, Schedule* s) {
  int64_t slice = static_cast<int64_t>(ts[0]), sweeps = static_cast<int64_t>(ts[1]);
  double m_x = ts[2], m_d = ts[3];
  s->lrs.assign(N, 0.0);
  s->scales.assign(N, 0.0);
  s->xs.assign(N * cols, 0.0);
  s->ds.assign(N * rows, 0.0);
  s->col.assign(N, -1);
  s->in_read.assign(N, 0);
  s->out_snap.assign(N * rows, 0);
  s->reset.assign(agad ? N : 0, 0);
  s->write.assign(agad ? N : 0, 0);
  for (int64_t n = 0; n < N; ++n) {
    const double* xv = xp + n * ldx;
    const double* dv = dp + n * ldd;
    if (p.auto_scale) {
      double xa = 0, da = 0;
      for (int64_t c = 0; c < cols; ++c) xa = std::max(xa, std::abs(xv[c]));
      for (int64_t r = 0; r < rows; ++r) da = std::max(da, std::abs(dv[r]));
      m_x = ema(m_x, xa, N, p.auto_mom);
      m_d = ema(m_d, da, N, p.auto_mom);
    }
    double c_lr;
    if (p.auto_scale && p.fast_lr > 0) {
      c_lr = p.fast_lr * u.desired_bl * ca.dw_min;
      if (m_x > 0 && m_d > 0) c_lr /= m_x * m_d;
      if (p.scale_fast) c_lr *= lr;
    } else if (p.fast_lr > 0) {
      c_lr = p.scale_fast ? p.fast_lr * lr : p.fast_lr;
    } else {
      c_lr = lr;
    }
    s->lrs[n] = c_lr;
    for (int64_t c = 0; c < cols; ++c) s->xs[n * cols + c] = ic[c] ? -xv[c] : xv[c];
    for (int64_t r = 0; r < rows; ++r) {
      s->ds[n * rows + r] = oc[r] ? -dv[r] : dv[r];
      s->out_snap[n * rows + r] = oc[r];
    }
    ++counter;
    if (every <= 0 || counter % every != 0) continue;
    const int64_t k = slice;
    s->col[n] = k;
    s->in_read[n] = ic[k];
    const double lr_t = p.lr_transfer * (p.scale_transfer ? lr : 1.0);
    double bg = p.buffer_gran > 0 ? p.buffer_gran : 1.0;
    bg *= p.auto_gran > 0 ? ca.dw_min * p.auto_gran / (cols * std::abs(p.every_f)) : ca.dw_min;
    s->scales[n] = p.correct ? std::abs(lr_t) / c_lr / (bg * cc.dw_min / ca.dw_min)
                             : std::abs(lr_t) / bg;
    if (agad) {
      const int64_t sample = sweeps % agad->n_samples + 1;
      if (agad->correct_accumulation) {
        s->scales[n] /= std::min(static_cast<double>(sample), 1.0 / ca.dw_min);
      }
      s->reset[n] = agad->switched[k];
      agad->switched[k] = 0;
      s->write[n] = sweeps > agad->n_samples;
      bool flip = sample == agad->n_samples;
      if (p.chop_random && prng.uniform() < p.in_chop_prob) flip = true;
      if (flip) {
        ic[k] = static_cast<int8_t>(1 - ic[k]);
        agad->switched[k] = 1;
      }
    } else if (p.in_chop_prob > 0) {
      bool flip;
      if (p.chop_random) {
        flip = prng.uniform() < p.in_chop_prob;
      } else {
        const int64_t period =
            std::max<int64_t>(static_cast<int64_t>(std::ceil(1.0 / p.in_chop_prob)), 2);
        flip = sweeps % period + 1 == period;
      }
      if (flip) ic[k] = static_cast<int8_t>(1 - ic[k]);
    }
    if (k == cols - 1) {
      if (!agad && p.out_chop_prob > 0) {  // AGAD's output choppers never flip
        for (int64_t r = 0; r < rows; ++r) {
          if (prng.uniform() < p.out_chop_prob) oc[r] = static_cast<int8_t>(1 - oc[r]);
        }
      }
      ++sweeps;
    }
    slice = (k + 1) % cols;
  }
  ts[0] = static_cast<double>(slice);
  ts[1] = static_cast<double>(sweeps);
  ts[2] = m_x;
  ts[3] = m_d;
}

// The transfer read of A[j, k] = a: a one-hot forward, noise and bound management off (`one`:
// the input 1 after the DAC).
inline double read_one(const periphery::Io& io, double one, double a, Stream& rng) {
  if (io.is_perfect) return a;
  double v = a * one;
  if (io.additive()) v += io.w_noise * std::abs(one) * rng.normal();
  else if (io.pcm()) v += io.w_noise * std::sqrt(one * one * std::abs(a)) * rng.normal();
  if (io.out_noise > 0) v += io.out_noise * rng.normal();
  if (io.out_step > 0) {
    v = io.out_sto_round ? std::floor(v / io.out_step + rng.uniform()) * io.out_step
                         : std::nearbyint(v / io.out_step) * io.out_step;
  }
  if (io.out_bound > 0) v = std::min(io.out_bound, std::max(-io.out_bound, v));
  return v;
}

// The input 1 of the transfer read after the DAC.
inline double read_one_input(const periphery::Io& io) {
  return io.inp_step <= 0
      ? 1.0 : std::min(io.inp_bound, std::max(-io.inp_bound,
                                              std::nearbyint(1.0 / io.inp_step) * io.inp_step));
}

// The write C -= lr (-steps) e_k^T of one cross-point: `steps` up (> 0) or down pulses by the
// transfer update (x = 1, |steps| <= desired_bl, so its BL, A and B are constants).
struct SlowWrite {
  const DeviceCfg* dc;
  const UpdateCfg* tu;
  int64_t t_pulse;
  double write_lr;
  int64_t t_bl = 1;
  double t_a = 1.0, t_b = 1.0;

  SlowWrite(const DeviceCfg* dc_, const UpdateCfg* tu_, int64_t t_pulse_, double step)
      : dc(dc_), tu(tu_), t_pulse(t_pulse_), write_lr(step * dc_->dw_min) {
    if (dc->kind != kIdeal) bit_line(*tu, write_lr, dc->dw_min, 1.0, 1.0, &t_bl, &t_a, &t_b);
  }

  // C[e] (slow) after the write of `steps` (!= 0); sst: the slow devices' parameters.
  template <typename scalar_t>
  inline void operator()(scalar_t* slow, const scalar_t* const* sst, int64_t e, double steps,
                         Stream& rng) const {
    const bool up = steps > 0;
    double w = double(slow[e]);
    if (dc->kind == kIdeal || t_pulse == kNone || t_pulse == kNoneWithDevice) {
      w += write_lr * steps;
      if (dc->kind != kIdeal && t_pulse == kNoneWithDevice) {
        w = std::min(double(sst[2][e]), std::max(double(sst[3][e]), w));
      }
      slow[e] = static_cast<scalar_t>(w);
      return;
    }
    double p = quantize(std::min(1.0, t_a), tu->res, tu->sto_round, &rng);
    double q = quantize(std::min(1.0, t_b * std::abs(steps)), tu->res, tu->sto_round, &rng);
    double count;
    if (t_pulse == kMeanCount) {
      count = t_bl * p * q;
    } else if (t_pulse == kDetImplicit) {
      p = quantize(p, tu->x_res_implicit, false, nullptr);
      q = quantize(q, tu->d_res_implicit, false, nullptr);
      count = std::nearbyint(t_bl * p * q);
    } else {
      int64_t c = 0;
      for (int64_t t = 0; t < t_bl; ++t) c += (rng.uniform() < p) & (rng.uniform() < q);
      count = static_cast<double>(c);
    }
    if (count <= 0) return;
    slow[e] = static_cast<scalar_t>(pulses_any(*dc, w, count, up, double(sst[0][e]),
                                               double(sst[1][e]), double(sst[2][e]),
                                               double(sst[3][e]), double(sst[4][e]),
                                               double(sst[5][e]), rng));
  }
};

// The checks both ops make on the arrays they share with the same layout.
inline void check_transfer_arrays(const char* op, const at::Tensor& fast,
                                  std::initializer_list<const at::Tensor*> same,
                                  const at::Tensor& in_chop, const at::Tensor& out_chop,
                                  const at::Tensor& tile_state, at::TensorList fast_state,
                                  at::TensorList slow_state, const at::Tensor& x,
                                  const at::Tensor& d, at::IntArrayRef in_sizes,
                                  at::IntArrayRef out_sizes) {
  for (const auto* t : same) {
    TORCH_CHECK(t->dim() == 3 && t->is_contiguous() && t->sizes() == fast.sizes() &&
                    t->scalar_type() == fast.scalar_type(),
                op, ": the weight arrays and buffers must be contiguous [G, out_g, in_g] "
                "tensors of one dtype");
  }
  TORCH_CHECK(in_chop.scalar_type() == at::kChar && out_chop.scalar_type() == at::kChar &&
                  in_chop.is_contiguous() && out_chop.is_contiguous(),
              op, ": the choppers must be contiguous int8 tensors");
  TORCH_CHECK(tile_state.scalar_type() == at::kDouble && tile_state.is_contiguous(),
              op, ": tile_state must be a contiguous float64 tensor");
  TORCH_CHECK(fast_state.size() == 6 && slow_state.size() == 6,
              op, ": expected 6 state tensors per array");
  for (int k = 0; k < 6; ++k) {
    TORCH_CHECK(fast_state[k].sizes() == fast.sizes() && slow_state[k].sizes() == fast.sizes(),
                op, ": state tensors must have the weight's shape");
  }
  const int64_t G = fast.size(0), out_g = fast.size(1), in_g = fast.size(2);
  TORCH_CHECK(x.dim() == 2 && x.size(1) == G * in_g && d.dim() == 2 &&
                  d.size(0) == x.size(0) && d.size(1) == G * out_g,
              op, ": x must be [N, G * in_g] and d [N, G * out_g]");
  const int64_t n_in = in_sizes.size(), n_out = out_sizes.size();
  TORCH_CHECK(in_chop.numel() == G * n_out * in_g && out_chop.numel() == G * n_in * out_g &&
                  tile_state.numel() == G * n_in * n_out * 4,
              op, ": chopper or tile_state shape does not match the plan");
}

// fn(g, i, j, tile_id, r0, c0, rows, cols) for every tile of the plan, in the kernels' order.
template <typename Fn>
inline void for_each_tile(int64_t G, at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
                          Fn&& fn) {
  int64_t tile_id = 0;
  for (int64_t g = 0; g < G; ++g) {
    int64_t c0 = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(in_sizes.size()); ++i) {
      int64_t r0 = 0;
      for (int64_t j = 0; j < static_cast<int64_t>(out_sizes.size()); ++j, ++tile_id) {
        fn(g, i, j, tile_id, r0, c0, out_sizes[j], in_sizes[i]);
        r0 += out_sizes[j];
      }
      c0 += in_sizes[i];
    }
  }
}


// The six per-device state tensors of one array in the fast array's dtype.
inline std::vector<at::Tensor> state_as(at::TensorList state, at::ScalarType dtype) {
  std::vector<at::Tensor> out;
  for (int k = 0; k < 6; ++k) out.push_back(state[k].to(dtype).contiguous());
  return out;
}

// The chopped fast update of one tile (the prologue's x and d copies and learning rates), with
// `hook` run per row after each vector, for the fast device's kind.
template <typename scalar_t, typename Hook>
inline void chopped_fast_update(const char* op, int64_t kind, const DeviceCfg& ca,
                                const UpdateCfg& u, int64_t pulse_type, const Schedule& sch,
                                int64_t seed, int64_t tile_id, scalar_t* w,
                                const scalar_t* const* fp, int64_t ld, int64_t N, int64_t rows,
                                int64_t cols, const Hook& hook) {
  std::vector<scalar_t> xt(sch.xs.begin(), sch.xs.end()), dt(sch.ds.begin(), sch.ds.end());
#define ANALOG_CHOPPED_CASE(K)                                                                 \
  case K:                                                                                      \
    update_one_tile<scalar_t, K, Hook>(ca, u, pulse_type, sch.lrs.data(), seed, tile_id, w, fp, \
                                       ld, xt.data(), cols, dt.data(), rows, N, rows, cols,    \
                                       hook);                                                  \
    break;
  switch (kind) {
    ANALOG_CHOPPED_CASE(kConstant)
    ANALOG_CHOPPED_CASE(kLinear)
    ANALOG_CHOPPED_CASE(kSoft)
    ANALOG_CHOPPED_CASE(kExp)
    ANALOG_CHOPPED_CASE(kPow)
    ANALOG_CHOPPED_CASE(kPiecewise)
    default:
      TORCH_CHECK(false, op, ": unknown device kind ", kind);
  }
#undef ANALOG_CHOPPED_CASE
}

}  // namespace pulsed
}  // namespace analog
