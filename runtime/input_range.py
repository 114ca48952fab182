"""Learned input ranges of hardware-aware training (``InputRangeParameter``): the clip with
aihwkit's range gradient, the initialisation from data, and ``manage_output_clipping``'s term.

A range ``r`` ``[G, n_in]`` belongs to each tile input split; ``hwa.forward`` clips the inputs
with ``InputRangeClip``, divides them by ``r`` into the DAC and multiplies the outputs by ``r``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .config.training import InputRangeParameter
from .tiling import TilePlan

if TYPE_CHECKING:
    from .tile_array import TileArray

#: Smallest input range kept after an optimizer step.
MIN_INPUT_RANGE = 1e-6


def _split_sum(values: Tensor, in_index: Tensor, n_in: int) -> Tensor:
    """``[G, n_in]`` sums over the columns of each input split of ``values`` ``[G, in_g]`` (a
    one-hot matmul rather than ``index_add_``, which inductor's CPU codegen mishandles)."""
    onehot = torch.nn.functional.one_hot(in_index, n_in).to(values.dtype)
    return values @ onehot


class InputRangeClip(torch.autograd.Function):
    """``clamp(x, -r, r)`` per tile input split with aihwkit's input-range gradient:
    ``grad_x`` passes inside the range; ``grad_r = scale * (r if relative) * (sum over x >= r of
    min(g, 0) - sum over x <= -r of max(g, 0)) + decay * r * [inside fraction > min_pct]``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, r: Tensor, in_index: Tensor, decay: float,
                min_pct: float, grad_scale: float, relative: bool) -> Tensor:
        rc = r[:, in_index].reshape(1, -1)
        ctx.save_for_backward(x, r, in_index)
        ctx.decay, ctx.min_pct, ctx.grad_scale, ctx.relative = decay, min_pct, grad_scale, relative
        return torch.minimum(torch.maximum(x, -rc), rc)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, r, in_index = ctx.saved_tensors
        groups, n_in = r.shape
        rc = r[:, in_index].reshape(1, -1)
        upper, lower = x >= rc, x <= -rc
        inside = ~(upper | lower)
        grad_x = g * inside
        col = (g.clamp(max=0) * upper).sum(0) - (g.clamp(min=0) * lower).sum(0)
        grad_r = _split_sum(col.view(groups, -1), in_index, n_in)
        if ctx.relative:
            grad_r = grad_r * r
        grad_r = grad_r * ctx.grad_scale
        if ctx.decay > 0:
            inside_cols = inside.to(r.dtype).sum(0).view(groups, -1)
            counts = _split_sum(inside_cols, in_index, n_in)
            sizes = _split_sum(torch.ones_like(inside_cols), in_index, n_in)
            frac = counts / (sizes * x.shape[0])
            grad_r = grad_r + ctx.decay * r * (frac > ctx.min_pct).to(r.dtype)
        return grad_x, grad_r, None, None, None, None, None


def split_std(x: Tensor, plan: TilePlan) -> Tensor:
    """``[G, n_in]`` std of the inputs of each tile input split (``x`` ``[N, G * in_g]``)."""
    n = x.shape[0]
    xg = x.detach().reshape(n, plan.groups, plan.in_features)
    idx = plan.in_index.to(x.device)
    s1 = _split_sum(xg.sum(0), idx, plan.n_in)
    s2 = _split_sum((xg * xg).sum(0), idx, plan.n_in)
    cnt = torch.tensor(plan.in_sizes, device=x.device, dtype=x.dtype) * n
    var = (s2 - s1 * s1 / cnt) / (cnt - 1).clamp_min(1)
    return var.clamp_min(0).sqrt()


def _all_ranks_mean(value: Tensor) -> Tensor:
    """Mean over the ranks of an initialised process group (eager only), else ``value``."""
    dist = torch.distributed
    if (torch.compiler.is_compiling() or not dist.is_available() or not dist.is_initialized()
            or dist.get_world_size() < 2):
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


@torch.no_grad()
def init_input_range_from_data(arr: TileArray, x: Tensor, ir: InputRangeParameter) -> None:
    """During the first ``init_from_data`` training batches: ``r`` = running mean of
    ``init_std_alpha * std(x)`` per split (averaged over DDP ranks, so ranks stay equal)."""
    idx = arr.input_range_update_idx
    if not torch.compiler.is_compiling() and int(idx) >= ir.init_from_data:
        return
    std = _all_ranks_mean(split_std(x, arr.plan))
    r = arr.input_range
    k = idx.to(r.dtype)
    new = (r * k + ir.init_std_alpha * std) / (k + 1)
    take = (idx < ir.init_from_data) & (std > 0)
    r.copy_(torch.where(take, new, r))
    idx.add_((idx < ir.init_from_data).to(idx.dtype))


def output_clipping_grad(keep: Tensor, r: Tensor, ir: InputRangeParameter) -> Tensor:
    """aihwkit's output-clipping term of the range gradient, ``-(1 - p) * r`` where the
    fraction ``p`` of unclipped outputs of a split's tiles (``keep`` ``[G, n_in, N, out_g]``,
    True = not at ``out_bound``) is below ``output_min_percentage``, else 0. (aihwkit divides
    the clipped count by the tile's input size; here ``p`` is a fraction of the outputs.)"""
    p = keep.to(r.dtype).mean((2, 3))
    return -(1.0 - p) * r * (p < ir.output_min_percentage).to(r.dtype)


class _AddRangeGrad(torch.autograd.Function):
    """Identity on ``y``; adds ``extra`` to the gradient of the input range ``r`` whenever the
    backward passes ``y`` (``manage_output_clipping``'s term, independent of ``grad_y``)."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, r: Tensor, extra: Tensor) -> Tensor:
        ctx.save_for_backward(extra)
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        (extra,) = ctx.saved_tensors
        return g, extra, None


def add_range_grad(y: Tensor, r: Tensor, extra: Tensor) -> Tensor:
    """``y`` unchanged; the backward through it adds ``extra`` to ``r``'s gradient."""
    return _AddRangeGrad.apply(y, r, extra)
