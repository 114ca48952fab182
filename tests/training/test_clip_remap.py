"""Clipping and remapping of the tile weights after each optimizer step (any torch.optim)."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime.programming import expand_row_values

import analog_compiler as ac

CT, RT = ac.WeightClipType, ac.WeightRemapType


def _model(clip=None, remap=None, omega: float = 0.0, max_in: int = 12) -> torch.nn.Module:
    rc = ac.InferenceRPUConfig(
        forward=ac.IOParameters(is_perfect=True),
        mapping=ac.MappingParameter(weight_scaling_omega=omega, weight_scaling_columnwise=True,
                                    max_input_size=max_in),
        clip=clip or ac.WeightClipParameter(), remap=remap or ac.WeightRemapParameter())
    torch.manual_seed(0)
    return torch.nn.Sequential(ac.AnalogLinear(20, 10, rpu_config=rc), torch.nn.ReLU(),
                               ac.AnalogLinear(10, 4, rpu_config=rc))


def _step(model: torch.nn.Module, opt_cls, lr: float = 0.5) -> None:
    opt = opt_cls(model.parameters(), lr=lr)
    handle = ac.attach_hwa_hooks(opt, model)
    x = torch.randn(32, 20)
    for _ in range(2):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    handle.remove()


def _arrays(model):
    return [m.analog_module for m in model if isinstance(m, ac.AnalogLayerBase)]


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_fixed_value_clip_holds(opt_cls) -> None:
    model = _model(clip=ac.WeightClipParameter(type=CT.FIXED_VALUE, fixed_value=0.05))
    _step(model, opt_cls)
    for arr in _arrays(model):
        assert arr.weight.abs().max() <= 0.05 + 1e-7
        assert (arr.weight.abs() > 0.0499).any()  # the step pushed weights to the bound


def test_without_hook_no_clip() -> None:
    model = _model(clip=ac.WeightClipParameter(type=CT.FIXED_VALUE, fixed_value=0.05))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    (model(torch.randn(8, 20)) ** 2).mean().backward()
    opt.step()
    assert max(a.weight.abs().max() for a in _arrays(model)) > 0.05


def test_layer_gaussian_per_tile() -> None:
    clip = ac.WeightClipParameter(type=CT.LAYER_GAUSSIAN, sigma=1.0)
    model = _model(clip=clip)
    arr = _arrays(model)[0]  # 2 input splits of 10 columns
    before = arr.weight.detach().clone()
    ac.post_update_step(model)
    for cols in (slice(0, 10), slice(10, 20)):
        tile = before[0, :, cols]
        bound = tile.std().item()
        assert arr.weight[0, :, cols].abs().max().item() == pytest.approx(bound, rel=1e-5)
        torch.testing.assert_close(arr.weight[0, :, cols], tile.clamp(-bound, bound))


def test_average_channel_max_with_cap() -> None:
    model = _model(clip=ac.WeightClipParameter(type=CT.AVERAGE_CHANNEL_MAX))
    arr = _arrays(model)[0]
    before = arr.weight.detach().clone()
    ac.post_update_step(model)
    tile = before[0, :, :10]
    bound = tile.abs().amax(1).mean()
    torch.testing.assert_close(arr.weight[0, :, :10], tile.clamp(-bound, bound))
    capped = _model(clip=ac.WeightClipParameter(type=CT.AVERAGE_CHANNEL_MAX, fixed_value=0.01))
    ac.post_update_step(capped)
    assert _arrays(capped)[0].weight.abs().max() <= 0.01 + 1e-7


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("kind", [RT.CHANNELWISE_SYMMETRIC, RT.LAYERWISE_SYMMETRIC])
def test_remap_holds_after_step(opt_cls, kind) -> None:
    model = _model(remap=ac.WeightRemapParameter(type=kind, remapped_wmax=1.0))
    _step(model, opt_cls, lr=0.05)
    for arr in _arrays(model):
        w = arr.weight.detach()[0]
        if kind is RT.CHANNELWISE_SYMMETRIC:  # every tile row
            for cols in (slice(0, 10), slice(10, 20)) if w.shape[1] == 20 else (slice(None),):
                torch.testing.assert_close(w[:, cols].abs().amax(1), torch.ones(w.shape[0]))
        else:  # every tile
            for cols in (slice(0, 10), slice(10, 20)) if w.shape[1] == 20 else (slice(None),):
                assert w[:, cols].abs().max().item() == pytest.approx(1.0)


def test_remap_keeps_the_function() -> None:
    model = _model(remap=ac.WeightRemapParameter(type=RT.CHANNELWISE_SYMMETRIC))
    x = torch.randn(16, 20)
    y0 = model(x)
    ac.post_update_step(model)
    arr = _arrays(model)[0]
    assert not torch.allclose(arr.mapping_scales, torch.ones_like(arr.mapping_scales))
    torch.testing.assert_close(model(x), y0)
    logical = arr.weight * expand_row_values(arr.mapping_scales, arr.plan)
    torch.testing.assert_close(logical, arr.weights())


def test_clip_then_remap_preset_style() -> None:
    model = _model(clip=ac.WeightClipParameter(type=CT.FIXED_VALUE, fixed_value=1.0),
                   remap=ac.WeightRemapParameter(type=RT.CHANNELWISE_SYMMETRIC), omega=1.0)
    _step(model, torch.optim.Adam, lr=0.2)
    for arr in _arrays(model):
        assert arr.weight.abs().max() <= 1.0 + 1e-6
        rows = arr.weight.detach()[0, :, :10].abs().amax(1)
        torch.testing.assert_close(rows, torch.ones_like(rows))


def test_clip_config_validation() -> None:
    with pytest.raises(ValueError, match="fixed_value"):
        ac.WeightClipParameter(type=CT.FIXED_VALUE)
    with pytest.raises(ValueError, match="remapped_wmax"):
        ac.WeightRemapParameter(remapped_wmax=0.0)
    with pytest.raises(TypeError, match="Optimizer"):
        ac.attach_hwa_hooks(object(), _model())  # type: ignore[arg-type]
