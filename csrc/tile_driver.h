// The blocked driver of analog::tile_forward's CPU kernels (semantics: runtime/reference.py),
// shared by the dense op (x holds the input vectors) and the 2-D convolution op (the vectors are
// the receptive fields of an image, gathered on the fly: no im2col buffer ever exists).
//
// Phase 1 (AVERAGE_ABS_MAX only): the batch-wide noise-management scale. Phase 2, one task per
// (group, output split, block of vectors): per input split, load the block's segments (a copy
// or a gather), noise management and DAC in place, a BLAS GEMM with the tile (plus |W| x^2 for
// PCM read noise), then one pass over the output block (noise, ADC, clip test, rescale, output
// scales, partial-sum accumulation). Vectors that clipped are loaded again and redone with the
// input halved (bound management) inside the task, round after round, on a smaller GEMM. Random
// numbers come from Philox keyed by (element, vector, tile, round, stream): reproducible per
// seed, independent of the number of threads, and the same for both row sources.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "rng.h"
#include "row_sources.h"
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
namespace driver {

using namespace periphery;  // Io, dac_row, out_row, accumulate (tile_periphery.h)

template <typename T>
void gemm_aten(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
               int64_t ldb, T* c, int64_t ldc, bool a_t) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto at_ = a_t ? at::from_blob(const_cast<T*>(a), {k, m}, {lda, 1}, opt).t()
                 : at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  auto bt = at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opt);
  auto ct = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  at::mm_out(ct, at_, bt.t());
}

// Row-major C[m, n] = A[m, k] @ B[n, k]^T, with A given as rows (lda >= k) or, when a_t, as
// its transpose [k, m] (lda >= m). Column-major BLAS sees C^T = B^T' @ A^T.
template <typename T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool a_t = false) {
  if (m == 0 || n == 0) return;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb);
  const int ildc = static_cast<int>(ldc);
  const T one = 1, zero = 0;
  const char* ta = a_t ? "T" : "N";
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r) std::fill(c + r * ldc, c + r * ldc + n, T(0));
  } else if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr)
      sgemm_("T", ta, &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc, a_t);
  } else {
    if (dgemm_ != nullptr)
      dgemm_("T", ta, &in, &im, &ik, &one, b, &ildb, a, &ilda, &zero, c, &ildc);
    else
      gemm_aten(m, n, k, a, lda, b, ldb, c, ldc, a_t);
  }
}

struct Plan {
  int64_t groups, out_g, in_g, n, n_in, n_out;
  std::vector<int64_t> in_sizes, out_sizes, in_off, out_off;
};

// Noise-management scale of one input segment (ABS_MAX, CONSTANT, NONE; AVERAGE_ABS_MAX is
// batch-wide and comes from phase 1).
template <typename T>
T segment_alpha(const T* row, int64_t len, const Io& io) {
  if (io.nm_type == nm::CONSTANT) return static_cast<T>(io.nm_thres);
  if (io.nm_type != nm::ABS_MAX) return T(1);
  T m = 0;
  for (int64_t k = 0; k < len; ++k) m = std::max(m, std::abs(row[k]));
  return io.nm_thres > 0 ? std::min(m, static_cast<T>(io.nm_thres)) : m;
}

template <typename T, typename Src>
void forward_impl(const Plan& p, const Io& io, RngKey key, const Src& src, const T* w,
                  const T* wabs, const T* scales, const T* bias, T* y, bool* mask,
                  int64_t image_positions = 0) {
  // y is [N, G * out_g] or, with image_positions = P > 0, [N / P, G * out_g, P] (NCHW): each
  // task then accumulates its block in a buffer and writes it out transposed at the end.
  const int64_t G = p.groups, N = p.n, n_in = p.n_in, n_out = p.n_out;
  const int64_t P = image_positions, ch = G * p.out_g;
  const int64_t max_in = *std::max_element(p.in_sizes.begin(), p.in_sizes.end());
  const int64_t max_out = *std::max_element(p.out_sizes.begin(), p.out_sizes.end());

  // Phase 1 (AVERAGE_ABS_MAX): the batch mean of the per-vector abs-max, per (group, split).
  const bool batch_nm = !io.is_perfect && io.nm_type == nm::AVERAGE_ABS_MAX;
  std::vector<T> mean_alpha(batch_nm ? G * n_in : 0);
  if (batch_nm) {
    std::vector<T> amax(static_cast<size_t>(G * n_in * N));
    at::parallel_for(0, N, 256, [&](int64_t b, int64_t e) {
      std::vector<T> scratch(src.kDirect ? 0 : max_in);
      for (int64_t v = b; v < e; ++v)
        for (int64_t gi = 0; gi < G * n_in; ++gi) {
          const int64_t len = p.in_sizes[gi % n_in];
          const T* row = src.row(v, (gi / n_in) * p.in_g + p.in_off[gi % n_in], len,
                                 scratch.data());
          T m = 0;
          for (int64_t k = 0; k < len; ++k) m = std::max(m, std::abs(row[k]));
          amax[gi * N + v] = m;
        }
    });
    for (int64_t gi = 0; gi < G * n_in; ++gi) {
      double s = 0;
      for (int64_t v = 0; v < N; ++v) s += amax[gi * N + v];
      mean_alpha[gi] = static_cast<T>(s / static_cast<double>(N));
    }
  }

  // Phase 2: tasks over (group, output split, block of vectors); the block size depends on the
  // shapes only (large blocks: BLAS packs each tile once per block), so results do not depend
  // on the thread count or on which thread runs a task. Threads take tasks from a shared
  // counter, so a thread slowed down (a busy core, more bound-management redos) does not hold
  // the others up. Small problems run inline (no thread wake-up for batch-1 latency).
  int64_t rb = 256;
  while (rb > 32 && G * n_out * ((N + rb - 1) / rb) < 4) rb /= 2;
  const int64_t n_blocks = (N + rb - 1) / rb, n_tasks = G * n_out * n_blocks;
  const int64_t macs = N * G * p.in_g * p.out_g;
  const int64_t workers =
      macs < (int64_t{1} << 18) ? 1 : std::min<int64_t>(at::get_num_threads(), n_tasks);
  std::atomic<int64_t> next_task{0};
  const T wn = static_cast<T>(io.w_noise);
  // The only nonzero column of a DAC'd vector (-1: none) or kDense: one-hot vectors (readouts
  // such as drift compensation's identity) read one weight column instead of a GEMM.
  constexpr int32_t kDense = -2;
  // Receptive-field sources load whole blocks transposed when the DAC is deterministic.
  const bool block = Src::kBlockT && !io.is_perfect && !(io.inp_step > 0 && io.inp_sto_round) &&
                     io.inp_noise <= 0;
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<T> ybuf(rb * max_out), vbuf(io.pcm() ? rb * max_out : 0);
    std::vector<T> xb(io.is_perfect && src.kDirect ? 0 : rb * max_in);
    std::vector<T> xb2(io.pcm() ? rb * max_in : 0);
    std::vector<T> norms(rb), ab(rb), ar(rb), inv(rb);
    std::vector<int32_t> onehot(rb, kDense);
    std::vector<T> xr, xr2;
    std::vector<float> nbuf(std::max(max_in, max_out) + 64), ubuf(nbuf.size());
    std::vector<int64_t> act, redo, next;
    std::vector<T> acc(P > 0 ? rb * max_out : 0);
    for (int64_t t = next_task++; t < n_tasks; t = next_task++) {
      const int64_t g = t / (n_out * n_blocks), j = (t / n_blocks) % n_out, blk = t % n_blocks;
      const int64_t n0 = blk * rb, m = std::min(N, n0 + rb) - n0;
      const int64_t so = p.out_sizes[j], oo = p.out_off[j];
      const int64_t ldy = P > 0 ? so : ch;
      T* yb = P > 0 ? acc.data() : y + n0 * ch + g * p.out_g + oo;
      for (int64_t i = 0; i < n_in; ++i) {
        const int64_t si = p.in_sizes[i], xo = g * p.in_g + p.in_off[i];
        const int64_t gi = g * n_in + i, woff = (g * p.out_g + oo) * p.in_g + p.in_off[i];
        const uint32_t tile = static_cast<uint32_t>(gi * n_out + j);
        const T* sc = scales ? scales + gi * p.out_g + oo : nullptr;
        const bool pcm = io.pcm() && !io.is_perfect;
        // Load, noise management and DAC of the block (keyed by vector and split: the same for
        // every output split). Vectors with alpha = 0 give 0: without a mask to fill, they
        // skip the output pass (and, per vector, the GEMM).
        act.clear();
        int64_t na = 0;
        if constexpr (Src::kBlockT) {
          if (block) {
            T* xt = xb.data();
            const bool absmax = !batch_nm && io.nm_type == nm::ABS_MAX;
            src.block_t(n0, m, xo, si, xt, absmax ? ab.data() : nullptr);
            if (!absmax) {
              std::fill(ab.begin(), ab.begin() + m,
                        batch_nm ? mean_alpha[gi] : segment_alpha<T>(nullptr, 0, io));
            } else {
              if (io.nm_thres > 0)
                for (int64_t r = 0; r < m; ++r)
                  ab[r] = std::min(ab[r], static_cast<T>(io.nm_thres));
            }
            for (int64_t r = 0; r < m; ++r) {
              ar[r] = ab[r] > 0 ? ab[r] : T(1);
              if (mask == nullptr && ab[r] <= 0) {
                if (i == 0) std::fill(yb + r * ldy, yb + r * ldy + so, T(0));
              } else {
                act.push_back(r);
              }
            }
            dac_block_t(xt, m, si, ar.data(), inv.data(), io);
            if (io.additive()) block_norm_t(xt, m, si, norms.data());
            gemm_nt(m, so, si, xt, m, w + woff, p.in_g, ybuf.data(), so, true);
            if (pcm) {
              for (int64_t k = 0; k < m * si; ++k) xb2[k] = xt[k] * xt[k];
              gemm_nt(m, so, si, xb2.data(), m, wabs + woff, p.in_g, vbuf.data(), so, true);
            }
            na = static_cast<int64_t>(act.size());
          }
        }
        if (!block) {
          for (int64_t r = 0; r < m; ++r) {
            const int64_t v = n0 + r;
            if (io.is_perfect) {
              if (!src.kDirect) src.row(v, xo, si, xb.data() + r * si);
              act.push_back(r);
              continue;
            }
            T* xq = xb.data() + r * si;
            const T* xv = src.row(v, xo, si, xq);
            const T a = batch_nm ? mean_alpha[gi] : segment_alpha(xv, si, io);
            ab[r] = a;
            if (mask == nullptr && a <= 0) {
              if (i == 0) std::fill(yb + r * ldy, yb + r * ldy + so, T(0));
              continue;
            }
            act.push_back(r);
            dac_row(xv, xq, si, a > 0 ? a : T(1), io, key, static_cast<uint32_t>(v),
                    static_cast<uint32_t>(gi), 0, nbuf.data(), ubuf.data());
            if (io.additive()) norms[r] = row_norm(xq, si);
            if (pcm)
              for (int64_t k = 0; k < si; ++k) xb2[r * si + k] = xq[k] * xq[k];
            onehot[r] = sole_nonzero(xq, si);  // kDense (-2) when two or more
          }
          if (io.is_perfect) {
            std::fill(onehot.begin(), onehot.end(), kDense);
            std::fill(ab.begin(), ab.end(), T(1));
          }
          // Dense vectors first (GEMM), then one-hot ones (a scaled weight column).
          std::stable_partition(act.begin(), act.end(),
                                [&](int64_t r) { return onehot[r] == kDense; });
          na = static_cast<int64_t>(act.size());
          int64_t nd = 0;
          while (nd < na && onehot[act[nd]] == kDense) ++nd;
          const T* a1 = xb.data();
          const T* a2 = xb2.data();
          int64_t lda = si;
          if constexpr (Src::kDirect) {
            if (io.is_perfect) {  // the GEMM reads the input in place
              a1 = src.row(n0, xo, si, nullptr);
              lda = src.ld;
            }
          }
          if (nd < m) {  // gather the dense vectors
            xr.resize(nd * si);
            xr2.resize(pcm ? nd * si : 0);
            for (int64_t q = 0; q < nd; ++q) {
              std::copy_n(a1 + act[q] * lda, si, xr.data() + q * si);
              if (pcm) std::copy_n(a2 + act[q] * si, si, xr2.data() + q * si);
            }
            a1 = xr.data();
            a2 = xr2.data();
          }
          gemm_nt(nd, so, si, a1, nd < m ? si : lda, w + woff, p.in_g, ybuf.data(), so);
          if (pcm) gemm_nt(nd, so, si, a2, si, wabs + woff, p.in_g, vbuf.data(), so);
          // One-hot vectors: one weight column each, written as a contiguous output row (the
          // column's values, a weight row apart, come from L2; writing an output column instead
          // strides by the tile width, which thrashes one cache set).
          for (int64_t q = nd; q < na; ++q) {
            const int32_t k = onehot[act[q]];
            T* yq = ybuf.data() + q * so;
            T* vq = pcm ? vbuf.data() + q * so : nullptr;
            if (k < 0) {
              std::fill(yq, yq + so, T(0));
              if (pcm) std::fill(vq, vq + so, T(0));
              continue;
            }
            const T xk = xb[act[q] * si + k];
            const T* wcol = w + woff + k;
            for (int64_t o = 0; o < so; ++o) yq[o] = xk * wcol[o * p.in_g];
            if (pcm) {
              const T* acol = wabs + woff + k;
              for (int64_t o = 0; o < so; ++o) vq[o] = (xk * xk) * acol[o * p.in_g];
            }
          }
        }
        redo.clear();
        for (int64_t q = 0; q < na; ++q) {
          // the block path's GEMM covers every vector of the block, the other one act's only
          const int64_t r = act[q], v = n0 + r, yq = block ? r : q;
          T* yr = ybuf.data() + yq * so;
          bool* keep = mask ? mask + (gi * N + v) * p.out_g + oo : nullptr;
          const T a = ab[r];
          bool hit = false;
          if (io.is_perfect) {
            if (keep) std::fill(keep, keep + so, true);
          } else {
            hit = out_row(yr, pcm ? vbuf.data() + yq * so : nullptr,
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
            const T a = ab[redo[q] - n0];
            T* xq = xr.data() + q * si;
            dac_row(src.row(redo[q], xo, si, xq), xq, si, (a > 0 ? a : T(1)) * red, io, key,
                    static_cast<uint32_t>(redo[q]), static_cast<uint32_t>(gi), round,
                    nbuf.data(), ubuf.data());
            if (io.pcm())
              for (int64_t c = 0; c < si; ++c) xr2[q * si + c] = xq[c] * xq[c];
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
            const T a = ab[v - n0];
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
      for (int64_t r = 0; r < m && P > 0;) {  // NCHW: one contiguous run per image and channel
        const int64_t v = n0 + r, pos = v % P, run = std::min(m - r, P - pos);
        T* dst = y + ((v / P) * ch + g * p.out_g + oo) * P + pos;
        // Channel by channel: contiguous writes; the run's block rows stay in L1 across
        // channels (writing all channels per position instead strides by P, which for
        // power-of-two image sizes maps every store to one cache set).
        for (int64_t o = 0; o < so; ++o)
          for (int64_t q = 0; q < run; ++q) dst[o * P + q] = yb[(r + q) * so + o];
        r += run;
      }
    }
  });
}

}  // namespace driver
}  // namespace analog
