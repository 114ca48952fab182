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
#include "transfer_schedule.h"

namespace analog {
namespace {

using namespace pulsed;  // NOLINT(build/namespaces): the kernel's own helpers

// The c-TTv2 transfer of one tile, run per row after each vector (runtime/transfer.py): the
// read of column col[n] of A (row j), the buffer, and the pulses on C[j, col[n]].
template <typename scalar_t>
struct ChopHook {
  const Schedule* s;
  int64_t rows;
  scalar_t* slow;              // C, H and the slow devices' parameters (ld = row stride)
  scalar_t* buf;
  const scalar_t* const* sst;
  int64_t ld;
  SlowWrite write;
  double max_steps, momentum, one;
  bool forget, no_buffer;
  periphery::Io io;

  inline void operator()(int64_t j, int64_t n, scalar_t* wr, Stream& rng) const {
    const int64_t k = s->col[n];
    if (k < 0) return;
    const int64_t e = j * ld + k;
    double v = read_one(io, one, double(wr[k]), rng) * s->scales[n];
    if (s->in_read[n] != s->out_snap[n * rows + j]) v = -v;
    double omega = no_buffer ? v : double(buf[e]) + v;
    double steps = 0.0;
    if (std::abs(omega) >= 1.0) {
      steps = std::max(-max_steps, std::min(max_steps, std::trunc(omega)));
      omega = forget ? omega * momentum : omega - (1.0 - momentum) * steps;
    }
    buf[e] = static_cast<scalar_t>(omega);
    if (steps != 0.0) write(slow, sst, e, steps, rng);
  }
};

}  // namespace

// Fused c-TTv2 update (analog::transfer_update; semantics: runtime/transfer.py). Per tile: a
// serial prologue over the vectors (csrc/transfer_schedule.h: running maxima, learning rates,
// the transfer schedule and the choppers: nothing there depends on the weights), then the
// chopped fast update in parallel over rows with each row's transfers inline (a one-hot read
// touches only its row).
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
  constexpr const char* op = "analog::transfer_update";
  check_transfer_arrays(op, fast, {&fast, &slow, &buffer}, in_chop, out_chop, tile_state,
                        fast_state, slow_state, x_in, d_in, in_sizes, out_sizes);
  TORCH_CHECK(fast_kind != kIdeal, op, ": the fast device must be pulsed");
  const TransferParams p = transfer_params(op, tp);
  const int64_t G = fast.size(0), out_g = fast.size(1), in_g = fast.size(2);
  const int64_t N = x_in.size(0);
  const int64_t n_in = in_sizes.size(), n_out = out_sizes.size();
  const auto x = x_in.to(at::kDouble).contiguous();
  const auto d = d_in.to(at::kDouble).contiguous();
  const DeviceCfg ca = device_cfg(fast_kind, fast_params);
  const DeviceCfg cc = device_cfg(slow_kind, slow_params);
  const UpdateCfg u = update_cfg(update_params);
  const UpdateCfg tu = update_cfg(t_update_params);
  const periphery::Io io = periphery::unpack_io(io_f, io_i);
  const int64_t seed = seed_t.item<int64_t>();
  const int64_t every = every_of(p.in_mbatch, p.every_f, N);
  const SlowWrite write(&cc, &tu, t_pulse_type, p.step);
  const double one = read_one_input(io);
  // the buffer's momentum: clipped to [0, 1] unless the buffer forgets
  const double momentum = p.forget ? p.momentum : std::min(1.0, std::max(0.0, p.momentum));
  int8_t* ic_all = in_chop.data_ptr<int8_t>();
  int8_t* oc_all = out_chop.data_ptr<int8_t>();
  double* ts_all = tile_state.data_ptr<double>();
  const double* xp = x.data_ptr<double>();
  const double* dp = d.data_ptr<double>();
  const std::vector<at::Tensor> fst = state_as(fast_state, fast.scalar_type());
  const std::vector<at::Tensor> sst = state_as(slow_state, fast.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(fast.scalar_type(), op, [&] {
    Schedule sch;
    for_each_tile(G, in_sizes, out_sizes, [&](int64_t g, int64_t i, int64_t j, int64_t tile_id,
                                              int64_t r0, int64_t c0, int64_t rows,
                                              int64_t cols) {
      Stream prng(seed, 5, tile_id, 0);
      schedule_tile(p, ca, cc, u, lr, every, xp + g * in_g + c0, dp + g * out_g + r0, G * in_g,
                    G * out_g, N, rows, cols, counter, ic_all + (g * n_out + j) * in_g + c0,
                    oc_all + (g * n_in + i) * out_g + r0,
                    ts_all + ((g * n_in + i) * n_out + j) * 4, prng, nullptr, &sch);
      // the fast update, each row's transfers inline
      const int64_t off = (g * out_g + r0) * in_g + c0;
      const scalar_t* fp[6];
      const scalar_t* sp[6];
      for (int k = 0; k < 6; ++k) {
        fp[k] = fst[k].data_ptr<scalar_t>() + off;
        sp[k] = sst[k].data_ptr<scalar_t>() + off;
      }
      ChopHook<scalar_t> hook{&sch, rows, slow.data_ptr<scalar_t>() + off,
                              buffer.data_ptr<scalar_t>() + off, sp, in_g, write,
                              static_cast<double>(tu.desired_bl), momentum, one, p.forget,
                              p.no_buffer, io};
      scalar_t* w = fast.data_ptr<scalar_t>() + off;
      chopped_fast_update(op, fast_kind, ca, u, pulse_type, sch, seed, tile_id, w, fp, in_g, N,
                          rows, cols, hook);
    });
  });
}

}  // namespace analog
