"""The ``analog::tile_update`` op: the pulsed update of a training tile array, in place.

Schema (own ``torch.library`` fragment until the op-layer refactor folds it into the one op
table)::

    tile_update(Tensor(a!) weight, Tensor[] state, Tensor x, Tensor d, float lr, Tensor seed,
                int[] in_sizes, int[] out_sizes, str device, str update) -> ()

``state`` are the per-device tensors in ``runtime.update.STATE_KEYS`` order; ``device`` and
``update`` are the device and update configs as JSON (``to_json()``), so one schema serves
every device model. The reference kernel (``runtime.update.pulsed_update``) defines the
semantics; it is registered for every backend (``CompositeExplicitAutograd``).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .config.base import ConfigBase
from .tiling import TilePlan
from .update import STATE_KEYS, pulsed_update

_lib = torch.library.Library("analog", "FRAGMENT")
TILE_UPDATE_SCHEMA = (
    "tile_update(Tensor(a!) weight, Tensor[] state, Tensor x, Tensor d, float lr, Tensor seed, "
    "int[] in_sizes, int[] out_sizes, str device, str update) -> ()"
)
_lib.define(TILE_UPDATE_SCHEMA)


@functools.lru_cache(maxsize=64)
def _config(text: str) -> ConfigBase:
    return ConfigBase.from_json(text)


def _tiles(groups: int, in_sizes: list[int], out_sizes: list[int]) -> list[tuple]:
    rows = [slice(o, o + s) for o, s in zip(TilePlan.offsets(tuple(out_sizes)), out_sizes)]
    cols = [slice(o, o + s) for o, s in zip(TilePlan.offsets(tuple(in_sizes)), in_sizes)]
    return [(g, rows[j], cols[i]) for g in range(groups) for i in range(len(in_sizes))
            for j in range(len(out_sizes))]


def _tile_update_reference(weight: Tensor, state: list[Tensor], x: Tensor, d: Tensor, lr: float,
                           seed: Tensor, in_sizes: list[int], out_sizes: list[int], device: str,
                           update: str) -> None:
    tiles = _tiles(weight.shape[0], list(in_sizes), list(out_sizes))
    new = pulsed_update(weight, dict(zip(STATE_KEYS, state)), x.to(weight.dtype),
                        d.to(weight.dtype), float(lr), _config(device), _config(update), tiles,
                        int(seed))
    weight.copy_(new)


_lib.impl("tile_update", _tile_update_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::tile_update")
def _tile_update_fake(weight, state, x, d, lr, seed, in_sizes, out_sizes, device, update):
    return None


def tile_update(weight: Tensor, state: list[Tensor], x: Tensor, d: Tensor, lr: float,
                seed: Tensor, plan: TilePlan, device: ConfigBase, update: ConfigBase) -> None:
    """Apply the pulsed update of the batch ``x [N, G*in_g]``, ``d [N, G*out_g]`` with learning
    rate ``lr`` to ``weight [G, out_g, in_g]`` in place (``analog::tile_update``)."""
    with torch.no_grad():
        torch.ops.analog.tile_update(weight, state, x.contiguous(), d.contiguous(), float(lr),
                                     seed, list(plan.in_sizes), list(plan.out_sizes),
                                     device.to_json(), update.to_json())
