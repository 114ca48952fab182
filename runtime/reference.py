"""Pure-PyTorch reference kernels of the ``analog`` ops.

These define the semantics (the C++/CUDA kernels must agree with them) and serve as the fallback
when the compiled library is absent. They are vectorised over all tiles of a layer: the tiles are
gathered into a padded ``[groups, n_in, n_out, tile_rows, tile_cols]`` view, so one batched matmul
does every tile; only bound management loops, over its halving rounds.

Forward of tile ``(g, i, j)`` for input vector ``x_i`` (columns of split ``i``):
noise management (alpha per vector) -> DAC (``round(x * (1 / (alpha * red * step))) * step``:
one reciprocal per vector, then multiplies, as the compiled kernels compute it; clip to
``+-inp_bound``, + input noise) -> MVM -> weight read noise -> output noise -> ADC (round, clip to
``+-out_bound``) -> ITERATIVE bound management (vectors whose output clipped are redone with
``red`` doubled, per vector and tile) -> ``* alpha * red``. Then ``* out_scales`` per tile and
row, the sum over input splits in floating point, ``+ bias``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .periphery import NoiseManagement as NM
from .periphery import WeightNoise as WN
from .periphery import unpack


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
    """``x / scale`` quantized to ``step``: ``round(x * (1 / (scale * step))) * step``."""
    if step <= 0:
        return x / scale
    v = x * (1.0 / (scale * step))
    if sto_round:
        noise = torch.rand(v.shape, generator=gen, device=v.device, dtype=v.dtype)
        return torch.floor(v + noise) * step
    return torch.round(v) * step


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
        if p.nm_type == NM.ABS_MAX:
            alpha = xp.abs().amax(-1, keepdim=True)
            if p.nm_thres > 0:
                alpha = alpha.clamp_max(p.nm_thres)
        elif p.nm_type == NM.AVERAGE_ABS_MAX:
            alpha = xp.abs().amax(-1, keepdim=True).mean(2, keepdim=True).expand(-1, -1, n, -1)
        elif p.nm_type == NM.CONSTANT:
            alpha = xp.new_full((groups, n_in, n, 1), p.nm_thres)
        else:
            alpha = xp.new_ones((groups, n_in, n, 1))
        zero = alpha <= 0
        alpha = torch.where(zero, torch.ones_like(alpha), alpha)
        alpha5 = alpha.unsqueeze(2)  # [G, n_in, 1, N, 1]
        w_abs_t = wt.abs() if p.w_noise_type == WN.PCM_READ and p.w_noise > 0 else None

        def mvm(red: float) -> Tensor:
            xs = _dac(xp, alpha * red, p.inp_step, p.inp_sto_round, gen)
            xs = xs.clamp(-p.inp_bound, p.inp_bound)
            if p.inp_noise > 0:
                xs = xs + p.inp_noise * torch.randn(xs.shape, generator=gen, device=dev,
                                                    dtype=xs.dtype)
            xs5 = xs.unsqueeze(2)
            out = torch.matmul(xs5, wt)  # [G, n_in, n_out, N, To]
            if p.w_noise > 0 and p.w_noise_type == WN.ADDITIVE_CONSTANT:
                std = p.w_noise * xs5.norm(dim=-1, keepdim=True)
                out = out + std * torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
            elif w_abs_t is not None:
                std = p.w_noise * torch.matmul(xs5 * xs5, w_abs_t).clamp_min(0).sqrt()
                out = out + std * torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
            if p.out_noise > 0:
                out = out + p.out_noise * torch.randn(out.shape, generator=gen, device=dev,
                                                      dtype=out.dtype)
            out = _quantize(out, p.out_step, p.out_sto_round, gen)
            if p.out_bound > 0:
                hit = (out.abs() >= p.out_bound) & valid
                out = out.clamp(-p.out_bound, p.out_bound)
            else:
                hit = torch.zeros_like(out, dtype=torch.bool)
            return out * (alpha5 * red), hit

        y, clipped = mvm(1.0)
        redo = clipped.any(-1, keepdim=True)
        red = 1.0
        for _ in range(p.bm_rounds):
            if not bool(redo.any()):
                break
            red *= 2.0
            y_new, hit_new = mvm(red)
            y = torch.where(redo, y_new, y)
            clipped = torch.where(redo, hit_new, clipped)
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
