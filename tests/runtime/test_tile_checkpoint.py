"""Checkpoint formats of a tile array: the format is read, old ones migrate, newer ones fail."""

from __future__ import annotations

import io

import pytest
import torch
from analog_compiler.runtime import ModuleError, TileArray
from analog_compiler.runtime.tile_checkpoint import FORMAT

import analog_compiler as ac


def programmed_array() -> TileArray:
    torch.manual_seed(0)
    arr = TileArray(6, 10, ac.InferenceRPUConfig(), bias=True)
    arr.set_logical_weights(torch.randn(1, 6, 10) * 0.2)
    arr.eval()
    arr.drift(3600.0)
    return arr


def as_format_1(state: dict) -> dict:
    """What a checkpoint written before format 2 holds: ``current_weight``, format 1."""
    old = {("current_weight" if k == "chip_weight" else k): v for k, v in state.items()}
    old["_extra_state"] = {**state["_extra_state"], "format": 1}
    return old


def test_writes_the_current_format_and_round_trips() -> None:
    arr = programmed_array()
    state = arr.state_dict()
    assert state["_extra_state"]["format"] == FORMAT == 2 and "chip_weight" in state
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = TileArray(6, 10, ac.InferenceRPUConfig(), bias=True).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.chip_weight, arr.chip_weight) and fresh.is_programmed


def test_format_1_checkpoint_migrates() -> None:
    arr = programmed_array()
    old = as_format_1(arr.state_dict())
    fresh = TileArray(6, 10, ac.InferenceRPUConfig(), bias=True).eval()
    fresh.load_state_dict(old)  # strict: no unexpected current_weight, no missing chip_weight
    assert torch.equal(fresh.chip_weight, arr.chip_weight)
    x = torch.randn(4, 10)
    torch.manual_seed(1)
    y_old = arr(x)
    torch.manual_seed(1)
    assert torch.equal(fresh(x), y_old)
    assert "current_weight" in old  # the caller's dict is left as it was


def test_newer_format_is_refused_with_a_clear_error() -> None:
    state = programmed_array().state_dict()
    state["_extra_state"] = {**state["_extra_state"], "format": FORMAT + 1}
    fresh = TileArray(6, 10, ac.InferenceRPUConfig(), bias=True)
    with pytest.raises(ModuleError, match=f"format {FORMAT + 1} is newer .* reads \\({FORMAT}\\)"):
        fresh.load_state_dict(state)
