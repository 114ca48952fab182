"""Hardware-aware (HWA) training helpers: the post-step hook, input-range calibration, presets.

HWA training with any ``torch.optim`` optimizer::

    rc = ac.StandardHWATrainingPreset()
    model = ac.convert(pretrained, rc)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    handle = ac.attach_hwa_hooks(opt, model)   # clip + remap after every opt.step()
    for x, y in loader:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()

The weight modifier, input ranges and learned output scales act inside the analog layers' forward
(training mode), so nothing else changes in the training loop. Under
``DistributedDataParallel`` seed every rank differently (``torch.manual_seed(base + rank)``):
the analog noise (modifier, read and output noise) is drawn from torch's default generator, so
differently seeded ranks draw independent noise while DDP keeps the parameters equal; the
input-range initialisation from data (the first ``init_from_data`` training forwards) is
averaged over the ranks with an all-reduce, so every rank must run those forwards together (as
DDP training does), and ranges stay equal. ``learn_out_scaling`` and learned input ranges are
ordinary parameters; clip/remap run on every rank on identical weights. A checkpoint saved on
rank 0 (``model.module.state_dict()``) is tensors plus JSON-able configs and loads anywhere.
Under FSDP2 (``ac.fully_shard_analog``) clip/remap gather the sharded weights of one layer at
a time and every rank keeps its shard of the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .fsdp import update_sharded
from .runtime import (
    BoundManagementType,
    GlobalDriftCompensation,
    InferenceRPUConfig,
    InputRangeParameter,
    IOParameters,
    MappingParameter,
    NoiseManagementType,
    PCMLikeNoiseModel,
    PrePostProcessingParameter,
    TileArray,
    WeightClipParameter,
    WeightClipType,
    WeightNoiseType,
    WeightRemapParameter,
    WeightRemapType,
    hwa,
)
from .runtime.input_range import MIN_INPUT_RANGE, split_std

CALIBRATION_METHODS = ("std", "max", "percentile")


def tile_arrays(model: nn.Module) -> list[tuple[str, TileArray]]:
    """``(name, array)`` of every ``TileArray`` in ``model`` (DDP wrappers included)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TileArray)]


# ------------------------------------------------------------------------ post-step hook
@torch.no_grad()
def post_update_step(model: nn.Module) -> None:
    """Apply every analog layer's ``clip`` and ``remap`` to its tile weights and keep the
    input ranges positive (what ``attach_hwa_hooks`` runs after each optimizer step)."""
    for _, arr in tile_arrays(model):
        update_sharded(arr, hwa.post_update_step)


def attach_hwa_hooks(optimizer: torch.optim.Optimizer, model: nn.Module) -> RemovableHandle:
    """Run ``post_update_step(model)`` after every ``optimizer.step()``; works with any
    ``torch.optim`` optimizer (``Optimizer.register_step_post_hook``). Returns the handle
    (``handle.remove()`` detaches it)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"attach_hwa_hooks: expected a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    arrays = tile_arrays(model)

    def hook(_opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        with torch.no_grad():
            for _, arr in arrays:
                update_sharded(arr, hwa.post_update_step)

    return optimizer.register_step_post_hook(hook)


# ------------------------------------------------------------------------ calibration
def _batches(data: Any) -> Iterable[Tensor]:
    if isinstance(data, Tensor):
        yield data
        return
    for batch in data:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if isinstance(batch, dict):
            raise TypeError("calibrate_input_ranges: dict batches are not supported; pass "
                            "tensors or (input, target) tuples")
        yield batch


def _split_statistic(x: Tensor, arr: TileArray, method: str, percentile: float) -> Tensor:
    """``[G, n_in]`` statistic of one batch of array inputs ``x`` ``[N, G * in_g]``."""
    plan = arr.plan
    xg = x.detach().reshape(x.shape[0], plan.groups, plan.in_features).abs()
    out = x.new_zeros(plan.groups, plan.n_in)
    start = 0
    for i, size in enumerate(plan.in_sizes):
        cols = xg[:, :, start:start + size].transpose(0, 1).reshape(plan.groups, -1)
        start += size
        if method == "max":
            out[:, i] = cols.amax(1)
        else:  # percentile of |x| (subsampled above torch.quantile's size limit)
            if cols.shape[1] > 1_000_000:
                cols = cols[:, torch.randperm(cols.shape[1], device=x.device)[:1_000_000]]
            out[:, i] = torch.quantile(cols.float(), percentile, dim=1).to(x.dtype)
    return out


@torch.no_grad()
def calibrate_input_ranges(model: nn.Module, data: Any, method: str = "std", *,
                           num_batches: int | None = None, percentile: float = 0.9999,
                           std_alpha: float | None = None) -> dict[str, Tensor]:
    """Post-training calibration of the input ranges of every analog layer whose config has
    ``pre_post.input_range.enable``, from a few batches of ``data`` (a tensor, or an iterable of
    tensors or ``(input, target)`` tuples), in eval mode.

    ``method``: ``"std"`` (running mean over batches of ``std_alpha * std(x)`` per tile input
    split; ``std_alpha`` defaults to the layer's ``init_std_alpha``), ``"max"`` (max|x|) or
    ``"percentile"`` (running mean of the ``percentile`` quantile of |x|). The ranges are
    updated while the data flows, so each layer is calibrated on inputs produced with the
    calibrated ranges of the layers before it. Marks the data initialisation of training as
    done. Returns ``{array name: ranges [G, n_in]}``."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibrate_input_ranges: method must be one of "
                         f"{', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"calibrate_input_ranges: percentile must be in (0, 1], got {percentile}")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"calibrate_input_ranges: num_batches must be >= 1, got {num_batches}")
    arrays = [(n, a) for n, a in tile_arrays(model) if hwa.input_range_config(a) is not None]
    if not arrays:
        raise ValueError("calibrate_input_ranges: no analog layer has input ranges enabled "
                         "(set rpu_config.pre_post.input_range.enable=True)")
    state: dict[int, list[Any]] = {id(a): [None, 0] for _, a in arrays}  # running value, count

    def make_hook(arr: TileArray):
        ir = hwa.input_range_config(arr)
        alpha = ir.init_std_alpha if std_alpha is None else float(std_alpha)

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if method == "std":
                stat = alpha * split_std(x, arr.plan)
            else:
                stat = _split_statistic(x, arr, method, percentile)
            value, count = state[id(arr)]
            if value is None:
                value = stat
            elif method == "max":
                value = torch.maximum(value, stat)
            else:
                value = (value * count + stat) / (count + 1)
            state[id(arr)] = [value, count + 1]
            arr.input_range.copy_(value.clamp_min(MIN_INPUT_RANGE))

        return hook

    handles = [a.register_forward_pre_hook(make_hook(a)) for _, a in arrays]
    was_training = model.training
    model.eval()
    try:
        for k, x in enumerate(_batches(data)):
            if num_batches is not None and k >= num_batches:
                break
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name, arr in arrays:
        if state[id(arr)][0] is None:
            raise ValueError(f"calibrate_input_ranges: layer {name!r} saw no data")
        ir = hwa.input_range_config(arr)
        arr.input_range_update_idx.fill_(ir.init_from_data)
        ir.calibration_info = f"calibrate_input_ranges(method={method!r})"
        out[name] = arr.input_range.detach().clone()
    return out


# ------------------------------------------------------------------------ presets
def StandardIOParameters(**changes: Any) -> IOParameters:  # noqa: N802 (aihwkit's class name)
    """aihwkit's ``StandardIOParameters``: 8-bit DAC and ADC (``inp_res = out_res = 1/254``),
    ``out_bound=10``, ``out_noise=0.04``, ITERATIVE bound and ABS_MAX noise management, no weight
    read noise. ``changes`` override fields."""
    fields: dict[str, Any] = dict(
        inp_res=1.0 / 254.0, out_res=1.0 / 254.0, out_bound=10.0, out_noise=0.04,
        inp_sto_round=False, bound_management=BoundManagementType.ITERATIVE,
        noise_management=NoiseManagementType.ABS_MAX, w_noise=0.0,
        w_noise_type=WeightNoiseType.NONE)
    fields.update(changes)
    return IOParameters(**fields)


def StandardHWATrainingPreset(**changes: Any) -> InferenceRPUConfig:  # noqa: N802
    """aihwkit's ``StandardHWATrainingPreset`` (Rasch et al. 2023) as an ``InferenceRPUConfig``:
    columnwise weight scaling (omega 1) with learned columnwise output scales, no output split,
    8-bit DAC/ADC, CONSTANT noise management (``nm_thres=1``) and no bound management,
    PCM_READ weight noise 0.0175, output noise 0.04, ``out_bound=10``, channel-wise symmetric
    remapping, weight clipping at 1.0, learned input ranges (init 3.0, from 100 batches), the
    PCM-like noise model and global drift compensation. aihwkit's ``ir_drop=1.0`` is set when
    ``IOParameters`` has an ``ir_drop`` field. ``changes`` override fields."""
    io = dict(inp_res=1.0 / 254.0, out_res=1.0 / 254.0,
              bound_management=BoundManagementType.NONE,
              noise_management=NoiseManagementType.CONSTANT, nm_thres=1.0, w_noise=0.0175,
              w_noise_type=WeightNoiseType.PCM_READ, out_noise=0.04, out_bound=10.0)
    if "ir_drop" in IOParameters.__dataclass_fields__:
        io["ir_drop"] = 1.0
    fields: dict[str, Any] = dict(
        mapping=MappingParameter(weight_scaling_omega=1.0, weight_scaling_columnwise=True,
                                 max_input_size=512, max_output_size=0, digital_bias=True,
                                 learn_out_scaling=True, out_scaling_columnwise=True),
        forward=StandardIOParameters(**io),
        remap=WeightRemapParameter(remapped_wmax=1.0,
                                   type=WeightRemapType.CHANNELWISE_SYMMETRIC),
        noise_model=PCMLikeNoiseModel(),
        drift_compensation=GlobalDriftCompensation(),
        pre_post=PrePostProcessingParameter(input_range=InputRangeParameter(
            enable=True, init_value=3.0, init_from_data=100, init_std_alpha=3.0, decay=0.001,
            input_min_percentage=0.95, output_min_percentage=0.95,
            manage_output_clipping=False, gradient_scale=1.0, gradient_relative=True)),
        clip=WeightClipParameter(type=WeightClipType.FIXED_VALUE, fixed_value=1.0),
    )
    fields.update(changes)
    return InferenceRPUConfig(**fields)


__all__ = ["CALIBRATION_METHODS", "StandardHWATrainingPreset", "StandardIOParameters",
           "attach_hwa_hooks", "calibrate_input_ranges", "post_update_step", "tile_arrays"]
