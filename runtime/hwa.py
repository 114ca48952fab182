"""Hardware-aware (HWA) training math of a ``TileArray``: weight modifiers, clipping and
remapping, learned input ranges and learned output scales.

The forward of an array with any HWA feature enabled (``active``) is ``forward``:

1. weights: in training mode (or with ``enable_during_test`` while unprogrammed) the modifier
   noise (``modifiers.py``) is applied straight-through, ``w_mod = w + (modified(w) -
   w).detach()``: forward and input gradient see the modified weights, the weight gradient goes
   to the clean weights. With ``per_batch_sample`` every batch sample gets its own draw; the
   ``S`` samples run in the same op call as ``S * G`` tile groups;
2. inputs: with ``pre_post.input_range.enable`` each tile input split ``(g, i)`` has a range
   ``r`` (``input_range.py``); ``x`` is clipped to ``[-r, r]`` (gradient to ``x`` inside the
   range, aihwkit's range gradient to ``r``, plus the output-clipping term with
   ``manage_output_clipping``), divided by ``r`` into the DAC and the tile outputs are
   multiplied by ``r`` again (as digital output scales of the op, so one op call still does
   the layer);
3. outputs: with ``mapping.learn_out_scaling`` the op's output is multiplied by the learned
   ``out_scaling_alpha`` (one value, or one per output column), then the bias is added. The
   learned scales start at 1 on top of the fixed mapping scales (aihwkit folds the mapping
   scales into the learned ones: the same function, another parametrisation); ``get_weights``
   includes them and ``set_weights`` folds them back to 1.

Clipping, remapping and keeping the ranges positive happen after each optimizer step
(``post_update_step``), attached by ``analog_compiler.training.attach_hwa_hooks``.

The interface between a ``TileArray`` and this module, in both directions:
- the array calls ``init_parameters`` once and ``sync_parameters`` whenever its config changes,
  ``active``/``forward`` in its forward (layers pass ``sample_kwargs`` with their rows),
  ``reset_out_scaling`` when weights are written, ``apply_out_scaling`` when they are read,
  and ``remap_enabled`` for its mapping scales;
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

from .config.enums import BoundManagementType, NoiseManagementType
from .config.training import (
    InputRangeParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightRemapParameter,
    WeightRemapType,
)
from .input_range import (
    MIN_INPUT_RANGE,
    InputRangeClip,
    add_range_grad,
    init_input_range_from_data,
    output_clipping_grad,
)
from .modifiers import modify_weight
from .programming import expand_row_values, expand_tile_values, per_row_absmax, per_tile_absmax
from .tiling import TilePlan

if TYPE_CHECKING:
    from .tile_array import TileArray

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


def per_sample(arr: TileArray) -> bool:
    """Whether the array's modifier draws weights per batch sample (``per_batch_sample``)."""
    mod = modifier_config(arr)
    return mod is not None and mod.per_batch_sample


def sample_kwargs(arr: nn.Module, samples: int) -> dict[str, int]:
    """The keyword arguments a layer passes with its rows to the array's forward: ``samples``
    (the batch size the rows belong to) when the array draws weights per batch sample."""
    return {"samples": samples} if hasattr(arr, "plan") and per_sample(arr) else {}


def check_output_clipping(arr: TileArray) -> None:
    """``manage_output_clipping`` needs what aihwkit's ``supports_manage_output_clipping``
    does: a non-perfect forward with an ``out_bound`` and no noise or bound management."""
    ir = input_range_config(arr)
    if ir is None or not ir.manage_output_clipping:
        return
    io = arr.rpu_config.forward
    problems = []
    if io.is_perfect:
        problems.append("forward.is_perfect=False")
    if io.out_bound <= 0:
        problems.append(f"forward.out_bound > 0 (got {io.out_bound})")
    if io.noise_management is not NoiseManagementType.NONE:
        problems.append(f"forward.noise_management=NONE (got {io.noise_management.name})")
    if io.bound_management is not BoundManagementType.NONE:
        problems.append(f"forward.bound_management=NONE (got {io.bound_management.name})")
    if problems:
        raise ValueError("InputRangeParameter.manage_output_clipping=True needs "
                         + ", ".join(problems))


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
    check_output_clipping(arr)
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


def _bounded_row_ratio(arr: TileArray, ratio: Tensor, remap: WeightRemapParameter) -> Tensor:
    """``max_scale_range`` (aihwkit's ``WeightRemapper``): a row's new scale ``ratio * s``
    (``s`` its digital scale: mapping times learned output scale) is capped at ``min_s *
    max_scale_range``, ``min_s`` the smallest ``s`` of its tile (at least ``max_scale_ref``);
    no cap while ``min_s <= 0``."""
    plan = arr.plan
    s = arr.mapping_scales
    alpha = arr.out_scaling_alpha
    if alpha is not None:
        s = s * alpha.detach().expand(plan.groups * plan.out_features).view(plan.groups, 1, -1)
    out_index = plan.out_index.to(s.device)
    idx = out_index.view(1, 1, -1).expand_as(s)
    min_s = s.new_full((*s.shape[:2], plan.n_out), float("inf"))
    min_s = min_s.scatter_reduce(2, idx, s, "amin").clamp_min(0.0)
    if remap.max_scale_ref > 0:
        min_s = torch.where(min_s > 0, min_s.clamp_min(float(remap.max_scale_ref)), min_s)
    min_rows = min_s[:, :, out_index]
    capped = min_rows > 0
    cap = min_rows * float(remap.max_scale_range) / torch.where(capped, s, torch.ones_like(s))
    return torch.where(capped, torch.minimum(ratio, cap), ratio)


@torch.no_grad()
def remap_weights_(arr: TileArray) -> None:
    """Re-scale the tile weights so max|W| per tile (LAYERWISE) or per tile row (CHANNELWISE)
    equals ``remapped_wmax``; the mapping scales take the inverse, the layer is unchanged. With
    ``max_scale_range`` (CHANNELWISE) a row's scale grows at most to that multiple of the
    smallest scale of its tile (its weights may then stay above ``remapped_wmax``)."""
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
    if remap.type is WeightRemapType.CHANNELWISE_SYMMETRIC and remap.max_scale_range > 0:
        scale = _bounded_row_ratio(arr, scale, remap)
    w.div_(expand_row_values(scale, plan))
    arr.mapping_scales.mul_(scale)


@torch.no_grad()
def post_update_step(arr: TileArray) -> None:
    """After an optimizer step: clip, then remap the weights; keep input ranges positive."""
    clip_weights_(arr)
    remap_weights_(arr)
    if arr.input_range is not None:
        arr.input_range.abs_().clamp_min_(MIN_INPUT_RANGE)


# ------------------------------------------------------------------------- forward
def _tile_forward(arr: TileArray, x: Tensor, weight: Tensor, scales: Tensor | None,
                  bias: Tensor | None, seed: Tensor, need_mask: bool) -> tuple[Tensor, Tensor]:
    """The op call; per-sample weights ``[S, G, out_g, in_g]`` run as ``S * G`` tile groups of
    ``N / S`` rows each (every tile sees only its sample's rows), in one call."""
    from .ops import tile_forward

    plan = arr.plan
    sizes = (list(plan.in_sizes), list(plan.out_sizes))
    if weight.dim() == 3:
        return tile_forward(x, weight, scales, bias, seed, *sizes, arr.kernel_io, need_mask)
    samples, groups = weight.shape[:2]
    rows = x.shape[0] // samples
    xs = x.reshape(samples, rows, -1).transpose(0, 1).reshape(rows, -1)
    ws = weight.reshape(samples * groups, *weight.shape[2:])
    if scales is not None:
        scales = scales.expand(samples, *scales.shape).reshape(-1, *scales.shape[1:])
    y, keep = tile_forward(xs, ws, scales, None, seed, *sizes, arr.kernel_io, need_mask)
    y = y.reshape(rows, samples, -1).transpose(0, 1).reshape(x.shape[0], -1)
    if bias is not None:
        y = y + bias
    if keep.numel() > 0:  # [S * G, n_in, rows, out_g] -> [G, n_in, N, out_g]
        keep = keep.reshape(samples, groups, *keep.shape[1:]).permute(1, 2, 0, 3, 4)
        keep = keep.reshape(groups, keep.shape[1], -1, keep.shape[-1])
    return y, keep


def _samples(x: Tensor, samples: int | None) -> int:
    n = x.shape[0]
    if samples is None:
        return n
    if samples < 1 or n % samples:
        raise ValueError(f"TileArray.forward: {n} input rows cannot be split into samples="
                         f"{samples} batch samples (per_batch_sample)")
    return samples


def forward(arr: TileArray, x: Tensor, seed: Tensor, samples: int | None = None) -> Tensor:
    """Forward of an array with HWA features (see the module docstring); ``x`` ``[N, G*in_g]``;
    ``samples``: the number of batch samples the rows belong to (``per_batch_sample``; None:
    one per row)."""
    plan = arr.plan
    weight = arr.forward_weight()
    mod = modifier_config(arr)
    if mod is not None and (arr.training or (mod.enable_during_test and not arr.is_programmed)):
        n_draws = _samples(x, samples) if mod.per_batch_sample and x.shape[0] > 0 else 0
        weight = modify_weight(weight, plan, mod, n_draws)
    scales = arr.output_scales()
    ir = input_range_config(arr)
    r = None
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
    manage = (r is not None and ir.manage_output_clipping and arr.training and r.requires_grad
              and torch.is_grad_enabled())
    if manage:
        check_output_clipping(arr)
    alpha = arr.out_scaling_alpha
    bias = arr.bias if alpha is None else None
    need_mask = manage or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    y, keep = _tile_forward(arr, x, weight, scales, bias, seed, need_mask)
    if manage:
        y = add_range_grad(y, r, output_clipping_grad(keep, r.detach(), ir))
    if alpha is not None:
        y = y * alpha
        if arr.bias is not None:
            y = y + arr.bias
    return y
