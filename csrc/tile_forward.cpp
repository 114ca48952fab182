// Fused CPU forward of analog::tile_forward (semantics: runtime/reference.py).
//
// Phase 1, per input vector: noise management (alpha per group and input split) and the DAC of
// the whole input, once. Phase 2, one task per (group, output split, block of vectors): per
// input split a BLAS GEMM of the DAC'd block with the tile (plus |W| x^2 for PCM read noise),
// then one pass over the output block (noise, ADC, clip test, rescale, output scales, partial-sum
// accumulation). Vectors that clipped are gathered and redone with the input halved (bound
// management) inside the task, round after round, on a smaller GEMM. Random numbers come from
// Philox keyed by (element, vector, tile, round, stream): reproducible per seed, independent of
// the number of threads. The per-row periphery (DAC, output noise + ADC, accumulation) lives in
// tile_periphery.h; this file holds the GEMM wrappers, the blocked driver and the op entry.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "rng.h"
#include "tile_kernels.h"
#include "tile_periphery.h"

// Fortran BLAS, as exported by the BLAS that torch links (MKL or OpenBLAS); weak, so a torch
// without them still loads this library and takes the ATen path below.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

namespace analog {
namespace {

using namespace periphery;  // Io, dac_row, out_row, accumulate (tile_periphery.h)

template <typename T>
void gemm_aten(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
               int64_t ldb, T* c, int64_t ldc) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto at_ = at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  auto bt = at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opt);
  auto ct = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  at::mm_out(ct, at_, bt.t());
}

// Row-major C[m, n] = A[m, k] @ B[n, k]^T (column-major BLAS: C^T = B^T' @ A^T).
template <typename T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb);
  const int ildc = static_cast<int>(ldc);
  const T one = 1, zero = 0;
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r) std::fill(c + r * ldc, c + r * ldc + n, T(0));
  } else if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr)
      sgemm_("T", "N", &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc);
  } else {
    if (dgemm_ != nullptr)
      dgemm_("T", "N", &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc);
  }
}

struct Plan {
  int64_t groups, out_g, in_g, n, n_in, n_out;
  std::vector<int64_t> in_sizes, out_sizes, in_off, out_off;
};

template <typename T>
void forward_impl(const Plan& p, const Io& io, RngKey key, const T* x, const T* w,
                  const T* wabs, const T* scales, const T* bias, T* y, bool* mask) {
  const int64_t G = p.groups, N = p.n, n_in = p.n_in, n_out = p.n_out;
  const int64_t ldx = G * p.in_g, ldy = G * p.out_g;
  const int64_t max_in = *std::max_element(p.in_sizes.begin(), p.in_sizes.end());
  const int64_t max_out = *std::max_element(p.out_sizes.begin(), p.out_sizes.end());

  // Phase 1: alpha per (group, input split, vector).
  std::vector<T> alpha(static_cast<size_t>(G * n_in * N), T(1));
  if (!io.perfect) {
    if (io.nm_type == kNmAbsMax || io.nm_type == kNmAverageAbsMax) {
      const T thres = static_cast<T>(io.nm_thres);
      at::parallel_for(0, N, 256, [&](int64_t b, int64_t e) {
        for (int64_t v = b; v < e; ++v)
          for (int64_t gi = 0; gi < G * n_in; ++gi) {
            const T* row = x + v * ldx + (gi / n_in) * p.in_g + p.in_off[gi % n_in];
            T m = 0;
            for (int64_t k = 0; k < p.in_sizes[gi % n_in]; ++k) m = std::max(m, std::abs(row[k]));
            if (io.nm_type == kNmAbsMax && io.nm_thres > 0) m = std::min(m, thres);
            alpha[gi * N + v] = m;
          }
      });
      if (io.nm_type == kNmAverageAbsMax)
        for (int64_t gi = 0; gi < G * n_in; ++gi) {
          double s = 0;
          for (int64_t v = 0; v < N; ++v) s += alpha[gi * N + v];
          std::fill(alpha.begin() + gi * N, alpha.begin() + (gi + 1) * N,
                    static_cast<T>(s / static_cast<double>(N)));
        }
    } else if (io.nm_type == kNmConstant) {
      std::fill(alpha.begin(), alpha.end(), static_cast<T>(io.nm_thres));
    }
  }

  // Phase 2: tasks over (group, output split, block of vectors); the block size depends on the
  // shapes only (large blocks: BLAS packs each tile once per block), so results do not depend
  // on the thread count. Small problems run inline (no thread wake-up for batch-1 latency).
  int64_t rb = 256;
  while (rb > 32 && G * n_out * ((N + rb - 1) / rb) < 4) rb /= 2;
  const int64_t n_blocks = (N + rb - 1) / rb, n_tasks = G * n_out * n_blocks;
  const int64_t macs = N * ldx * p.out_g;
  const int64_t grain = macs < (int64_t{1} << 22) ? n_tasks : 1;
  const T wn = static_cast<T>(io.w_noise);
  // The only nonzero column of a DAC'd vector (-1: none) or kDense: one-hot vectors (readouts
  // such as drift compensation's identity) read one weight column instead of a GEMM.
  constexpr int32_t kDense = -2;
  at::parallel_for(0, n_tasks, grain, [&](int64_t tb, int64_t te) {
    std::vector<T> ybuf(rb * max_out), vbuf(io.pcm() ? rb * max_out : 0);
    std::vector<T> xb(io.perfect ? 0 : rb * max_in), xb2(io.pcm() ? rb * max_in : 0);
    std::vector<T> norms(rb);
    std::vector<int32_t> onehot(rb, kDense);
    std::vector<T> xr, xr2;
    std::vector<float> nbuf(std::max(max_in, max_out) + 64), ubuf(nbuf.size());
    std::vector<int64_t> act, redo, next;
    for (int64_t t = tb; t < te; ++t) {
      const int64_t g = t / (n_out * n_blocks), j = (t / n_blocks) % n_out, blk = t % n_blocks;
      const int64_t n0 = blk * rb, m = std::min(N, n0 + rb) - n0;
      const int64_t so = p.out_sizes[j], oo = p.out_off[j];
      T* yb = y + n0 * ldy + g * p.out_g + oo;
      for (int64_t i = 0; i < n_in; ++i) {
        const int64_t si = p.in_sizes[i], xo = g * p.in_g + p.in_off[i];
        const int64_t gi = g * n_in + i, woff = (g * p.out_g + oo) * p.in_g + p.in_off[i];
        const uint32_t tile = static_cast<uint32_t>(gi * n_out + j);
        const T* sc = scales ? scales + gi * p.out_g + oo : nullptr;
        const bool pcm = io.pcm() && !io.perfect;
        // DAC of the block (keyed by vector and split: the same for every output split).
        // Vectors with alpha = 0 give 0: without a mask to fill, they skip the GEMM.
        act.clear();
        for (int64_t r = 0; r < m; ++r) {
          const int64_t v = n0 + r;
          if (io.perfect) {
            act.push_back(r);
            continue;
          }
          const T a = alpha[gi * N + v];
          if (mask == nullptr && a <= 0) {
            if (i == 0) std::fill(yb + r * ldy, yb + r * ldy + so, T(0));
            continue;
          }
          act.push_back(r);
          T* xq = xb.data() + r * si;
          dac_row(x + v * ldx + xo, xq, si, a > 0 ? a : T(1), io, key, static_cast<uint32_t>(v),
                  static_cast<uint32_t>(gi), 0, nbuf.data(), ubuf.data());
          if (io.additive()) norms[r] = row_norm(xq, si);
          if (pcm)
            for (int64_t k = 0; k < si; ++k) xb2[r * si + k] = xq[k] * xq[k];
          int32_t nz = -1;
          for (int64_t k = 0; k < si && nz != kDense; ++k)
            if (xq[k] != T(0)) nz = nz == -1 ? static_cast<int32_t>(k) : kDense;
          onehot[r] = nz;
        }
        if (io.perfect) std::fill(onehot.begin(), onehot.end(), kDense);
        // Dense vectors first (GEMM), then one-hot ones (a scaled weight column).
        std::stable_partition(act.begin(), act.end(),
                              [&](int64_t r) { return onehot[r] == kDense; });
        const int64_t na = static_cast<int64_t>(act.size());
        int64_t nd = 0;
        while (nd < na && onehot[act[nd]] == kDense) ++nd;
        const T* a1 = io.perfect ? x + n0 * ldx + xo : xb.data();
        const T* a2 = xb2.data();
        const int64_t lda = io.perfect ? ldx : si;
        if (nd < m) {  // gather the dense vectors
          xr.resize(nd * si);
          xr2.resize(pcm ? nd * si : 0);
          for (int64_t q = 0; q < nd; ++q) {
            std::copy_n(a1 + act[q] * lda, si, xr.data() + q * si);
            if (pcm) std::copy_n(a2 + act[q] * lda, si, xr2.data() + q * si);
          }
          a1 = xr.data();
          a2 = xr2.data();
        }
        gemm_nt(nd, so, si, a1, nd < m ? si : lda, w + woff, p.in_g, ybuf.data(), so);
        if (pcm) gemm_nt(nd, so, si, a2, nd < m ? si : lda, wabs + woff, p.in_g, vbuf.data(), so);
        // One-hot vectors: weight row by weight row (contiguous reads), one column each.
        for (int64_t o = 0; o < so && nd < na; ++o) {
          const T* wrow = w + woff + o * p.in_g;
          const T* arow = pcm ? wabs + woff + o * p.in_g : nullptr;
          for (int64_t q = nd; q < na; ++q) {
            const int32_t k = onehot[act[q]];
            const T xk = k < 0 ? T(0) : xb[act[q] * si + k];
            ybuf[q * so + o] = k < 0 ? T(0) : xk * wrow[k];
            if (pcm) vbuf[q * so + o] = k < 0 ? T(0) : (xk * xk) * arow[k];
          }
        }
        redo.clear();
        for (int64_t q = 0; q < na; ++q) {
          const int64_t r = act[q], v = n0 + r;
          T* yr = ybuf.data() + q * so;
          bool* keep = mask ? mask + (gi * N + v) * p.out_g + oo : nullptr;
          const T a = alpha[gi * N + v];
          bool hit = false;
          if (io.perfect) {
            if (keep) std::fill(keep, keep + so, true);
          } else {
            hit = out_row(yr, pcm ? vbuf.data() + q * so : nullptr,
                          io.additive() ? wn * norms[r] : T(0), so, io, key,
                          static_cast<uint32_t>(v), tile, 0, nbuf.data(), ubuf.data(), keep);
          }
          if (hit && io.bm_rounds > 0)
            redo.push_back(v);
          else
            accumulate(yb + r * ldy, yr, so, a > 0 ? a : T(1), sc, i == 0, a <= 0);
        }
        // Bound management: redo only the vectors that clipped, input halved each round.
        T red = 1;
        for (int64_t round = 1; round <= io.bm_rounds && !redo.empty(); ++round) {
          red *= 2;
          const int64_t k = static_cast<int64_t>(redo.size());
          xr.resize(k * si);
          if (io.pcm()) xr2.resize(k * si);
          for (int64_t q = 0; q < k; ++q) {
            const T a = alpha[gi * N + redo[q]];
            dac_row(x + redo[q] * ldx + xo, xr.data() + q * si, si, (a > 0 ? a : T(1)) * red,
                    io, key, static_cast<uint32_t>(redo[q]), static_cast<uint32_t>(gi), round,
                    nbuf.data(), ubuf.data());
            if (io.pcm())
              for (int64_t c = 0; c < si; ++c) xr2[q * si + c] = xr[q * si + c] * xr[q * si + c];
          }
          gemm_nt(k, so, si, xr.data(), si, w + woff, p.in_g, ybuf.data(), so);
          if (io.pcm()) gemm_nt(k, so, si, xr2.data(), si, wabs + woff, p.in_g, vbuf.data(), so);
          next.clear();
          for (int64_t q = 0; q < k; ++q) {
            const int64_t v = redo[q];
            T* yr = ybuf.data() + q * so;
            bool* keep = mask ? mask + (gi * N + v) * p.out_g + oo : nullptr;
            const T add = io.additive() ? wn * row_norm(xr.data() + q * si, si) : T(0);
            const bool hit = out_row(yr, io.pcm() ? vbuf.data() + q * so : nullptr, add, so, io,
                                     key, static_cast<uint32_t>(v), tile, round, nbuf.data(),
                                     ubuf.data(), keep);
            const T a = alpha[gi * N + v];
            if (hit && round < io.bm_rounds)
              next.push_back(v);
            else
              accumulate(yb + (v - n0) * ldy, yr, so, (a > 0 ? a : T(1)) * red, sc, i == 0,
                         a <= 0);
          }
          redo.swap(next);
        }
      }
      if (bias != nullptr)
        for (int64_t r = 0; r < m; ++r)
          for (int64_t o = 0; o < so; ++o) yb[r * ldy + o] += bias[g * p.out_g + oo + o];
    }
  });
}

std::vector<int64_t> offsets(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> off(sizes.size(), 0);
  for (size_t k = 1; k < sizes.size(); ++k) off[k] = off[k - 1] + sizes[k - 1];
  return off;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> tile_forward_cpu(
    const at::Tensor& x_in, const at::Tensor& weight_in,
    const std::optional<at::Tensor>& out_scales, const std::optional<at::Tensor>& bias_in,
    const at::Tensor& seed, at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
    bool is_perfect, int64_t nm_type, double nm_thres, double inp_bound, double inp_step,
    bool inp_sto_round, double inp_noise, double out_bound, double out_step, bool out_sto_round,
    double out_noise, int64_t w_noise_type, double w_noise, int64_t bm_rounds, bool need_mask) {
  TORCH_CHECK(weight_in.dim() == 3, "analog::tile_forward: weight must be [G, out_g, in_g]");
  const int64_t G = weight_in.size(0), out_g = weight_in.size(1), in_g = weight_in.size(2);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == G * in_g,
              "analog::tile_forward: x must be [N, G * in_g]");
  const int64_t N = x_in.size(0);
  const int64_t n_in = static_cast<int64_t>(in_sizes.size());
  const int64_t n_out = static_cast<int64_t>(out_sizes.size());
  const bool has_scales = out_scales.has_value() && out_scales->defined();
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  const auto empty_mask = x_in.new_empty({0}, x_in.options().dtype(at::kBool));

  if (is_perfect && !has_scales) {  // fast path: one (batched) matrix product
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
  const auto work = (dtype == at::kFloat || dtype == at::kDouble) ? dtype : at::kFloat;
  const auto x = x_in.detach().to(work).contiguous();
  const auto weight = weight_in.detach().to(work).contiguous();
  at::Tensor scales, bias, wabs;
  if (has_scales) {
    TORCH_CHECK(out_scales->numel() == G * n_in * out_g,
                "analog::tile_forward: out_scales must be [G, n_in, out_g]");
    scales = out_scales->detach().to(work).contiguous();
  }
  if (has_bias) bias = bias_in->detach().to(work).contiguous();
  if (!is_perfect && w_noise_type == kWnPcmRead && w_noise > 0) wabs = weight.abs();

  Plan p{G, out_g, in_g, N, n_in, n_out, in_sizes.vec(), out_sizes.vec(), {}, {}};
  p.in_off = offsets(p.in_sizes);
  p.out_off = offsets(p.out_sizes);
  TORCH_CHECK(n_in > 0 && n_out > 0 && p.in_off.back() + p.in_sizes.back() == in_g &&
                  p.out_off.back() + p.out_sizes.back() == out_g,
              "analog::tile_forward: in_sizes/out_sizes must split the weight's columns/rows");
  Io io{is_perfect, nm_type, nm_thres, inp_bound, inp_step, inp_sto_round, inp_noise,
        out_bound, out_step, out_sto_round, out_noise, w_noise_type, w_noise, bm_rounds};
  const RngKey key = make_key(seed.item<int64_t>());

  auto y = at::empty({N, G * out_g}, x.options());
  auto mask = need_mask ? at::empty({G, n_in, N, out_g}, x.options().dtype(at::kBool))
                        : empty_mask;
  if (N > 0) {
    AT_DISPATCH_FLOATING_TYPES(work, "analog_tile_forward", [&] {
      forward_impl<scalar_t>(p, io, key, x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                             wabs.defined() ? wabs.data_ptr<scalar_t>() : nullptr,
                             has_scales ? scales.data_ptr<scalar_t>() : nullptr,
                             has_bias ? bias.data_ptr<scalar_t>() : nullptr,
                             y.data_ptr<scalar_t>(), need_mask ? mask.data_ptr<bool>() : nullptr);
    });
  }
  return {y.to(dtype), mask};
}

}  // namespace analog
