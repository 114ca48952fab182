// CPU backward of analog::tile_backward, the CPU registration block, and the Python module
// init of analog_compiler._C. The schemas are defined in Python (runtime/ops.py); this library
// only registers implementations, so it may load before or after them.
#include <Python.h>
#include <torch/library.h>

#include <vector>

#include "tile_kernels.h"

namespace analog {

// Straight-through gradients (runtime/reference.py tile_backward): per input split i, the
// gradient reaching tile row o is grad_y * out_scales[g, i, o] * mask[g, i, n, o]; only the
// columns of split i take part, so each (group, split) is one pair of GEMMs of its own width.
std::tuple<at::Tensor, at::Tensor> tile_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& out_scales, const std::optional<at::Tensor>& mask,
    at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, bool need_input_grad,
    bool need_weight_grad) {
  TORCH_CHECK(weight.dim() == 3, "analog::tile_backward: weight must be [G, out_g, in_g]");
  const int64_t G = weight.size(0), out_g = weight.size(1), in_g = weight.size(2);
  const int64_t N = x.size(0);
  const auto gy = grad_y.reshape({N, G, out_g}).transpose(0, 1);  // [G, N, out_g]
  const auto xg = x.reshape({N, G, in_g}).transpose(0, 1);        // [G, N, in_g]
  const auto empty = x.new_empty({0});
  const bool has_scales = out_scales.has_value() && out_scales->defined();
  const bool has_mask = mask.has_value() && mask->defined();
  if (!has_scales && !has_mask) {
    auto gx = need_input_grad
                  ? at::matmul(gy, weight).transpose(0, 1).reshape({N, G * in_g})
                  : empty;
    auto gw = need_weight_grad ? at::matmul(gy.transpose(1, 2), xg) : empty;
    return {gx, gw};
  }
  auto gx = need_input_grad ? at::empty({N, G, in_g}, x.options()) : empty;
  auto gw = need_weight_grad ? at::empty_like(weight, at::MemoryFormat::Contiguous) : empty;
  int64_t start = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(in_sizes.size()); ++i) {
    const int64_t si = in_sizes[i];
    for (int64_t g = 0; g < G; ++g) {
      auto gi = gy[g];
      if (has_scales) gi = gi * (*out_scales)[g][i].unsqueeze(0);
      if (has_mask) gi = gi * (*mask)[g][i];
      if (need_input_grad)
        gx.select(1, g).narrow(1, start, si).copy_(at::mm(gi, weight[g].narrow(1, start, si)));
      if (need_weight_grad)
        gw[g].narrow(1, start, si).copy_(at::mm(gi.t(), xg[g].narrow(1, start, si)));
    }
    start += si;
  }
  return {need_input_grad ? gx.reshape({N, G * in_g}) : gx, gw};
}

}  // namespace analog

TORCH_LIBRARY_IMPL(analog, CPU, m) {
  m.impl("tile_forward", &analog::tile_forward_cpu);
  m.impl("tile_backward", &analog::tile_backward_cpu);
}

extern "C" {
// An empty module: importing analog_compiler._C loads this library, whose static initialisers
// above register the kernels with the dispatcher.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
