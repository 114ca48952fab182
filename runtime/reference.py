"""Pure-PyTorch reference kernels of the ``analog`` ops.

These define the semantics (the C++/CUDA kernels must agree with them) and serve as the fallback
when the compiled library is absent. They are vectorised over all tiles of a layer: the tiles are
gathered into a padded ``[groups, n_in, n_out, tile_rows, tile_cols]`` view, so one batched matmul
does every tile; only bound management loops, over its halving rounds.

Forward of tile ``(g, i, j)`` for input vector ``x_i`` (columns of split ``i``):
noise management (alpha per vector: ABS_MAX, MAX, ABS_MAX_NP_SUM, AVERAGE_ABS_MAX, CONSTANT,
NONE) -> DAC (``round((x * (1 / (alpha * red))) / step) * step``: aihwkit's arithmetic, one
reciprocal per vector, a multiply and a division by the step, as the compiled kernels compute
it; it decides the rounding ties of a halved input; clip to ``+-inp_bound``, + input noise) ->
MVM -> IR drop -> weight read noise -> output noise (per tile row with ``out_noise_std``) ->
SHIFT -> ADC (round, clip to ``+-out_bound``) -> bound management (vectors with an output beyond
the bound are redone with ``red`` doubled, per vector and tile; ITERATIVE_WORST_CASE first at
the ABS_MAX_NP_SUM scale and ``red`` 1) -> ``* alpha * red``. Then ``* out_scales`` per tile and
row, the sum over input splits in floating point, ``+ bias``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .periphery import BoundManagement as BM
from .periphery import NoiseManagement as NM
from .periphery import Periphery, unpack
from .periphery import WeightNoise as WN


def _pad_index(sizes: list[int], pad_value: int) -> tuple[Tensor, Tensor]:
    """``[n, max(sizes)]`` gather index into a dimension (padding -> ``pad_value``) and its
    validity mask."""
    width = max(sizes)
    idx = torch.full((len(sizes), width), pad_value, dtype=torch.long)
    start = 0
    for k, s in enumerate(sizes):
        idx[k, :s] = torch.arange(start, start + s)
        start += s
    return idx, idx != pad_value


def _quantize(v: Tensor, step: float, sto_round: bool, gen: torch.Generator) -> Tensor:
    if step <= 0:
        return v
    if sto_round:
        noise = torch.rand(v.shape, generator=gen, device=v.device, dtype=v.dtype)
        return torch.floor(v / step + noise) * step
    return torch.round(v / step) * step


def _dac(x: Tensor, scale: Tensor, step: float, sto_round: bool,
         gen: torch.Generator) -> Tensor:
    """``x / scale`` quantized to ``step``: ``round((x * (1 / scale)) / step) * step``."""
    if step <= 0:
        return x / scale
    v = (x * (1.0 / scale)) / step
    if sto_round:
        noise = torch.rand(v.shape, generator=gen, device=v.device, dtype=v.dtype)
        return torch.floor(v + noise) * step
    return torch.round(v) * step


def _noise_management(xp: Tensor, valid_in: Tensor, p: Periphery, nm_type: int) -> Tensor:
    """Input scale ``[G, n_in, N, 1]`` of each vector segment ``xp`` ``[G, n_in, N, Ti]``
    (``valid_in``: the columns that are not padding); <= 0 means the output is 0."""
    groups, n_in, n = xp.shape[:3]
    if nm_type == NM.CONSTANT:
        return xp.new_full((groups, n_in, n, 1), p.nm_thres)
    if nm_type == NM.NONE:
        return xp.new_ones((groups, n_in, n, 1))
    amax = xp.abs().amax(-1, keepdim=True)
    if nm_type == NM.AVERAGE_ABS_MAX:
        return amax.mean(2, keepdim=True).expand(-1, -1, n, -1)
    if nm_type == NM.MAX:  # signed: padding must not count as a 0
        amax = torch.where(valid_in, xp, torch.full_like(xp, -torch.inf)).amax(-1, keepdim=True)
    if p.nm_thres > 0:
        amax = amax.clamp_max(p.nm_thres)
    if nm_type != NM.ABS_MAX_NP_SUM:
        return amax
    # aihwkit's AbsMaxNPSum: the larger of the positive and negative sums, times the assumed
    # largest weight, must fit the output range, limited by what the DAC can resolve
    total = torch.maximum(xp.clamp_min(0).sum(-1, keepdim=True),
                          -xp.clamp_max(0).sum(-1, keepdim=True))
    np_scale = total * p.nm_assumed_wmax / (p.out_bound if p.out_bound > 0 else 1.0)
    if p.inp_step > 0:
        np_scale = torch.minimum(amax / p.inp_step * p.max_bm_res, np_scale)
    return torch.maximum(amax, np_scale)


def _out_noise_std(p: Periphery, wt_shape: torch.Size, dev: torch.device,
                   dtype: torch.dtype) -> Tensor | float | None:
    """The output noise std: ``out_noise``, or with ``out_noise_std`` one value per tile row
    ``|out_noise (1 + out_noise_std xi)|`` (``[G, n_in, n_out, 1, To]``), ``xi`` drawn from the
    chip seed (the same chip, the same columns); None when there is no output noise."""
    if p.out_noise_std <= 0:
        return p.out_noise if p.out_noise > 0 else None
    gen = torch.Generator(device=dev)
    gen.manual_seed(p.chip_seed & 0x7FFFFFFFFFFFFFFF)
    shape = (*wt_shape[:3], 1, wt_shape[-1])
    xi = torch.randn(shape, generator=gen, device=dev, dtype=dtype)
    return (p.out_noise * (1 + p.out_noise_std * xi)).abs()


def tile_forward(x: Tensor, weight: Tensor, out_scales: Tensor | None, bias: Tensor | None,
                 seed: Tensor, in_sizes: list[int], out_sizes: list[int], io_f: list[float],
                 io_i: list[int], need_mask: bool) -> tuple[Tensor, Tensor]:
    """Reference kernel of ``analog::tile_forward`` (see the module docstring); ``io_f``,
    ``io_i``: the packed periphery (``runtime/periphery.py``)."""
    p = unpack(io_f, io_i)
    groups, out_g, in_g = weight.shape
    n = x.shape[0]
    n_in, n_out = len(in_sizes), len(out_sizes)
    xg = x.reshape(n, groups, in_g).transpose(0, 1)  # [G, N, in_g]
    empty_mask = x.new_empty((0,), dtype=torch.bool)

    if p.is_perfect and out_scales is None:
        y = torch.matmul(xg, weight.transpose(1, 2))  # [G, N, out_g]
        y = y.transpose(0, 1).reshape(n, groups * out_g)
        if bias is not None:
            y = y + bias
        mask = x.new_ones((groups, n_in, n, out_g), dtype=torch.bool) if need_mask else empty_mask
        return y, mask

    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    dev = x.device
    idx_in, _ = _pad_index(in_sizes, in_g)
    idx_out, valid_out = _pad_index(out_sizes, out_g)
    idx_in, idx_out, valid_out = idx_in.to(dev), idx_out.to(dev), valid_out.to(dev)

    xp = torch.cat([xg, xg.new_zeros(groups, n, 1)], dim=2)[:, :, idx_in]  # [G, N, n_in, Ti]
    xp = xp.permute(0, 2, 1, 3)  # [G, n_in, N, Ti]
    wz = torch.nn.functional.pad(weight, (0, 1, 0, 1))
    wp = wz[:, idx_out.view(1, n_out, -1, 1), idx_in.view(n_in, 1, 1, -1)]  # [G,n_in,n_out,To,Ti]
    wt = wp.transpose(-1, -2)
    valid = valid_out.view(1, 1, n_out, 1, -1)

    if p.is_perfect:
        y = torch.matmul(xp.unsqueeze(2), wt)  # [G, n_in, n_out, N, To]
        clipped = torch.zeros_like(y, dtype=torch.bool)
    else:
        valid_in = (idx_in != in_g).view(1, n_in, 1, -1)
        alpha = _noise_management(xp, valid_in, p, p.nm_type)
        zero = alpha <= 0
        alpha = torch.where(zero, torch.ones_like(alpha), alpha)
        w_abs_t = wt.abs() if (p.w_noise_type == WN.PCM_READ and p.w_noise > 0) \
            or p.ir_drop > 0 else None
        out_std = _out_noise_std(p, wt.shape, dev, wt.dtype)
        n_split = torch.tensor(in_sizes, device=dev, dtype=wt.dtype).view(1, n_in, 1, 1, 1)
        ramp = None
        if p.ir_drop > 0:  # x_j (1 - (1 - j / n)^2): the inputs far from the output drop more
            j = torch.arange(idx_in.shape[1], device=dev, dtype=wt.dtype)
            q = 1 - j / n_split.view(n_in, 1)
            ramp = (1 - q * q).view(1, n_in, 1, -1)

        def mvm(scale: Tensor, red: float) -> tuple[Tensor, Tensor, Tensor]:
            xs = _dac(xp, scale * red, p.inp_step, p.inp_sto_round, gen)
            xs = xs.clamp(-p.inp_bound, p.inp_bound)
            if p.inp_noise > 0:
                xs = xs + p.inp_noise * torch.randn(xs.shape, generator=gen, device=dev,
                                                    dtype=xs.dtype)
            xs5 = xs.unsqueeze(2)
            out = torch.matmul(xs5, wt)  # [G, n_in, n_out, N, To]
            if ramp is not None:  # aihwkit's IR drop: deterministic, before the noise
                a = (n_split / p.ir_drop_g_ratio) * torch.matmul(xs5.abs(), w_abs_t)
                c = a * (a * (0.05 * a - 0.2) + 0.5)
                out = out - c * (p.ir_drop * torch.matmul((xs * ramp).unsqueeze(2), wt))
            if p.w_noise > 0 and p.w_noise_type == WN.ADDITIVE_CONSTANT:
                std = p.w_noise * xs5.norm(dim=-1, keepdim=True)
                out = out + std * torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
            elif p.w_noise > 0 and p.w_noise_type == WN.PCM_READ:
                std = p.w_noise * torch.matmul(xs5 * xs5, w_abs_t).clamp_min(0).sqrt()
                out = out + std * torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
            if out_std is not None:
                out = out + out_std * torch.randn(out.shape, generator=gen, device=dev,
                                                  dtype=out.dtype)
            if p.bm_type == BM.SHIFT:  # the largest output of the tile to out_bound
                top = torch.where(valid, out, torch.full_like(out, -torch.inf)).amax(-1, True)
                out = out + (p.out_bound - top)
            out = _quantize(out, p.out_step, p.out_sto_round, gen)
            if p.out_bound > 0:  # aihwkit: an output beyond (not at) the bound clips
                over, under = (out > p.out_bound) & valid, (out < -p.out_bound) & valid
                clip = over | under
                hit = clip if p.bm_neg else over
                out = out.clamp(-p.out_bound, p.out_bound)
            else:
                clip = hit = torch.zeros_like(out, dtype=torch.bool)
            return out * (scale.unsqueeze(2) * red), clip, hit

        y, clipped, hit = mvm(alpha, 1.0)
        redo = hit.any(-1, keepdim=True)
        red, scale = 1.0, alpha
        for rnd in range(1, p.bm_rounds + 1):
            if not bool(redo.any()):
                break
            if p.bm_type == BM.ITERATIVE_WORST_CASE and rnd == 1:
                # aihwkit's worst case: the ABS_MAX_NP_SUM scale, the reduction back to 1
                if p.nm_type != NM.NONE:
                    scale = _noise_management(xp, valid_in, p, NM.ABS_MAX_NP_SUM)
                    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            else:
                red *= 2.0
            y_new, clip_new, hit_new = mvm(scale, red)
            y = torch.where(redo, y_new, y)
            clipped = torch.where(redo, clip_new, clipped)
            redo = redo & hit_new.any(-1, keepdim=True)
        y = torch.where(zero.unsqueeze(2), torch.zeros_like(y), y)

    # Back to the logical layout: [G, n_in, N, out_g].
    flat = valid_out.flatten().nonzero().squeeze(1)
    y = y.permute(0, 1, 3, 2, 4).reshape(groups, n_in, n, -1).index_select(3, flat)
    if out_scales is not None:
        y = y * out_scales.unsqueeze(2)
    out = y.sum(1).transpose(0, 1).reshape(n, groups * out_g)
    if bias is not None:
        out = out + bias
    if not need_mask:
        return out, empty_mask
    keep = ~clipped.permute(0, 1, 3, 2, 4).reshape(groups, n_in, n, -1).index_select(3, flat)
    return out, keep


def tile_readout(weight: Tensor, seed: Tensor, out_sizes: list[int], io_f: list[float],
                 io_i: list[int]) -> Tensor:
    """Reference kernel of ``analog::tile_readout``: ``tile_forward`` of the identity (the rows
    of ``eye(in_g)``, repeated over the groups) through one input split of ``weight``."""
    groups, _, in_g = weight.shape
    eye = torch.eye(in_g, device=weight.device, dtype=weight.dtype).repeat(1, groups)
    return torch.ops.analog.tile_forward(eye, weight, None, None, seed, [in_g], list(out_sizes),
                                         io_f, io_i, False)[0]


def tile_readout_mean(weight: Tensor, seed: Tensor, out_sizes: list[int], io_f: list[float],
                      io_i: list[int]) -> Tensor:
    """Reference kernel of ``analog::tile_readout_mean``: the mean ``|y|`` of ``tile_readout``
    per output (``[G * out_g]``, in the weight's dtype; 0 for an empty split), as drift
    compensation reads a tile out."""
    y = tile_readout(weight, seed, out_sizes, io_f, io_i)
    if y.shape[0] == 0:
        return y.new_zeros(y.shape[1])
    return y.double().abs().mean(0).to(weight.dtype)


def tile_backward(grad_y: Tensor, x: Tensor, weight: Tensor, out_scales: Tensor | None,
                  mask: Tensor | None, in_sizes: list[int], out_sizes: list[int],
                  need_input_grad: bool, need_weight_grad: bool) -> tuple[Tensor, Tensor]:
    """Reference kernel of ``analog::tile_backward``: straight-through gradients of
    ``tile_forward``. ``mask`` (``[G, n_in, N, out_g]``, True = pass) cuts the gradient of
    outputs that clipped; ``out_scales`` scales it per tile row. Returns ``(grad_x, grad_w)``;
    an unneeded one is an empty tensor."""
    groups, out_g, in_g = weight.shape
    n = x.shape[0]
    n_in = len(in_sizes)
    gy = grad_y.reshape(n, groups, out_g).transpose(0, 1)  # [G, N, out_g]
    xg = x.reshape(n, groups, in_g).transpose(0, 1)  # [G, N, in_g]
    empty = x.new_empty((0,))
    if out_scales is None and mask is None:
        gx = torch.matmul(gy, weight).transpose(0, 1).reshape(n, groups * in_g) \
            if need_input_grad else empty
        gw = torch.matmul(gy.transpose(1, 2), xg) if need_weight_grad else empty
        return gx, gw
    # Per input split i: the gradient reaching tile row o is gy * scale[i, o] * mask[i, n, o].
    gi = gy.unsqueeze(1).expand(groups, n_in, n, out_g)
    if out_scales is not None:
        gi = gi * out_scales.unsqueeze(2)
    if mask is not None:
        gi = gi * mask
    in_index = torch.repeat_interleave(torch.arange(n_in, device=x.device),
                                       torch.tensor(in_sizes, device=x.device))
    gx, gw = empty, empty
    if need_input_grad:
        t = torch.matmul(gi, weight.unsqueeze(1))  # [G, n_in, N, in_g]
        idx = in_index.view(1, 1, 1, in_g).expand(groups, 1, n, in_g)
        gx = t.gather(1, idx).squeeze(1).transpose(0, 1).reshape(n, groups * in_g)
    if need_weight_grad:
        u = torch.matmul(gi.transpose(2, 3), xg.unsqueeze(1))  # [G, n_in, out_g, in_g]
        idx = in_index.view(1, 1, 1, in_g).expand(groups, 1, out_g, in_g)
        gw = u.gather(1, idx).squeeze(1)
    return gx, gw
