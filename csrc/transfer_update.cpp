// Fused CPU kernel of analog::transfer_update: the c-TTv2 update of a unit-cell tile array
// (runtime/ops.py; the semantics are those of the reference kernel runtime/transfer.py).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "pulse_update.h"
#include "tile_kernels.h"
#include "tile_periphery.h"

namespace analog {
namespace {

using namespace pulsed;  // NOLINT(build/namespaces): the kernel's own helpers

// The c-TTv2 transfer of one tile, run per row after each vector (runtime/transfer.py): the
// read of column col[n] of A (row j), the buffer, and the pulses on C[j, col[n]].
template <typename scalar_t>
struct ChopHook {
  const int64_t* col;          // [N]: the column read after vector n, or -1
  const double* scale;         // [N]: lr_scale of that read
  const int8_t* in_chop;       // [N]: the read column's input chopper
  const int8_t* out_snap;      // [N * rows]: output choppers at vector n
  int64_t rows;
  scalar_t* slow;              // C, H and the slow devices' parameters (ld = row stride)
  scalar_t* buf;
  const scalar_t* const* sst;
  int64_t ld;
  const DeviceCfg* dc;
  const UpdateCfg* tu;
  int64_t t_pulse;
  double write_lr, max_steps, momentum, one;
  bool forget, no_buffer;
  periphery::Io io;
  int64_t t_bl;
  double t_a, t_b;

  inline void operator()(int64_t j, int64_t n, scalar_t* wr, Stream& rng) const {
    const int64_t k = col[n];
    if (k < 0) return;
    const int64_t e = j * ld + k;
    // the read: a one-hot forward, noise and bound management off
    const double a = double(wr[k]);
    double v = a;
    if (!io.is_perfect) {
      v = a * one;
      if (io.additive()) v += io.w_noise * std::abs(one) * rng.normal();
      else if (io.pcm()) v += io.w_noise * std::sqrt(one * one * std::abs(a)) * rng.normal();
      if (io.out_noise > 0) v += io.out_noise * rng.normal();
      if (io.out_step > 0) {
        v = io.out_sto_round ? std::floor(v / io.out_step + rng.uniform()) * io.out_step
                             : std::nearbyint(v / io.out_step) * io.out_step;
      }
      if (io.out_bound > 0) v = std::min(io.out_bound, std::max(-io.out_bound, v));
    }
    v *= scale[n];
    if (in_chop[n] != out_snap[n * rows + j]) v = -v;
    double omega = no_buffer ? v : double(buf[e]) + v;
    double steps = 0.0;
    if (std::abs(omega) >= 1.0) {
      steps = std::max(-max_steps, std::min(max_steps, std::trunc(omega)));
      omega = forget ? omega * momentum : omega - (1.0 - momentum) * steps;
    }
    buf[e] = static_cast<scalar_t>(omega);
    if (steps == 0.0) return;
    // the write C -= lr (-steps) e_k^T: `steps` up (> 0) or down pulses by the transfer update
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

}  // namespace

#define ANALOG_TRANSFER_CASE(K)                                                              \
  case K:                                                                                    \
    update_one_tile<scalar_t, K, ChopHook<scalar_t>>(ca, u, pulse_type, lrs.data(), seed,   \
                                           tile_id, w, fp, in_g, xt.data(), cols, \
                                           dt.data(), rows, N, rows, cols, hook); \
    break;

// Fused c-TTv2 update (analog::transfer_update; semantics: runtime/transfer.py). Per tile: a
// serial prologue over the vectors (running maxima, learning rates, the transfer schedule and
// the choppers: nothing there depends on the weights), then the chopped fast update in
// parallel over rows with each row's transfers inline (a one-hot read touches only its row).
void transfer_update_cpu(const at::Tensor& fast, const at::Tensor& slow, const at::Tensor& buffer,
                         const at::Tensor& in_chop, const at::Tensor& out_chop,
                         const at::Tensor& tile_state, at::TensorList fast_state,
                         at::TensorList slow_state, const at::Tensor& x_in,
                         const at::Tensor& d_in, double lr, const at::Tensor& seed_t,
                         int64_t counter, at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
                         int64_t fast_kind, at::ArrayRef<double> fast_params, int64_t slow_kind,
                         at::ArrayRef<double> slow_params, int64_t pulse_type,
                         at::ArrayRef<double> update_params, int64_t t_pulse_type,
                         at::ArrayRef<double> t_update_params, at::ArrayRef<double> io_f,
                         at::ArrayRef<int64_t> io_i, at::ArrayRef<double> tp) {
  for (const auto* t : {&fast, &slow, &buffer}) {
    TORCH_CHECK(t->dim() == 3 && t->is_contiguous() && t->sizes() == fast.sizes() &&
                    t->scalar_type() == fast.scalar_type(),
                "analog::transfer_update: fast, slow and buffer must be contiguous [G, out_g, "
                "in_g] tensors of one dtype");
  }
  TORCH_CHECK(in_chop.scalar_type() == at::kChar && out_chop.scalar_type() == at::kChar &&
                  in_chop.is_contiguous() && out_chop.is_contiguous(),
              "analog::transfer_update: the choppers must be contiguous int8 tensors");
  TORCH_CHECK(tile_state.scalar_type() == at::kDouble && tile_state.is_contiguous(),
              "analog::transfer_update: tile_state must be a contiguous float64 tensor");
  TORCH_CHECK(fast_state.size() == 6 && slow_state.size() == 6,
              "analog::transfer_update: expected 6 state tensors per array");
  TORCH_CHECK(tp.size() == 18, "analog::transfer_update: expected 18 transfer params");
  TORCH_CHECK(fast_kind != kIdeal, "analog::transfer_update: the fast device must be pulsed");
  const int64_t G = fast.size(0), out_g = fast.size(1), in_g = fast.size(2);
  const int64_t N = x_in.size(0);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g && d_in.dim() == 2 &&
                  d_in.size(0) == N && d_in.size(1) == G * out_g,
              "analog::transfer_update: x must be [N, G * in_g] and d [N, G * out_g]");
  const int64_t n_in = in_sizes.size(), n_out = out_sizes.size();
  TORCH_CHECK(in_chop.numel() == G * n_out * in_g && out_chop.numel() == G * n_in * out_g &&
                  tile_state.numel() == G * n_in * n_out * 4,
              "analog::transfer_update: chopper or tile_state shape does not match the plan");
  const auto x = x_in.to(at::kDouble).contiguous();
  const auto d = d_in.to(at::kDouble).contiguous();
  const DeviceCfg ca = device_cfg(fast_kind, fast_params);
  const DeviceCfg cc = device_cfg(slow_kind, slow_params);
  const UpdateCfg u = update_cfg(update_params);
  const UpdateCfg tu = update_cfg(t_update_params);
  const periphery::Io io = periphery::unpack_io(io_f, io_i);
  const bool in_mbatch = tp[0] != 0, scale_fast = tp[3] != 0, scale_transfer = tp[5] != 0;
  const bool auto_scale = tp[6] != 0, correct = tp[10] != 0, forget = tp[13] != 0;
  const bool no_buffer = tp[14] != 0, chop_random = tp[16] != 0;
  const double every_f = tp[1], fast_lr = tp[2], lr_transfer = tp[4], auto_mom = tp[7];
  const double buffer_gran = tp[8], auto_gran = tp[9], step = tp[11], momentum = tp[12];
  const double in_chop_prob = tp[15], out_chop_prob = tp[17];
  const int64_t seed = seed_t.item<int64_t>();
  const int64_t every = every_of(in_mbatch, every_f, N);
  // the slow write's BL, A, B: constant (x = 1; |steps| <= desired_bl, validated in Python)
  const double write_lr = step * cc.dw_min;
  int64_t t_bl = 1;
  double t_a = 1.0, t_b = 1.0;
  if (slow_kind != kIdeal) bit_line(tu, write_lr, cc.dw_min, 1.0, 1.0, &t_bl, &t_a, &t_b);
  const double one = io.inp_step <= 0
      ? 1.0 : std::min(io.inp_bound, std::max(-io.inp_bound,
                                              std::nearbyint(1.0 / io.inp_step) * io.inp_step));
  int8_t* ic_all = in_chop.data_ptr<int8_t>();
  int8_t* oc_all = out_chop.data_ptr<int8_t>();
  double* ts_all = tile_state.data_ptr<double>();
  const double* xp = x.data_ptr<double>();
  const double* dp = d.data_ptr<double>();
  std::vector<at::Tensor> fst, sst;
  for (int k = 0; k < 6; ++k) {
    TORCH_CHECK(fast_state[k].sizes() == fast.sizes() && slow_state[k].sizes() == fast.sizes(),
                "analog::transfer_update: state tensors must have the weight's shape");
    fst.push_back(fast_state[k].to(fast.scalar_type()).contiguous());
    sst.push_back(slow_state[k].to(fast.scalar_type()).contiguous());
  }
  AT_DISPATCH_FLOATING_TYPES(fast.scalar_type(), "analog::transfer_update", [&] {
    int64_t tile_id = 0;
    for (int64_t g = 0; g < G; ++g) {
      int64_t c0 = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        const int64_t cols = in_sizes[i];
        int64_t r0 = 0;
        for (int64_t j = 0; j < n_out; ++j, ++tile_id) {
          const int64_t rows = out_sizes[j];
          double* ts = ts_all + ((g * n_in + i) * n_out + j) * 4;
          int8_t* ic = ic_all + (g * n_out + j) * in_g + c0;
          int8_t* oc = oc_all + (g * n_in + i) * out_g + r0;
          int64_t slice = static_cast<int64_t>(ts[0]), sweeps = static_cast<int64_t>(ts[1]);
          double m_x = ts[2], m_d = ts[3];
          // prologue: per vector its learning rate, chopped copy of x and d, the transfer
          std::vector<double> lrs(N), scales(N, 0.0), xs(N * cols), ds(N * rows);
          std::vector<int64_t> col(N, -1);
          std::vector<int8_t> in_read(N, 0), out_snap(N * rows);
          Stream prng(seed, 5, tile_id, 0);
          for (int64_t n = 0; n < N; ++n) {
            const double* xv = xp + n * G * in_g + g * in_g + c0;
            const double* dv = dp + n * G * out_g + g * out_g + r0;
            if (auto_scale) {
              double xa = 0, da = 0;
              for (int64_t c = 0; c < cols; ++c) xa = std::max(xa, std::abs(xv[c]));
              for (int64_t r = 0; r < rows; ++r) da = std::max(da, std::abs(dv[r]));
              m_x = ema(m_x, xa, N, auto_mom);
              m_d = ema(m_d, da, N, auto_mom);
            }
            double c_lr;
            if (auto_scale && fast_lr > 0) {
              c_lr = fast_lr * u.desired_bl * ca.dw_min;
              if (m_x > 0 && m_d > 0) c_lr /= m_x * m_d;
              if (scale_fast) c_lr *= lr;
            } else if (fast_lr > 0) {
              c_lr = scale_fast ? fast_lr * lr : fast_lr;
            } else {
              c_lr = lr;
            }
            lrs[n] = c_lr;
            for (int64_t c = 0; c < cols; ++c) xs[n * cols + c] = ic[c] ? -xv[c] : xv[c];
            for (int64_t r = 0; r < rows; ++r) {
              ds[n * rows + r] = oc[r] ? -dv[r] : dv[r];
              out_snap[n * rows + r] = oc[r];
            }
            ++counter;
            if (every <= 0 || counter % every != 0) continue;
            const int64_t k = slice;
            col[n] = k;
            in_read[n] = ic[k];
            const double lr_t = lr_transfer * (scale_transfer ? lr : 1.0);
            double bg = buffer_gran > 0 ? buffer_gran : 1.0;
            bg *= auto_gran > 0 ? ca.dw_min * auto_gran / (cols * std::abs(every_f)) : ca.dw_min;
            scales[n] = correct ? std::abs(lr_t) / c_lr / (bg * cc.dw_min / ca.dw_min)
                                : std::abs(lr_t) / bg;
            if (in_chop_prob > 0) {
              bool flip;
              if (chop_random) {
                flip = prng.uniform() < in_chop_prob;
              } else {
                const int64_t period =
                    std::max<int64_t>(static_cast<int64_t>(std::ceil(1.0 / in_chop_prob)), 2);
                flip = sweeps % period + 1 == period;
              }
              if (flip) ic[k] = static_cast<int8_t>(1 - ic[k]);
            }
            if (k == cols - 1) {
              if (out_chop_prob > 0) {
                for (int64_t r = 0; r < rows; ++r) {
                  if (prng.uniform() < out_chop_prob) oc[r] = static_cast<int8_t>(1 - oc[r]);
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
          // the fast update, each row's transfers inline
          const int64_t off = (g * out_g + r0) * in_g + c0;
          const scalar_t* fp[6];
          const scalar_t* sp[6];
          for (int k = 0; k < 6; ++k) {
            fp[k] = fst[k].data_ptr<scalar_t>() + off;
            sp[k] = sst[k].data_ptr<scalar_t>() + off;
          }
          std::vector<scalar_t> xt(xs.begin(), xs.end()), dt(ds.begin(), ds.end());
          ChopHook<scalar_t> hook{col.data(), scales.data(), in_read.data(), out_snap.data(),
                                  rows, slow.data_ptr<scalar_t>() + off,
                                  buffer.data_ptr<scalar_t>() + off, sp, in_g, &cc, &tu,
                                  t_pulse_type, write_lr, static_cast<double>(tu.desired_bl),
                                  std::min(1.0, std::max(0.0, momentum)), one, forget,
                                  no_buffer, io, t_bl, t_a, t_b};
          if (!forget) hook.momentum = std::min(1.0, std::max(0.0, momentum));
          else hook.momentum = momentum;
          scalar_t* w = fast.data_ptr<scalar_t>() + off;
          switch (fast_kind) {
            ANALOG_TRANSFER_CASE(kConstant)
            ANALOG_TRANSFER_CASE(kLinear)
            ANALOG_TRANSFER_CASE(kSoft)
            ANALOG_TRANSFER_CASE(kExp)
            ANALOG_TRANSFER_CASE(kPow)
            ANALOG_TRANSFER_CASE(kPiecewise)
            default:
              TORCH_CHECK(false, "analog::transfer_update: unknown device kind ", fast_kind);
          }
          r0 += rows;
        }
        c0 += cols;
      }
    }
  });
}

#undef ANALOG_TRANSFER_CASE

}  // namespace analog
