"""Tile plans: how one (grouped) weight matrix is cut into crossbar tiles.

A layer's weights are ``[groups, out_per_group, in_per_group]``. Each group is split, balanced,
into ``n_in`` input pieces and ``n_out`` output pieces (aihwkit's rule: ``n = ceil(size / max)``,
the first ``size % n`` pieces one larger); tile ``(g, i, j)`` holds rows ``out_sizes[j]`` by
columns ``in_sizes[i]`` of group ``g``. The weights stay in the logical layout; the kernels
address each tile as a strided block, so no padded copy is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


def balanced_split(size: int, max_size: int) -> list[int]:
    """Split ``size`` into the fewest pieces of at most ``max_size`` (0 = no limit), balanced."""
    if size < 1:
        raise ValueError(f"cannot split a dimension of size {size} into tiles")
    if max_size < 0:
        raise ValueError(f"max tile size must be >= 0, got {max_size}")
    if max_size == 0 or size <= max_size:
        return [size]
    n = math.ceil(size / max_size)
    base, extra = divmod(size, n)
    return [base + 1] * extra + [base] * (n - extra)


@dataclass(frozen=True)
class TilePlan:
    """The tile grid of one layer (identical for every group)."""

    groups: int
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        # The index maps now, not at first use: a first use inside torch.compile'd code (HWA's
        # input statistics) would enter cached_property's lock, which Dynamo cannot trace.
        _ = self.in_index, self.out_index

    @classmethod
    def build(cls, in_features: int, out_features: int, max_input_size: int,
              max_output_size: int, groups: int = 1) -> TilePlan:
        """Plan for ``groups`` blocks of ``out_features x in_features`` (per group)."""
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        return cls(groups, tuple(balanced_split(in_features, max_input_size)),
                   tuple(balanced_split(out_features, max_output_size)))

    @property
    def in_features(self) -> int:
        """Inputs per group."""
        return sum(self.in_sizes)

    @property
    def out_features(self) -> int:
        """Outputs per group."""
        return sum(self.out_sizes)

    @property
    def n_in(self) -> int:
        """Input splits per group."""
        return len(self.in_sizes)

    @property
    def n_out(self) -> int:
        """Output splits per group."""
        return len(self.out_sizes)

    @property
    def tile_count(self) -> int:
        """Physical tiles of the layer."""
        return self.groups * self.n_in * self.n_out

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Physical (rows, columns) of each tile: the largest piece on each side."""
        return max(self.out_sizes), max(self.in_sizes)

    @property
    def utilization(self) -> float:
        """Used cells / cells of the tiles it occupies (tiles of ``tile_shape``)."""
        rows, cols = self.tile_shape
        used = self.groups * self.in_features * self.out_features
        return used / (self.tile_count * rows * cols)

    @staticmethod
    def offsets(sizes: tuple[int, ...]) -> list[int]:
        """Start index of each piece."""
        out, acc = [], 0
        for s in sizes:
            out.append(acc)
            acc += s
        return out

    @cached_property
    def in_index(self) -> Tensor:
        """For each input column, the input split it belongs to (CPU int64)."""
        return torch.repeat_interleave(torch.arange(self.n_in), torch.tensor(self.in_sizes))

    @cached_property
    def out_index(self) -> Tensor:
        """For each output row, the output split it belongs to (CPU int64)."""
        return torch.repeat_interleave(torch.arange(self.n_out), torch.tensor(self.out_sizes))

    def tile_index(self) -> Tensor:
        """``[out, in]`` map of each weight to its tile ``i * n_out + j`` within a group."""
        return self.in_index[None, :] * self.n_out + self.out_index[:, None]

    def tiles(self) -> list[tuple[int, int, int, slice, slice]]:
        """``(g, i, j, row_slice, col_slice)`` of every tile, in storage order."""
        rows = [slice(o, o + s) for o, s in zip(self.offsets(self.out_sizes), self.out_sizes)]
        cols = [slice(o, o + s) for o, s in zip(self.offsets(self.in_sizes), self.in_sizes)]
        return [(g, i, j, rows[j], cols[i]) for g in range(self.groups)
                for i in range(self.n_in) for j in range(self.n_out)]
