// CPU kernels of the analog op library (schemas in runtime/ops.py; semantics in
// runtime/reference.py, which these kernels must match).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace analog {

// io_f / io_i: the packed periphery (runtime/periphery.py; unpacked by periphery::unpack_io).
std::tuple<at::Tensor, at::Tensor> tile_forward_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& out_scales,
    const std::optional<at::Tensor>& bias, const at::Tensor& seed, at::IntArrayRef in_sizes,
    at::IntArrayRef out_sizes, at::ArrayRef<double> io_f, at::IntArrayRef io_i, bool need_mask);

at::Tensor tile_conv2d_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& out_scales,
    const std::optional<at::Tensor>& bias, const at::Tensor& seed, at::IntArrayRef kernel,
    at::IntArrayRef dilation, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
    at::IntArrayRef io_i);

at::Tensor tile_readout_cpu(const at::Tensor& weight, const at::Tensor& seed,
                           at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
                           at::IntArrayRef io_i);

at::Tensor tile_readout_mean_cpu(const at::Tensor& weight, const at::Tensor& seed,
                                 at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
                                 at::IntArrayRef io_i);

std::tuple<at::Tensor, at::Tensor> tile_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& out_scales, const std::optional<at::Tensor>& mask,
    at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, bool need_input_grad,
    bool need_weight_grad);

at::Tensor pcm_chip_cpu(const at::Tensor& weight, at::IntArrayRef in_sizes,
                        at::IntArrayRef out_sizes, const at::Tensor& seed, double t_inference,
                        bool read_noise, const at::Tensor& read_seed, double g_max,
                        at::ArrayRef<double> prog_coeff, double t_read, double t_0,
                        double prog_noise_scale, double read_noise_scale, double drift_scale);

// The chip of the other noise models (csrc/device_chip.cpp; encoding: runtime/chip_codec.py).
at::Tensor device_chip_cpu(const at::Tensor& weight, at::IntArrayRef in_sizes,
                           at::IntArrayRef out_sizes, const at::Tensor& seed, double t_inference,
                           bool read_noise, const at::Tensor& read_seed, int64_t model_kind,
                           at::ArrayRef<double> model_params, int64_t converter_kind,
                           at::ArrayRef<double> converter_params);

// The pulsed update of a training tile array, in place (csrc/tile_update.cpp).
void tile_update_cpu(const at::Tensor& weight, at::TensorList state, const at::Tensor& x,
                     const at::Tensor& d, double lr, const at::Tensor& seed,
                     at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, int64_t device_kind,
                     at::ArrayRef<double> device_params, int64_t pulse_type,
                     at::ArrayRef<double> update_params);

// The fused c-TTv2 update of a unit-cell tile array, in place (csrc/transfer_update.cpp).
void transfer_update_cpu(const at::Tensor& fast, const at::Tensor& slow, const at::Tensor& buffer,
                         const at::Tensor& in_chop, const at::Tensor& out_chop,
                         const at::Tensor& tile_state, at::TensorList fast_state,
                         at::TensorList slow_state, const at::Tensor& x, const at::Tensor& d,
                         double lr, const at::Tensor& seed, int64_t counter,
                         at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, int64_t fast_kind,
                         at::ArrayRef<double> fast_params, int64_t slow_kind,
                         at::ArrayRef<double> slow_params, int64_t pulse_type,
                         at::ArrayRef<double> update_params, int64_t t_pulse_type,
                         at::ArrayRef<double> t_update_params, at::ArrayRef<double> io_f,
                         at::ArrayRef<int64_t> io_i, at::ArrayRef<double> transfer_params);

// The fused AGAD update of a unit-cell tile array, in place (csrc/agad_update.cpp).
void agad_update_cpu(const at::Tensor& fast, const at::Tensor& slow, const at::Tensor& buffer,
                     const at::Tensor& mean, const at::Tensor& past, const at::Tensor& switched,
                     const at::Tensor& in_chop, const at::Tensor& out_chop,
                     const at::Tensor& tile_state, at::TensorList fast_state,
                     at::TensorList slow_state, const at::Tensor& x, const at::Tensor& d,
                     double lr, const at::Tensor& seed, int64_t counter,
                     at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, int64_t fast_kind,
                     at::ArrayRef<double> fast_params, int64_t slow_kind,
                     at::ArrayRef<double> slow_params, int64_t pulse_type,
                     at::ArrayRef<double> update_params, int64_t t_pulse_type,
                     at::ArrayRef<double> t_update_params, at::ArrayRef<double> io_f,
                     at::ArrayRef<int64_t> io_i, at::ArrayRef<double> transfer_params,
                     at::ArrayRef<double> agad_params);

// The packed periphery's layout (fields and enum codes), compared with runtime/periphery.py's
// before the kernels register.
std::string periphery_layout();

}  // namespace analog
