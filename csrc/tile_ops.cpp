// CPU backward of analog::tile_backward, im2col, the CPU registration block, and the Python
// module analog_compiler._C. The schemas are defined in Python (runtime/ops.py); this library
// only registers implementations for them, when runtime/_ext.py asks.
#include <Python.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>
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

// im2col of a padded [N, C, H, W] input: row (n, oh, ow), column (c, i, j) =
// x[n, c, oh * sh + i * dh, ow * sw + j * dw]. Rows are written contiguously, in parallel over
// (n, oh), each row in order (contiguous writes; the reads of one output line stay in cache);
// a plain copy, so equal to the reference bit for bit.
at::Tensor im2col2d_cpu(const at::Tensor& x_in, at::IntArrayRef kernel, at::IntArrayRef dilation,
                        at::IntArrayRef stride) {
  TORCH_CHECK(x_in.dim() == 4 && kernel.size() == 2 && dilation.size() == 2 &&
                  stride.size() == 2,
              "analog::im2col2d: expects x [N, C, H, W] and 2-element kernel/dilation/stride");
  const auto x = x_in.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t kh = kernel[0], kw = kernel[1], dh = dilation[0], dw = dilation[1];
  const int64_t sh = stride[0], sw = stride[1];
  const int64_t Ho = (H - dh * (kh - 1) - 1) / sh + 1, Wo = (W - dw * (kw - 1) - 1) / sw + 1;
  TORCH_CHECK(Ho > 0 && Wo > 0, "analog::im2col2d: kernel larger than the padded input");
  auto out = at::empty({N * Ho * Wo, C * kh * kw}, x.options());
  const int64_t K = C * kh * kw;
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "analog_im2col2d", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * Ho, 4, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t n = t / Ho, oh = t % Ho;
        const scalar_t* base = src + n * C * H * W + oh * sh * W;
        for (int64_t ow = 0; ow < Wo; ++ow) {
          scalar_t* row = dst + (t * Wo + ow) * K;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kh; ++i) {
              const scalar_t* s = base + (c * H + i * dh) * W + ow * sw;
              for (int64_t j = 0; j < kw; ++j) *row++ = s[j * dw];
            }
        }
      }
    });
  });
  return out;
}

}  // namespace analog

namespace {

// The CPU registration block. It runs when Python calls register_kernels(), after runtime/_ext.py
// has compared periphery_layout() with the Python spec: registering from a static initialiser
// (TORCH_LIBRARY_IMPL) would put kernels in place before anything could check that both sides
// pack the periphery alike.
std::unique_ptr<torch::Library> cpu_library;

void register_cpu(torch::Library& m) {
  m.impl("tile_forward", &analog::tile_forward_cpu);
  m.impl("tile_conv2d", &analog::tile_conv2d_cpu);
  m.impl("tile_readout", &analog::tile_readout_cpu);
  m.impl("tile_readout_mean", &analog::tile_readout_mean_cpu);
  m.impl("tile_backward", &analog::tile_backward_cpu);
  m.impl("im2col2d", &analog::im2col2d_cpu);
  m.impl("pcm_chip", &analog::pcm_chip_cpu);
  m.impl("device_chip", &analog::device_chip_cpu);
  m.impl("tile_update", &analog::tile_update_cpu);
  m.impl("transfer_update", &analog::transfer_update_cpu);
  m.impl("agad_update", &analog::agad_update_cpu);
}

PyObject* py_periphery_layout(PyObject*, PyObject*) {
  return PyUnicode_FromString(analog::periphery_layout().c_str());
}

PyObject* py_register_kernels(PyObject*, PyObject*) {
  if (!cpu_library) {
    try {
      auto lib = std::make_unique<torch::Library>(torch::Library::IMPL, "analog",
                                                  c10::DispatchKey::CPU, __FILE__, __LINE__);
      register_cpu(*lib);
      cpu_library = std::move(lib);
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
      return nullptr;
    }
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"periphery_layout", py_periphery_layout, METH_NOARGS,
     "The packed periphery's fields and enum codes, as runtime/periphery.py's layout() writes "
     "them."},
    {"register_kernels", py_register_kernels, METH_NOARGS,
     "Register the CPU kernels with the dispatcher (once; later calls do nothing)."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
// Python module analog_compiler._C: two functions, no Python objects (runtime/_ext.py uses them).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
}
