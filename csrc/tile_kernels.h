// CPU kernels of the analog op library (schemas in runtime/ops.py; semantics in
// runtime/reference.py, which these kernels must match).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace analog {

std::tuple<at::Tensor, at::Tensor> tile_forward_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& out_scales,
    const std::optional<at::Tensor>& bias, const at::Tensor& seed, at::IntArrayRef in_sizes,
    at::IntArrayRef out_sizes, bool is_perfect, int64_t nm_type, double nm_thres,
    double inp_bound, double inp_step, bool inp_sto_round, double inp_noise, double out_bound,
    double out_step, bool out_sto_round, double out_noise, int64_t w_noise_type, double w_noise,
    int64_t bm_rounds, bool need_mask);

at::Tensor tile_conv2d_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& out_scales,
    const std::optional<at::Tensor>& bias, const at::Tensor& seed, at::IntArrayRef kernel,
    at::IntArrayRef dilation, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef in_sizes,
    at::IntArrayRef out_sizes, bool is_perfect, int64_t nm_type, double nm_thres,
    double inp_bound, double inp_step, bool inp_sto_round, double inp_noise, double out_bound,
    double out_step, bool out_sto_round, double out_noise, int64_t w_noise_type, double w_noise,
    int64_t bm_rounds);

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

}  // namespace analog
