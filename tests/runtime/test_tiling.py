"""Balanced split and tile plans (aihwkit's rule: n = ceil(size / max), first pieces larger)."""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import TilePlan, balanced_split
from hypothesis import given, settings
from hypothesis import strategies as st

# (size, max) -> expected pieces, worked out by hand from the rule.
CASES = {
    (1, 512): [1],
    (511, 512): [511],
    (512, 512): [512],
    (513, 512): [257, 256],
    (1025, 512): [342, 342, 341],
    (3000, 512): [500] * 6,
    (3001, 512): [501, 500, 500, 500, 500, 500],
    (768, 512): [384, 384],
    (1000, 512): [500, 500],
    (3000, 0): [3000],
    (7, 1): [1] * 7,
}


@pytest.mark.parametrize(("size", "max_size"), list(CASES))
def test_balanced_split_awkward_sizes(size: int, max_size: int) -> None:
    assert balanced_split(size, max_size) == CASES[(size, max_size)]


@pytest.mark.parametrize("size", [1, 511, 512, 513, 1025, 3000])
@pytest.mark.parametrize("other", [1, 512, 1025])
def test_plan_splits_both_sides(size: int, other: int) -> None:
    plan = TilePlan.build(size, other, 512, 512)
    assert list(plan.in_sizes) == balanced_split(size, 512)
    assert list(plan.out_sizes) == balanced_split(other, 512)
    plan_t = TilePlan.build(other, size, 512, 512)
    assert list(plan_t.out_sizes) == balanced_split(size, 512)
    n_tiles = math.ceil(size / 512) * math.ceil(other / 512)
    assert plan.tile_count == plan.n_in * plan.n_out == n_tiles
    assert plan.in_features == size and plan.out_features == other


@settings(max_examples=100, deadline=None)
@given(size=st.integers(1, 5000), max_size=st.integers(1, 1024))
def test_balanced_split_properties(size: int, max_size: int) -> None:
    pieces = balanced_split(size, max_size)
    assert sum(pieces) == size
    assert max(pieces) - min(pieces) <= 1
    assert all(1 <= p <= max_size for p in pieces)
    assert len(pieces) == math.ceil(size / max_size)  # the fewest pieces
    assert pieces == sorted(pieces, reverse=True)  # larger pieces first


@pytest.mark.parametrize(("size", "max_size"), [(0, 512), (-3, 512), (10, -1)])
def test_balanced_split_rejects_bad_sizes(size: int, max_size: int) -> None:
    with pytest.raises(ValueError):
        balanced_split(size, max_size)


def test_plan_geometry_and_indices() -> None:
    plan = TilePlan.build(1025, 600, 512, 512, groups=2)
    assert plan.in_sizes == (342, 342, 341) and plan.out_sizes == (300, 300)
    assert plan.tile_count == 2 * 3 * 2
    assert plan.tile_shape == (300, 342)
    assert plan.utilization == pytest.approx(1025 * 600 / (3 * 2 * 300 * 342))
    assert plan.offsets(plan.in_sizes) == [0, 342, 684]
    assert torch.equal(torch.bincount(plan.in_index), torch.tensor(plan.in_sizes))
    assert torch.equal(torch.bincount(plan.out_index), torch.tensor(plan.out_sizes))
    tid = plan.tile_index()
    assert tid.shape == (600, 1025)
    assert tid[0, 0] == 0 and tid[299, 341] == 0 and tid[300, 0] == 1 and tid[0, 342] == 2
    assert tid[599, 1024] == 5
    tiles = plan.tiles()
    assert len(tiles) == plan.tile_count
    g, i, j, rows, cols = tiles[-1]
    assert (g, i, j) == (1, 2, 1) and rows == slice(300, 600) and cols == slice(684, 1025)
    # Every weight belongs to exactly one tile of a group.
    cover = torch.zeros(600, 1025, dtype=torch.int64)
    for g, _, _, rows, cols in tiles:
        if g == 0:
            cover[rows, cols] += 1
    assert bool((cover == 1).all())


def test_plan_rejects_bad_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        TilePlan.build(4, 4, 512, 512, groups=0)
