"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for converted models.

``fully_shard_analog(model)`` shards every analog layer as its own FSDP unit, then the root:
tile weights ``[groups, out, in]`` are sharded along their output rows (dim 1) or inputs (dim
2), whichever splits evenly (FSDP's default dim 0 is the group count, usually 1, which would
leave every rank but one empty); biases,
learned output scales and input ranges shard along dim 0. The layer's buffers (mapping
scales, the chip state) stay whole on every rank.

The clip/remap step after each optimizer step (``attach_hwa_hooks`` / ``post_update_step``)
needs whole tile rows and tiles, so on sharded weights it gathers them, applies the same
update on every rank (the gathered weights are identical) and keeps each rank's shard of the
result (``update_sharded``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .nn.base import AnalogLayerBase
from .runtime import TileArray


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return None
    return DTensor


def analog_shard_placement(param: nn.Parameter, world_size: int | None = None) -> Any:
    """``shard_placement_fn`` for ``fully_shard``: a 3-d tile weight ``[groups, out, in]`` is
    sharded along its output rows (``Shard(1)``) when they split evenly over ``world_size``
    ranks (default: the default process group's size), else along its inputs (``Shard(2)``)
    if those do (FSDP2 shards other dims than 0 only evenly); everything else gets FSDP's
    default (``None``: dim 0)."""
    from torch.distributed.tensor import Shard

    if param.dim() != 3:
        return None
    world = world_size if world_size is not None else torch.distributed.get_world_size()
    for dim in (1, 2):
        if param.shape[dim] % world == 0:
            return Shard(dim)
    return None


def fully_shard_analog(model: nn.Module, **kwargs: Any) -> nn.Module:
    """Apply ``fully_shard`` to every analog layer of ``model`` (one FSDP unit each, with
    ``analog_shard_placement`` unless ``shard_placement_fn`` is given) and then to ``model``
    itself; ``kwargs`` go to every ``fully_shard`` call (``mesh``, ``reshard_after_forward``,
    ``mp_policy``, ...). Needs an initialised process group. Returns ``model``."""
    from torch.distributed.fsdp import fully_shard

    if not isinstance(model, nn.Module):
        raise TypeError(f"fully_shard_analog: model must be an nn.Module, got "
                        f"{type(model).__name__}")
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError("fully_shard_analog: torch.distributed is not initialised; call "
                           "torch.distributed.init_process_group first (torchrun sets it up)")
    mesh = kwargs.get("mesh")
    world = mesh.size() if mesh is not None else torch.distributed.get_world_size()
    kwargs.setdefault("shard_placement_fn", functools.partial(analog_shard_placement,
                                                              world_size=world))
    layers = [m for m in model.modules() if isinstance(m, AnalogLayerBase)]
    if not layers:
        raise ValueError("fully_shard_analog: the model has no analog layers (convert it first)")
    for layer in layers:
        if layer is not model:
            fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


@torch.no_grad()
def update_sharded(arr: TileArray, update: Callable[[TileArray], None]) -> None:
    """Run ``update(arr)`` (an in-place update of its parameters that needs whole tensors);
    parameters sharded by FSDP2 are gathered first and each rank keeps its shard after."""
    dtensor = _dtensor_type()
    sharded = {} if dtensor is None else {
        name: p for name, p in arr._parameters.items() if isinstance(p, dtensor)}
    if not sharded:
        update(arr)
        return
    from torch.distributed.tensor import distribute_tensor

    for name, p in sharded.items():
        arr._parameters[name] = nn.Parameter(p.full_tensor(), requires_grad=False)
    try:
        update(arr)
    finally:
        for name, p in sharded.items():
            whole = arr._parameters[name].detach()
            arr._parameters[name] = p
            shard = distribute_tensor(whole, p.device_mesh, p.placements, src_data_rank=None)
            p.to_local().copy_(shard.to_local())
