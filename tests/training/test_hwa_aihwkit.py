"""Deterministic HWA features against aihwkit 1.2.0's C++ CPU tile (recorded fixture,
``tests/fixtures/record_aihwkit_hwa.py``): the DOREFA and DISCRETIZE modifiers and the
CHANNELWISE_SYMMETRIC remapper with ``max_scale_range`` / ``max_scale_ref``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from analog_compiler.runtime import TilePlan, hwa
from analog_compiler.runtime.modifiers import modified_weight

import analog_compiler as ac

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from record_aihwkit_hwa import (  # noqa: E402
    MODIFIER_CASES,
    REMAP_CASES,
    modifier_weights,
    remap_inputs,
)

DATA = torch.load(FIXTURES / "aihwkit_hwa.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(MODIFIER_CASES))
def test_modifier_matches_aihwkit(name: str) -> None:
    mod = ac.WeightModifierParameter(**MODIFIER_CASES[name])
    w = modifier_weights().unsqueeze(0)
    ours = modified_weight(w, TilePlan.build(20, 10, 0, 0), mod)[0]
    torch.testing.assert_close(ours, DATA["modifier"][name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(REMAP_CASES))
def test_bounded_remap_matches_aihwkit(name: str) -> None:
    remap = ac.WeightRemapParameter(type="channelwise_symmetric", **REMAP_CASES[name])
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True), remap=remap)
    layer = ac.AnalogLinear(8, 6, bias=False, rpu_config=rc)
    arr = layer.analog_module
    scales, weights = remap_inputs()
    with torch.no_grad():
        arr.weight.copy_(weights.unsqueeze(0))
        arr.mapping_scales.copy_(scales.view(1, 1, 6))
    before = layer.get_weights()[0]
    ac.post_update_step(layer)
    expected = DATA["remap"][name]
    torch.testing.assert_close(arr.mapping_scales.view(6), expected["scales"], rtol=1e-6,
                               atol=1e-7)
    torch.testing.assert_close(arr.weight[0], expected["weights"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.get_weights()[0], before, rtol=1e-5, atol=1e-6)


def test_range_is_per_tile_and_counts_learned_scales() -> None:
    """The smallest scale is taken per tile (split outputs: two tiles) and includes the learned
    output scales (aihwkit's ``get_scales``: mapping times learned)."""
    remap = ac.WeightRemapParameter(type="channelwise_symmetric", max_scale_range=2.0)
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True), remap=remap,
                               mapping=ac.MappingParameter(max_output_size=3,
                                                           learn_out_scaling=True,
                                                           out_scaling_columnwise=True))
    layer = ac.AnalogLinear(4, 6, bias=False, rpu_config=rc)
    arr = layer.analog_module
    with torch.no_grad():
        arr.weight.fill_(1.0)
        arr.weight[0, :, 0] = torch.tensor([10.0, 1.0, 1.0, 10.0, 1.0, 1.0])  # rows 0, 3 large
        arr.mapping_scales.copy_(torch.tensor([1.0, 1.0, 1.0, 0.5, 0.5, 0.5]).view(1, 1, 6))
        arr.out_scaling_alpha.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.25]))
    before = layer.get_weights()[0]
    hwa.remap_weights_(arr)
    s = arr.mapping_scales.view(6) * arr.out_scaling_alpha.detach()
    # tile 0: min 1 -> row 0 capped at 2 (not 10); tile 1: min 0.125 -> cap 0.25 for row 3
    # (not 5) and row 4 (0.5: the cap also lowers a scale, as aihwkit's remapper does)
    torch.testing.assert_close(s, torch.tensor([2.0, 1.0, 1.0, 0.25, 0.25, 0.125]))
    torch.testing.assert_close(layer.get_weights()[0], before)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="WeightRemapParameter.max_scale_range"):
        ac.WeightRemapParameter(max_scale_range=2.0, remapped_wmax=0.5)
    with pytest.raises(ValueError, match="WeightRemapParameter.max_scale_ref"):
        ac.WeightRemapParameter(max_scale_ref=-1.0)
    r = ac.WeightRemapParameter(type="channelwise_symmetric", max_scale_range=3.0,
                                max_scale_ref=0.5)
    assert ac.WeightRemapParameter.from_json(r.to_json()) == r
