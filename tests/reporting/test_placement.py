"""Placement: pieces, packing without overlap, replication within the chips, never slower."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

import analog_compiler as ac
from analog_compiler.reporting.placement import LayerWork, pack, pieces_of, place


def random_works(rng: random.Random, n_layers: int, timed: bool = True) -> list[LayerWork]:
    works = []
    for k in range(n_layers):
        n_in, n_out = rng.randint(1, 3), rng.randint(1, 3)
        works.append(LayerWork(
            name=f"l{k}", groups=rng.choice([1, 1, 2]),
            in_sizes=tuple(rng.randint(1, 300) for _ in range(n_in)),
            out_sizes=tuple(rng.randint(1, 300) for _ in range(n_out)),
            vectors=rng.randint(1, 400) if timed else None))
    return works


def test_pieces_cut_large_tiles_to_the_core():
    hw = ac.HardwareModel(tile_rows=100, tile_cols=64)
    pieces = pieces_of(LayerWork("a", 1, (150,), (250,)), hw)
    assert sorted((p.rows, p.cols) for p in pieces) == sorted(
        [(100, 64), (100, 64), (100, 22), (100, 64), (100, 64), (100, 22), (50, 64), (50, 64),
         (50, 22)])
    assert sum(p.rows * p.cols for p in pieces) == 150 * 250


@pytest.mark.parametrize("seed", range(8))
def test_packing_never_overlaps(seed):
    rng = random.Random(seed)
    hw = ac.HardwareModel(tile_rows=rng.choice([64, 256]), tile_cols=rng.choice([64, 256]))
    for work in random_works(rng, 4):
        pieces = pieces_of(work, hw)
        cores = pack(pieces, hw.tile_rows, hw.tile_cols)
        assert Counter(p for core in cores for p, _, _ in core) == Counter(pieces)
        for core in cores:
            for p, r, c in core:
                assert 0 <= r and r + p.rows <= hw.tile_rows
                assert 0 <= c and c + p.cols <= hw.tile_cols
            for (a, ra, ca), (b, rb, cb) in itertools.combinations(core, 2):
                disjoint = (ra + a.rows <= rb or rb + b.rows <= ra or
                            ca + a.cols <= cb or cb + b.cols <= ca)
                assert disjoint, (a, ra, ca, b, rb, cb)


def test_packing_saves_cores():
    hw = ac.HardwareModel(tile_rows=256, tile_cols=256)
    work = LayerWork("small", 4, (100,), (120,), vectors=10)  # 4 groups of 120x100
    unpacked = place([work], hw, pack_tiles=False, replicate=False)
    packed = place([work], hw, pack_tiles=True, replicate=False)
    assert unpacked.cores_used == 4 and packed.cores_used == 1
    assert packed.layers[0].depth == 4  # the core runs its four tiles one after the other
    assert packed.layers[0].stage_ns == pytest.approx(4 * unpacked.layers[0].stage_ns)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("packed", [False, True])
def test_replication_within_chips_and_never_slower(seed, packed):
    rng = random.Random(seed)
    hw = ac.HardwareModel(tiles_per_chip=rng.choice([8, 16, 64]))
    result = place(random_works(rng, rng.randint(1, 5)), hw, pack_tiles=packed,
                   digital_stage_ns=rng.choice([0.0, 500.0]))
    assert result.cores_used <= result.chips * hw.tiles_per_chip
    assert result.throughput >= result.throughput_single
    cores = {}
    for slot in result.slots:
        assert 0 <= slot.core < hw.tiles_per_chip and 0 <= slot.chip < result.chips
        cores.setdefault((slot.chip, slot.core), set()).add((slot.layer, slot.replica))
    assert len(cores) == result.cores_used
    assert all(len(owners) == 1 for owners in cores.values())  # one layer copy per core
    no_copies = place(random_works(random.Random(seed), 1), hw, replicate=False)
    assert all(lp.replicas == 1 for lp in no_copies.layers)


def test_replication_balances_an_early_conv():
    hw = ac.HardwareModel(tiles_per_chip=16)
    conv = LayerWork("conv1", 1, (27,), (16,), vectors=1024)  # many positions, one core
    fc = LayerWork("fc", 1, (256, 256), (10,), vectors=1)
    result = place([conv, fc], hw)
    assert result.layers[0].replicas == 14 and result.layers[1].replicas == 1  # 14 + 2 cores
    assert result.throughput == pytest.approx(result.throughput_single * 1024
                                              / -(-1024 // 14))
    assert result.bottleneck == "conv1"


def test_digital_bottleneck_stops_replication():
    hw = ac.HardwareModel(tiles_per_chip=16)
    conv = LayerWork("conv1", 1, (27,), (16,), vectors=10)
    result = place([conv], hw, digital_stage_ns=1e9)
    assert result.layers[0].replicas == 1 and result.bottleneck == "digital"


def test_static_placement_has_no_throughput():
    result = place(random_works(random.Random(1), 3, timed=False), ac.HardwareModel())
    assert result.throughput is None and all(lp.replicas == 1 for lp in result.layers)


def test_replication_copies_tied_stages_together_or_not_at_all():
    hw = ac.HardwareModel(tiles_per_chip=5)
    a = LayerWork("a", 1, (100,), (100,), vectors=8)
    b = LayerWork("b", 1, (100,), (100,), vectors=8)  # as slow as a
    result = place([a, b], hw)  # 3 spare cores: a and b each get a copy, then 1 is left
    assert [lp.replicas for lp in result.layers] == [2, 2]
    tight = place([a, b], ac.HardwareModel(tiles_per_chip=3))  # 1 spare: copying a alone is
    assert [lp.replicas for lp in tight.layers] == [1, 1]      # useless, so nothing is copied
    assert tight.throughput == tight.throughput_single


def test_core_map_lists_every_piece_once():
    hw = ac.HardwareModel(tiles_per_chip=8)
    work = LayerWork("fc", 1, (300,), (100,), vectors=4)  # 2 pieces: 256 + 44 columns
    result = place([work], hw)
    core_map = result.core_map()
    assert core_map[(0, 0)] == ["fc g0 o0 i0"] and core_map[(0, 1)] == ["fc g0 o0 i0/1"]
    assert core_map[(0, 2)] == ["fc g0 o0 i0 (copy 1)"]
    assert sum(len(v) for v in core_map.values()) == len(result.slots) == 2 * 4
