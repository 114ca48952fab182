"""AnalogTile: a read-only view of one physical crossbar tile inside a layer's TileArray."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..runtime import TileArray


@dataclass(frozen=True)
class AnalogTile:
    """One physical tile ``(group, in_split, out_split)`` of ``array``."""

    array: TileArray
    group: int
    in_split: int
    out_split: int
    rows: slice
    cols: slice

    @property
    def rpu_config(self):
        """The tile config (shared by every tile of the layer)."""
        return self.array.rpu_config

    @property
    def shape(self) -> tuple[int, int]:
        """Used (rows, columns) of this tile."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    @property
    def physical_shape(self) -> tuple[int, int]:
        """(rows, columns) of the physical crossbar (the layer's largest tile)."""
        return self.array.plan.tile_shape

    @property
    def utilization(self) -> float:
        """Used cells / physical cells."""
        r, c = self.shape
        pr, pc = self.physical_shape
        return (r * c) / (pr * pc)

    @property
    def device(self) -> torch.device:
        """Where the tile's weights live."""
        return self.array.weight.device

    def get_weights(self, apply_weight_scaling: bool = True, realistic: bool = False) -> Tensor:
        """This tile's ``[rows, cols]`` block of what the chip holds now (the layer's
        ``get_weights``: the targets until programmed, then the programmed / drifted weights);
        ``apply_weight_scaling=False``: tile side (normalised conductances). ``realistic``: the
        block of the layer's realistic read (aihwkit's ``read_weights``, estimated from the
        analog forward of the whole array)."""
        arr = self.array
        if realistic:
            w = arr.read_weights()
            if not apply_weight_scaling:
                w = arr.from_logical(w, "mapping")
        else:
            w = arr.weights(chip=True, scales="mapping" if apply_weight_scaling else "none")
        return w[self.group, self.rows, self.cols].clone()

    def get_target_weights(self, apply_weight_scaling: bool = True) -> Tensor:
        """This tile's ``[rows, cols]`` block of the target weights (what was written)."""
        w = self.array.weights(scales="mapping" if apply_weight_scaling else "none")
        return w[self.group, self.rows, self.cols].clone()

    def __repr__(self) -> str:
        r, c = self.shape
        return (f"AnalogTile(group={self.group}, in_split={self.in_split}, "
                f"out_split={self.out_split}, used={r}x{c}, physical="
                f"{self.physical_shape[0]}x{self.physical_shape[1]})")


def tiles_of(array: TileArray) -> list[AnalogTile]:
    """Every physical tile of ``array`` in storage order."""
    return [AnalogTile(array, g, i, j, rows, cols) for g, i, j, rows, cols in array.plan.tiles()]
