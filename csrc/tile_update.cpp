// Fused CPU kernel of analog::tile_update (runtime/update_ops.py; the semantics are those of the
// reference kernel runtime/update.py). Per tile, for a batch of N vector pairs (x, d):
//
//   1. per vector: BL, A, B (BL and update management), the pulse probabilities
//      p_i = min(1, A|x_i|), q_j = min(1, B|d_j|);
//   2. the pulse trains as bits: ceil(BL / 64) 64-bit words per input and per error, never a
//      tensor of pulses (x trains drawn in parallel over vectors, d trains likewise); with
//      BL <= 64 the x trains also as bit planes over the columns (plane t: bit t of every x_i);
//   3. in parallel over the tile's rows, vectors in order: the coincidence count of (i, j) is
//      popcount(x_i & d_j) (with planes: the columns hit, and those hit twice or more, for all
//      columns at once from the planes of the set bits of d_j's train, visited by set bit);
//      that many device pulses in direction -sign(x_i d_j), each with its cycle-to-cycle noise,
//      clipped to the device's bounds.
//
// The devices and the random streams: csrc/pulse_device.h; the per-tile loop:
// csrc/pulse_update.h. The statistics equal the reference kernel's (the random streams differ).
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "pulse_update.h"
#include "tile_kernels.h"

namespace analog {
namespace {

using namespace pulsed;  // NOLINT(build/namespaces): the kernel's own helpers

template <typename scalar_t>
void update_tile_dispatch(int64_t kind, const DeviceCfg& c, const UpdateCfg& u,
                          int64_t pulse_type, const double* lrs, int64_t seed, int64_t tile_id,
                          scalar_t* w, const scalar_t* const* st, int64_t ld, const scalar_t* x,
                          int64_t ldx, const scalar_t* d, int64_t ldd, int64_t N, int64_t rows,
                          int64_t cols) {
#define ANALOG_UPDATE_CASE(K)                                                                \
  case K:                                                                                    \
    update_one_tile<scalar_t, K>(c, u, pulse_type, lrs, seed, tile_id, w, st, ld, x, ldx, d, \
                                 ldd, N, rows, cols);                                         \
    break;
  switch (kind) {
    ANALOG_UPDATE_CASE(kConstant)
    ANALOG_UPDATE_CASE(kLinear)
    ANALOG_UPDATE_CASE(kSoft)
    ANALOG_UPDATE_CASE(kExp)
    ANALOG_UPDATE_CASE(kPow)
    ANALOG_UPDATE_CASE(kPiecewise)
    default:
      TORCH_CHECK(false, "analog::tile_update: unknown device kind ", kind);
  }
#undef ANALOG_UPDATE_CASE
}

}  // namespace

void tile_update_cpu(const at::Tensor& weight, at::TensorList state, const at::Tensor& x_in,
                     const at::Tensor& d_in, double lr, const at::Tensor& seed_t,
                     at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, int64_t device_kind,
                     at::ArrayRef<double> device_params, int64_t pulse_type,
                     at::ArrayRef<double> update_params) {
  TORCH_CHECK(weight.dim() == 3 && weight.is_contiguous(),
              "analog::tile_update: weight must be a contiguous [G, out_g, in_g] tensor");
  TORCH_CHECK(state.size() == 6, "analog::tile_update: expected 6 device state tensors");
  TORCH_CHECK(update_params.size() == 9, "analog::tile_update: expected 9 update params");
  TORCH_CHECK(device_params.size() >= 11, "analog::tile_update: expected >= 11 device params");
  const int64_t G = weight.size(0), out_g = weight.size(1), in_g = weight.size(2);
  const int64_t N = x_in.size(0);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g && d_in.dim() == 2 &&
                  d_in.size(0) == N && d_in.size(1) == G * out_g,
              "analog::tile_update: x must be [N, G * in_g] and d [N, G * out_g]");
  const auto x = x_in.to(weight.scalar_type()).contiguous();
  const auto d = d_in.to(weight.scalar_type()).contiguous();
  if (device_kind == kIdeal || pulse_type == kNone || pulse_type == kNoneWithDevice) {
    auto upd = at::bmm(d.reshape({N, G, out_g}).permute({1, 2, 0}),
                       x.reshape({N, G, in_g}).transpose(0, 1));  // [G, out_g, in_g]
    weight.sub_(upd * lr);
    if (device_kind != kIdeal && pulse_type == kNoneWithDevice) {
      weight.copy_(at::minimum(at::maximum(weight, state[3]), state[2]));
    }
    return;
  }
  const UpdateCfg u = update_cfg(update_params);
  const DeviceCfg c = device_cfg(device_kind, device_params);
  std::vector<at::Tensor> st;
  for (const auto& t : state) {
    TORCH_CHECK(t.sizes() == weight.sizes(), "analog::tile_update: state tensors must have "
                "the weight's shape");
    st.push_back(t.to(weight.scalar_type()).contiguous());
  }
  const int64_t seed = seed_t.item<int64_t>();
  const std::vector<double> lrs(N, lr);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "analog::tile_update", [&] {
    scalar_t* w = weight.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dp = d.data_ptr<scalar_t>();
    int64_t tile_id = 0;
    for (int64_t g = 0; g < G; ++g) {
      int64_t c0 = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(in_sizes.size()); ++i) {
        int64_t r0 = 0;
        for (int64_t j = 0; j < static_cast<int64_t>(out_sizes.size()); ++j) {
          const int64_t off = (g * out_g + r0) * in_g + c0;
          const scalar_t* sp[6];
          for (int k = 0; k < 6; ++k) sp[k] = st[k].data_ptr<scalar_t>() + off;
          update_tile_dispatch<scalar_t>(device_kind, c, u, pulse_type, lrs.data(), seed, tile_id,
                                         w + off, sp, in_g, xp + g * in_g + c0, G * in_g,
                                         dp + g * out_g + r0, G * out_g, N, out_sizes[j],
                                         in_sizes[i]);
          r0 += out_sizes[j];
          ++tile_id;
        }
        c0 += in_sizes[i];
      }
    }
  });
}

}  // namespace analog
