"""Hardware-aware (HWA) training math of a ``TileArray``: weight modifiers, clipping and
remapping, learned input ranges and learned output scales.

The forward of an array with any HWA feature enabled (``active``) is ``forward``:

1. weights: in training mode (or with ``enable_during_test`` while unprogrammed) the modifier
   noise is applied straight-through, ``w_mod = w + (modified(w) - w).detach()``: forward and
   input gradient see the modified weights, the weight gradient goes to the clean weights;
2. inputs: with ``pre_post.input_range.enable`` each tile input split ``(g, i)`` has a range
   ``r``; ``x`` is clipped to ``[-r, r]`` (gradient to ``x`` inside the range, aihwkit's range
   gradient to ``r``), divided by ``r`` into the DAC and the tile outputs are multiplied by
   ``r`` again (as digital output scales of the op, so one op call still does the layer);
3. outputs: with ``mapping.learn_out_scaling`` the op's output is multiplied by the learned
   ``out_scaling_alpha`` (one value, or one per output column), then the bias is added. The
   learned scales start at 1 on top of the fixed mapping scales (aihwkit folds the mapping
   scales into the learned ones: the same function, another parametrisation); ``get_weights``
   includes them and ``set_weights`` folds them back to 1.

Clipping, remapping and keeping the ranges positive happen after each optimizer step
(``post_update_step``), attached by ``analog_compiler.training.attach_hwa_hooks``.

The interface between a ``TileArray`` and this module, in both directions:
- the array calls ``init_parameters`` once and ``sync_parameters`` whenever its config changes,
  ``active``/``forward`` in its forward, ``reset_out_scaling`` when weights are written,
  ``apply_out_scaling`` when they are read, and ``remap_enabled`` for its mapping scales;
- this module reads the array's public state (``weight``, ``plan``, ``rpu_config``,
  ``training``, ``is_programmed``, ``forward_weight()``, ``output_scales()``, ``kernel_io``,
  ``mapping_scales``, ``bias``) and owns three of its attributes, None unless the config asks
  for them: ``input_range`` ``[G, n_in]`` with ``input_range_update_idx``, and
  ``out_scaling_alpha``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .config.training import (
    InputRangeParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightRemapType,
)
from .programming import expand_row_values, expand_tile_values, per_row_absmax, per_tile_absmax
from .tiling import TilePlan

if TYPE_CHECKING:
    from .tile_array import TileArray

#: Smallest input range kept after an optimizer step.
MIN_INPUT_RANGE = 1e-6


# ------------------------------------------------------------------------- config queries
def _cfg(arr: TileArray, name: str) -> Any:
    return getattr(arr.rpu_config, name, None)


def input_range_config(arr: TileArray) -> InputRangeParameter | None:
    """The array's input-range parameters when input ranges are enabled, else None."""
    pre_post = _cfg(arr, "pre_post")
    if pre_post is None or not pre_post.input_range.enable:
        return None
    return pre_post.input_range


def modifier_config(arr: TileArray) -> WeightModifierParameter | None:
    """The array's weight modifier when it is enabled, else None."""
    mod = _cfg(arr, "modifier")
    return mod if mod is not None and mod.enabled else None


def active(arr: TileArray) -> bool:
    """Whether the array's forward needs ``forward`` (any HWA feature enabled)."""
    return (input_range_config(arr) is not None or modifier_config(arr) is not None
            or arr.rpu_config.mapping.learn_out_scaling)


def remap_enabled(arr: TileArray) -> bool:
    """Whether weights are remapped after optimizer steps (the mapping scales then apply)."""
    remap = _cfg(arr, "remap")
    return remap is not None and remap.type is not WeightRemapType.NONE


# ------------------------------------------------------------------------- parameters
def init_parameters(arr: TileArray) -> None:
    """Declare the HWA attributes on a new array (None: not used by its config)."""
    arr.register_parameter("input_range", None)
    arr.register_buffer("input_range_update_idx", None)
    arr.register_parameter("out_scaling_alpha", None)


def sync_parameters(arr: TileArray) -> None:
    """Create (or drop) the HWA parameters the config asks for: ``input_range`` ``[G, n_in]``
    with its ``input_range_update_idx`` buffer, and ``out_scaling_alpha`` (``[G * out_g]`` per
    column or ``[1]``). Existing values of the right shape are kept."""
    plan: TilePlan = arr.plan
    kw = {"device": arr.weight.device, "dtype": arr.weight.dtype}
    ir = input_range_config(arr)
    if ir is not None:
        shape = (plan.groups, plan.n_in)
        if arr.input_range is None or tuple(arr.input_range.shape) != shape:
            arr.input_range = nn.Parameter(torch.full(shape, ir.init_value, **kw))
            arr.input_range_update_idx = torch.zeros((), dtype=torch.int64,
                                                     device=arr.weight.device)
        arr.input_range.requires_grad_(ir.learn_input_range)
    else:
        arr.input_range = None
        arr.input_range_update_idx = None
    mp = arr.rpu_config.mapping
    if mp.learn_out_scaling:
        shape = (plan.groups * plan.out_features,) if mp.out_scaling_columnwise else (1,)
        if arr.out_scaling_alpha is None or tuple(arr.out_scaling_alpha.shape) != shape:
            arr.out_scaling_alpha = nn.Parameter(torch.ones(shape, **kw))
    else:
        arr.out_scaling_alpha = None


def reset_out_scaling(arr: TileArray) -> None:
    """Set the learned output scales to 1 (``set_weights`` folds every scale into the new
    weights and mapping scales, as aihwkit's ``set_scales`` does)."""
    if arr.out_scaling_alpha is not None:
        with torch.no_grad():
            arr.out_scaling_alpha.fill_(1.0)


def apply_out_scaling(arr: TileArray, weight: Tensor) -> Tensor:
    """``weight`` ``[G, out_g, in_g]`` times the learned output scales (detached), if any."""
    alpha = arr.out_scaling_alpha
    if alpha is None:
        return weight
    groups, out_g = weight.shape[:2]
    return weight * alpha.detach().expand(groups * out_g).view(groups, out_g, 1)


# ------------------------------------------------------------------------- weight modifier
def _amax(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter) -> Tensor | float:
    if not mod.rel_to_actual_wmax:
        return float(mod.assumed_wmax)
    amax = expand_tile_values(per_tile_absmax(weight, plan), plan)
    return torch.where(amax > 0, amax, torch.ones_like(amax))


def _discretize(w: Tensor, amax: Tensor | float, res: float, sto_round: bool) -> Tensor:
    if res <= 0:
        return w
    step = 1.0 / res if res >= 1 else res
    v = w / amax / step
    v = torch.floor(v + torch.rand_like(v)) if sto_round else torch.round(v)
    return amax * v * step


def _poly(w_rel: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    out = torch.full_like(w_rel, float(coeffs[0]))
    power = torch.ones_like(w_rel)
    for c in coeffs[1:]:
        power = power * w_rel
        out = out + float(c) * power
    return out


def modified_weight(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter) -> Tensor:
    """The modified weights (no gradient); ``amax`` is max|W| per tile or ``assumed_wmax``."""
    w = weight.detach()
    amax = _amax(w, plan, mod)
    kind, std = mod.type, float(mod.std_dev)
    if kind in (WeightModifierType.DISCRETIZE, WeightModifierType.DISCRETIZE_ADD_NORMAL):
        w = _discretize(w, amax, float(mod.res), mod.sto_round)
    if kind in (WeightModifierType.ADD_NORMAL, WeightModifierType.DISCRETIZE_ADD_NORMAL):
        if std > 0:
            w = w + std * amax * torch.randn_like(w)
    elif kind is WeightModifierType.MULT_NORMAL:
        if std > 0:
            w = w + w * std * amax * torch.randn_like(w)
    elif kind is WeightModifierType.POLY:
        if std > 0:
            w = w + amax * std * _poly(w.abs() / amax, mod.coeffs) * torch.randn_like(w)
    elif kind is WeightModifierType.PROG_NOISE:
        if std > 0:
            sig = std / float(mod.g_max) * _poly(w.abs() / amax, mod.coeffs)
            noisy = (w + amax * sig * torch.randn_like(w)).abs()
            w = torch.where(w < 0, -noisy, noisy)
    if mod.pdrop > 0:
        w = w * (torch.rand_like(w) >= mod.pdrop).to(w.dtype)
    return w


def modify_weight(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter) -> Tensor:
    """Straight-through modified weights: the values of ``modified_weight``, the gradient of
    ``weight``."""
    return weight + (modified_weight(weight, plan, mod) - weight.detach())


# ------------------------------------------------------------------------- clip and remap
def _per_tile_mean(values: Tensor, plan: TilePlan) -> tuple[Tensor, Tensor]:
    """Per-tile ``(sum, count)`` ``[G, n_tiles]`` of ``values`` ``[G, out_g, in_g]``."""
    groups = values.shape[0]
    tid = plan.tile_index().to(values.device).flatten().expand(groups, -1)
    n_tiles = plan.n_in * plan.n_out
    sums = values.new_zeros(groups, n_tiles).scatter_add_(1, tid, values.flatten(1))
    ones = torch.ones_like(values.flatten(1))
    counts = values.new_zeros(groups, n_tiles).scatter_add_(1, tid, ones)
    return sums, counts


def clip_value(weight: Tensor, plan: TilePlan, clip: Any) -> Tensor | float | None:
    """The clip value of every weight (a tensor broadcast to ``weight``, a float, or None)."""
    kind = clip.type
    if kind is WeightClipType.FIXED_VALUE:
        return float(clip.fixed_value)
    if kind is WeightClipType.LAYER_GAUSSIAN:
        sums, counts = _per_tile_mean(weight, plan)
        mean = expand_tile_values(sums / counts, plan)
        sq, _ = _per_tile_mean((weight - mean) ** 2, plan)
        value = clip.sigma * (sq / (counts - 1).clamp_min(1)).sqrt()
    elif kind is WeightClipType.AVERAGE_CHANNEL_MAX:
        rows = per_row_absmax(weight, plan)  # [G, n_in, out_g]
        idx = plan.out_index.to(weight.device)
        sums = rows.new_zeros(*rows.shape[:2], plan.n_out).index_add_(2, idx, rows)
        sizes = torch.tensor(plan.out_sizes, device=weight.device, dtype=weight.dtype)
        value = (sums / sizes).flatten(1)  # tile i * n_out + j
    else:
        return None
    if clip.fixed_value > 0:
        value = value.clamp_max(float(clip.fixed_value))
    return expand_tile_values(value, plan)


@torch.no_grad()
def clip_weights_(arr: TileArray) -> None:
    """Clip the tile weights in place as ``rpu_config.clip`` prescribes."""
    clip = _cfg(arr, "clip")
    if clip is None or clip.type is WeightClipType.NONE:
        return
    value = clip_value(arr.weight, arr.plan, clip)
    if isinstance(value, float):
        arr.weight.clamp_(-value, value)
    elif value is not None:
        arr.weight.copy_(torch.minimum(torch.maximum(arr.weight, -value), value))


@torch.no_grad()
def remap_weights_(arr: TileArray) -> None:
    """Re-scale the tile weights so max|W| per tile (LAYERWISE) or per tile row (CHANNELWISE)
    equals ``remapped_wmax``; the mapping scales take the inverse, the layer is unchanged."""
    if not remap_enabled(arr):
        return
    remap, plan, w = arr.rpu_config.remap, arr.plan, arr.weight
    if remap.type is WeightRemapType.CHANNELWISE_SYMMETRIC:
        scale = per_row_absmax(w, plan)
    else:
        tiles = per_tile_absmax(w, plan).view(-1, plan.n_in, plan.n_out)
        scale = tiles[:, :, plan.out_index.to(w.device)]
    scale = scale / float(remap.remapped_wmax)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    w.div_(expand_row_values(scale, plan))
    arr.mapping_scales.mul_(scale)


@torch.no_grad()
def post_update_step(arr: TileArray) -> None:
    """After an optimizer step: clip, then remap the weights; keep input ranges positive."""
    clip_weights_(arr)
    remap_weights_(arr)
    if arr.input_range is not None:
        arr.input_range.abs_().clamp_min_(MIN_INPUT_RANGE)


# ------------------------------------------------------------------------- input range
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


# ------------------------------------------------------------------------- forward
def forward(arr: TileArray, x: Tensor, seed: Tensor) -> Tensor:
    """Forward of an array with HWA features (see the module docstring); ``x`` ``[N, G*in_g]``."""
    from .ops import tile_forward

    plan = arr.plan
    weight = arr.forward_weight()
    mod = modifier_config(arr)
    if mod is not None and (arr.training or (mod.enable_during_test and not arr.is_programmed)):
        weight = modify_weight(weight, plan, mod)
    scales = arr.output_scales()
    ir = input_range_config(arr)
    if ir is not None:
        if arr.training and ir.init_from_data > 0:
            init_input_range_from_data(arr, x, ir)
        r = arr.input_range
        in_index = plan.in_index.to(x.device)
        x = InputRangeClip.apply(x, r, in_index, float(ir.decay) if arr.training else 0.0,
                                 float(ir.input_min_percentage), float(ir.gradient_scale),
                                 ir.gradient_relative)
        rd = r.detach()
        x = x / rd[:, in_index].reshape(1, -1)
        r_rows = rd.unsqueeze(-1).expand(plan.groups, plan.n_in, plan.out_features)
        scales = r_rows if scales is None else scales * r_rows
    alpha = arr.out_scaling_alpha
    bias = arr.bias if alpha is None else None
    need_mask = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    y, _ = tile_forward(x, weight, scales, bias, seed, list(plan.in_sizes),
                        list(plan.out_sizes), arr.kernel_io, need_mask)
    if alpha is not None:
        y = y * alpha
        if arr.bias is not None:
            y = y + arr.bias
    return y
