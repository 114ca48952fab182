// CPU entries of analog::tile_forward (input vectors as the rows of x), analog::tile_conv2d
// (input vectors are the receptive fields of a padded image, gathered inside the kernel) and
// analog::tile_readout (the identity's rows; analog::tile_readout_mean its mean |y| per output,
// for drift compensation, without y). All run the blocked driver of tile_driver.h with
// the same blocking and random keys, so tile_conv2d equals tile_forward over analog::im2col2d's
// rows, and tile_readout tile_forward over the identity, bit for bit.
//
// Dtypes: float and double compute in their own type. bfloat16 and float16 compute in float
// from half-precision storage: the driver widens input rows and weight tiles as it loads them
// (tile_driver.h, row_sources.h), so a call holds no float copy of the weights, and writes
// the output in the half type: each task's block of partial sums adds in float and is rounded
// once, so no float output (and no copy of it) exists either.
#include <sys/mman.h>

#include "tile_driver.h"
#include "tile_kernels.h"

namespace analog {
namespace {

using namespace driver;

std::vector<int64_t> offsets(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> off(sizes.size(), 0);
  for (size_t k = 1; k < sizes.size(); ++k) off[k] = off[k - 1] + sizes[k - 1];
  return off;
}

// The precision the kernels compute in: float or double as given, float for half types.
at::ScalarType work_dtype(at::ScalarType dtype) {
  return (dtype == at::kFloat || dtype == at::kDouble) ? dtype : at::kFloat;
}

bool is_half(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

// What the entries hand the driver: the weights (in their half-precision storage dtype when
// the input has that dtype too, else in the working dtype) and their row stride, the scales
// and bias in the working dtype, the tile plan, the periphery settings and the random key.
struct Prepared {
  at::ScalarType work, storage;  // storage: the dtype of weight (work, or a half type)
  at::Tensor weight, scales, bias, wabs;
  int64_t ldw = 0;
  at::ScalarType out() const { return is_half(storage) ? storage : work; }  // y's dtype
  Plan plan;
  Io io;
  RngKey key;
};

Prepared prepare(const char* op, at::ScalarType dtype, const at::Tensor& weight_in,
                 const std::optional<at::Tensor>& out_scales,
                 const std::optional<at::Tensor>& bias_in, const at::Tensor& seed, int64_t n,
                 at::IntArrayRef in_sizes, at::IntArrayRef out_sizes, const Io& io) {
  const int64_t G = weight_in.size(0), out_g = weight_in.size(1), in_g = weight_in.size(2);
  Prepared r;
  r.work = work_dtype(dtype);
  r.storage = is_half(dtype) && weight_in.scalar_type() == dtype ? dtype : r.work;
  // A column slice of a wider matrix (drift_readout reads one input split) is read in place at
  // its row stride, not copied (the driver widens half-precision tile panels row by row, and
  // the readout transposes column blocks); float weights whose |W| the kernel needs are copied,
  // as |W| is computed contiguous.
  const auto w = weight_in.detach().to(r.storage);
  const bool sliced = w.numel() > 0 && (r.storage != r.work || !io.needs_wabs()) &&
                      w.stride(2) == 1 &&
                      w.stride(1) >= in_g && (G == 1 || w.stride(0) == out_g * w.stride(1));
  r.weight = sliced ? w : w.contiguous();
  r.ldw = sliced ? w.stride(1) : in_g;
  const int64_t n_in = static_cast<int64_t>(in_sizes.size());
  if (out_scales.has_value() && out_scales->defined()) {
    TORCH_CHECK(out_scales->numel() == G * n_in * out_g, "analog::", op,
                ": out_scales must be [G, n_in, out_g]");
    r.scales = out_scales->detach().to(r.work).contiguous();
  }
  if (bias_in.has_value() && bias_in->defined()) r.bias = bias_in->detach().to(r.work).contiguous();
  // (|W| of half-precision weights: per tile panel in the driver)
  if (io.needs_wabs() && r.storage == r.work) r.wabs = r.weight.abs();
  r.plan = Plan{G, out_g, in_g, n, n_in, static_cast<int64_t>(out_sizes.size()),
                in_sizes.vec(), out_sizes.vec(), {}, {}};
  r.plan.in_off = offsets(r.plan.in_sizes);
  r.plan.out_off = offsets(r.plan.out_sizes);
  TORCH_CHECK(r.plan.n_in > 0 && r.plan.n_out > 0 &&
                  r.plan.in_off.back() + r.plan.in_sizes.back() == in_g &&
                  r.plan.out_off.back() + r.plan.out_sizes.back() == out_g,
              "analog::", op, ": in_sizes/out_sizes must split the weight's columns/rows");
  r.io = io;
  r.key = make_key(seed.item<int64_t>());
  return r;
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
struct Type {
  using type = T;
};

// f(Type<T>{}, Type<S>{}) with T the compute type of `work` and S the C++ type of `storage`
// (S = T, or bfloat16 / float16 with T = float).
template <typename F>
void dispatch(at::ScalarType work, at::ScalarType storage, const char* op, F&& f) {
  if (work == at::kDouble) return f(Type<double>{}, Type<double>{});
  TORCH_CHECK(work == at::kFloat, "analog::", op, ": unsupported dtype ", work);
  if (storage == at::kBFloat16) return f(Type<float>{}, Type<c10::BFloat16>{});
  if (storage == at::kHalf) return f(Type<float>{}, Type<c10::Half>{});
  f(Type<float>{}, Type<float>{});
}

// An empty tensor that, from 1 MiB on, owns an anonymous mapping of its own, unmapped when it is
// freed. For the readouts of drift compensation (one per input split of every layer, each the
// size of the split's weights): glibc serves such sizes from its heap once its mmap threshold
// has risen (up to 32 MiB) and keeps them there after the free, between the chips that the
// same program or drift allocates, so the process would grow by readout buffers it no longer
// holds.
at::Tensor empty_unmapped_on_free(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) *
                       c10::elementSize(c10::typeMetaToScalarType(opts.dtype()));
  if (bytes < (size_t{1} << 20)) return at::empty(sizes, opts);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return at::empty(sizes, opts);
  return at::from_blob(p, sizes, [bytes](void* q) { munmap(q, bytes); }, opts);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> tile_forward_cpu(
    const at::Tensor& x_in, const at::Tensor& weight_in,
    const std::optional<at::Tensor>& out_scales, const std::optional<at::Tensor>& bias_in,
    const at::Tensor& seed, at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
    at::ArrayRef<double> io_f, at::IntArrayRef io_i, bool need_mask) {
  const Io io = unpack_io(io_f, io_i);
  TORCH_CHECK(weight_in.dim() == 3, "analog::tile_forward: weight must be [G, out_g, in_g]");
  const int64_t G = weight_in.size(0), out_g = weight_in.size(1), in_g = weight_in.size(2);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g,
              "analog::tile_forward: x must be [N, G * in_g]");
  const int64_t N = x_in.size(0);
  const int64_t n_in = static_cast<int64_t>(in_sizes.size());
  const bool has_scales = out_scales.has_value() && out_scales->defined();
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  const auto empty_mask = x_in.new_empty({0}, x_in.options().dtype(at::kBool));

  if (io.is_perfect && !has_scales) {  // fast path: one (batched) matrix product
    at::Tensor y;
    if (G == 1)
      y = has_bias ? at::addmm(*bias_in, x_in, weight_in[0].t()) : at::mm(x_in, weight_in[0].t());
    else
      y = at::bmm(x_in.reshape({N, G, in_g}).transpose(0, 1), weight_in.transpose(1, 2))
              .transpose(0, 1).reshape({N, G * out_g});
    if (G != 1 && has_bias) y.add_(*bias_in);
    auto mask = need_mask ? at::ones({G, n_in, N, out_g}, x_in.options().dtype(at::kBool))
                          : empty_mask;
    return {y, mask};
  }

  const auto dtype = x_in.scalar_type();
  auto pr = prepare("tile_forward", dtype, weight_in, out_scales, bias_in, seed, N, in_sizes,
                    out_sizes, io);
  // half-precision inputs stay so (rows widen as the driver loads them) with half weights
  const auto x = x_in.detach().to(pr.storage).contiguous();
  auto y = at::empty({N, G * out_g}, x.options().dtype(pr.out()));
  auto mask = need_mask ? at::empty({G, n_in, N, out_g}, x.options().dtype(at::kBool))
                        : empty_mask;
  if (N > 0) {
    dispatch(pr.work, pr.storage, "tile_forward", [&](auto t, auto s) {
      using T = typename decltype(t)::type;
      using S = typename decltype(s)::type;
      const DenseRows<T, S> src{x.data_ptr<S>(), G * in_g};
      forward_impl<T>(pr.plan, pr.io, pr.key, src, pr.weight.data_ptr<S>(), pr.ldw,
                      ptr_or_null<T>(pr.wabs), ptr_or_null<T>(pr.scales), ptr_or_null<T>(pr.bias),
                      y.data_ptr<S>(), need_mask ? mask.data_ptr<bool>() : nullptr);
    });
  }
  return {y.to(dtype), mask};
}

at::Tensor tile_conv2d_cpu(
    const at::Tensor& x_in, const at::Tensor& weight_in,
    const std::optional<at::Tensor>& out_scales, const std::optional<at::Tensor>& bias_in,
    const at::Tensor& seed, at::IntArrayRef kernel, at::IntArrayRef dilation,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef in_sizes,
    at::IntArrayRef out_sizes, at::ArrayRef<double> io_f, at::IntArrayRef io_i) {
  const Io io = unpack_io(io_f, io_i);
  TORCH_CHECK(weight_in.dim() == 3, "analog::tile_conv2d: weight must be [G, out_g, in_g]");
  TORCH_CHECK(x_in.dim() == 4 && kernel.size() == 2 && dilation.size() == 2 &&
                  stride.size() == 2 && padding.size() == 2,
              "analog::tile_conv2d: expects x [N, C, H, W] and 2-element kernel, dilation, "
              "stride and padding");
  const int64_t G = weight_in.size(0), out_g = weight_in.size(1), in_g = weight_in.size(2);
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t kh = kernel[0], kw = kernel[1];
  TORCH_CHECK(C % G == 0 && (C / G) * kh * kw == in_g,
              "analog::tile_conv2d: weight [G, out_g, in_g] needs in_g = C / G * kh * kw");
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, "analog::tile_conv2d: padding must be >= 0");
  const bool has_scales = out_scales.has_value() && out_scales->defined();
  if (io.is_perfect && !has_scales) {  // no periphery: the convolution itself
    const auto w4 = weight_in.reshape({G * out_g, C / G, kh, kw});
    return at::conv2d(x_in, w4, bias_in, stride, padding, dilation, G);
  }
  const auto dtype = x_in.scalar_type();
  const int64_t dh = dilation[0], dw = dilation[1];
  const int64_t Ho = (H + 2 * padding[0] - dh * (kh - 1) - 1) / stride[0] + 1;
  const int64_t Wo = (W + 2 * padding[1] - dw * (kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(Ho > 0 && Wo > 0, "analog::tile_conv2d: kernel larger than the padded input");
  const int64_t N = B * Ho * Wo;
  auto pr = prepare("tile_conv2d", dtype, weight_in, out_scales, bias_in, seed, N, in_sizes,
                    out_sizes, io);
  const auto x = x_in.detach().to(pr.storage).contiguous();
  auto y = at::empty({B, G * out_g, Ho, Wo}, x.options().dtype(pr.out()));
  dispatch(pr.work, pr.storage, "tile_conv2d", [&](auto t, auto s) {
    using T = typename decltype(t)::type;
    using S = typename decltype(s)::type;
    const ConvRows<T, S> src(x.data_ptr<S>(), C, H, W, kh, kw, dh, dw, stride[0], stride[1],
                             padding[0], padding[1]);
    if (N > 0)
      forward_impl<T>(pr.plan, pr.io, pr.key, src, pr.weight.data_ptr<S>(), pr.ldw,
                      ptr_or_null<T>(pr.wabs), ptr_or_null<T>(pr.scales), ptr_or_null<T>(pr.bias),
                      y.data_ptr<S>(), nullptr, Ho * Wo);
  });
  return y.to(dtype);
}

// The driver's inputs for a readout of the one input split ``weight_in`` [G, out_g, in_g]: its
// in_g one-hot vectors (shared by tile_readout and tile_readout_mean).
namespace {
Prepared prepare_readout(const char* op, const at::Tensor& weight_in, const at::Tensor& seed,
                         at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
                         at::IntArrayRef io_i) {
  TORCH_CHECK(weight_in.dim() == 3, "analog::", op, ": weight must be [G, out_g, in_g]");
  const int64_t in_g = weight_in.size(2);
  const std::vector<int64_t> in_sizes{in_g};
  return prepare(op, weight_in.scalar_type(), weight_in, std::nullopt, std::nullopt, seed, in_g,
                 in_sizes, out_sizes, unpack_io(io_f, io_i));
}
}  // namespace

// The identity readout: tile_forward of eye(in_g) repeated over the groups (one input split),
// without the identity: each vector's one nonzero input reads one weight column.
at::Tensor tile_readout_cpu(const at::Tensor& weight_in, const at::Tensor& seed,
                            at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
                            at::IntArrayRef io_i) {
  auto pr = prepare_readout("tile_readout", weight_in, seed, out_sizes, io_f, io_i);
  const int64_t G = pr.plan.groups, out_g = pr.plan.out_g, in_g = pr.plan.in_g;
  const auto dtype = weight_in.scalar_type();
  auto y = empty_unmapped_on_free({in_g, G * out_g}, weight_in.options().dtype(pr.out()));
  if (in_g > 0) {
    dispatch(pr.work, pr.storage, "tile_readout", [&](auto t, auto s) {
      using T = typename decltype(t)::type;
      using S = typename decltype(s)::type;
      const IdentityRows<T> src{in_g};
      forward_impl<T>(pr.plan, pr.io, pr.key, src, pr.weight.data_ptr<S>(), pr.ldw,
                      ptr_or_null<T>(pr.wabs), nullptr, nullptr, y.data_ptr<S>(), nullptr);
    });
  }
  return y.to(dtype);
}

// The mean |y| of the identity readout per output ([G * out_g], in the weight's dtype): y as
// tile_readout returns it (rounded to a half-precision weight's dtype), summed in double per
// block of vectors and then over the blocks in order (the same on any thread count). No y.
at::Tensor tile_readout_mean_cpu(const at::Tensor& weight_in, const at::Tensor& seed,
                                 at::IntArrayRef out_sizes, at::ArrayRef<double> io_f,
                                 at::IntArrayRef io_i) {
  auto pr = prepare_readout("tile_readout_mean", weight_in, seed, out_sizes, io_f, io_i);
  const int64_t G = pr.plan.groups, out_g = pr.plan.out_g, in_g = pr.plan.in_g;
  const auto dtype = weight_in.scalar_type();
  auto mean = at::zeros({G * out_g}, weight_in.options().dtype(at::kDouble));
  if (in_g > 0) {
    dispatch(pr.work, pr.storage, "tile_readout_mean", [&](auto t, auto s) {
      using T = typename decltype(t)::type;
      using S = typename decltype(s)::type;
      const IdentityRows<T> src{in_g};
      TileDriver<T, IdentityRows<T>, S, S> drv(pr.plan, pr.io, pr.key, src,
                                               pr.weight.data_ptr<S>(), pr.ldw,
                                               ptr_or_null<T>(pr.wabs), nullptr, nullptr,
                                               static_cast<S*>(nullptr), nullptr, 0, true);
      drv.run();
      drv.abs_means(mean.data_ptr<double>());
    });
  }
  return mean.to(dtype);
}

std::string periphery_layout() { return io_layout(); }

}  // namespace analog
