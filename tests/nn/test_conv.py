"""AnalogConv1d/2d/3d: ideal forward equals F.conv*, noise-free forward equals the loop oracle
on an independent im2col, conversion and argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from analog_oracle import oracle_forward, quiet_io
from torch import nn

import analog_compiler as ac

PERFECT = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True),
                                mapping=ac.MappingParameter(max_input_size=7, max_output_size=3))
ANALOG = {1: ac.AnalogConv1d, 2: ac.AnalogConv2d, 3: ac.AnalogConv3d}
DIGITAL = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
SPATIAL = {1: (11,), 2: (7, 6), 3: (5, 4, 6)}

CONV_CASES = [
    {},
    {"stride": 2},
    {"padding": 1},
    {"padding": "same"},
    {"padding": "same", "kernel_size": 2, "dilation": 2},
    {"padding": "same", "kernel_size": 4},  # odd total padding: the extra one on the right
    {"padding": "same", "kernel_size": 4, "padding_mode": "reflect"},
    {"padding": "valid"},
    {"dilation": 2, "padding": 2},
    {"groups": 2},
    {"groups": 4, "out_channels": 8},  # depthwise (channel multiplier 2)
    {"padding": 1, "padding_mode": "reflect"},
    {"padding": 1, "padding_mode": "circular"},
    {"padding": 2, "padding_mode": "replicate", "stride": 2},
    {"padding": "same", "padding_mode": "circular"},
    {"bias": False},
]


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in
                                                                  c.items()) or "plain")
def test_perfect_equals_f_conv(ndim: int, case: dict) -> None:
    torch.manual_seed(0)
    kw = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **case}
    digital = DIGITAL[ndim](**kw)
    analog = ANALOG[ndim].from_digital(digital, PERFECT)
    x = torch.randn(2, 4, *SPATIAL[ndim])
    torch.testing.assert_close(analog(x), digital(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(analog(x[0]), digital(x[0]), rtol=1e-5, atol=1e-5)  # unbatched
    assert analog.analog_tile_count() == analog.analog_module.plan.tile_count
    back = ANALOG[ndim].to_digital(analog)
    assert type(back) is DIGITAL[ndim]
    torch.testing.assert_close(back.weight, digital.weight)
    torch.testing.assert_close(back(x), digital(x))


def test_conv2d_noise_free_matches_oracle_on_unfold() -> None:
    """im2col by F.unfold (not the layer's Tensor.unfold), tiles by the loop oracle."""
    io = quiet_io(out_bound=3.0)
    rc = ac.InferenceRPUConfig(forward=io, mapping=ac.MappingParameter(max_input_size=7,
                                                                       max_output_size=2))
    layer = ac.AnalogConv2d(4, 6, 3, stride=2, padding=1, groups=2, rpu_config=rc).double()
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    layer.set_weights(w, b)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64)
    cols = F.unfold(x, 3, padding=1, stride=2)  # [N, C*9, L], channel-major
    n, _, positions = cols.shape
    rows = cols.transpose(1, 2).reshape(n * positions, 4 * 9)  # groups are contiguous channels
    in_sizes, out_sizes = [6, 6, 6], [2, 1]
    y, _, _ = oracle_forward(rows, w.reshape(2, 3, 18), io, in_sizes, out_sizes, None, b)
    expected = y.view(n, positions, 6).transpose(1, 2).reshape(n, 6, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-9, atol=1e-9)
    assert layer.analog_module.plan.in_sizes == (6, 6, 6)
    assert layer.analog_tile_count() == 2 * 3 * 2


def test_grouped_conv_maps_each_group_to_its_own_tiles() -> None:
    layer = ac.AnalogConv2d(6, 6, 3, groups=3)
    plan = layer.analog_module.plan
    assert plan.groups == 3 and plan.in_features == 2 * 9 and plan.out_features == 2
    assert layer.analog_tile_count() == 3
    assert sorted({t.group for t in layer.analog_tiles()}) == [0, 1, 2]


def test_conv_gradients_flow() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogConv1d(3, 4, 3, padding=1, rpu_config=PERFECT)
    digital = ac.AnalogConv1d.to_digital(layer)
    x = torch.randn(2, 3, 8, requires_grad=True)
    layer(x).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    digital(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.analog_module.weight.grad.reshape(4, 3, 3),
                               digital.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.analog_module.bias.grad, digital.bias.grad)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"padding_mode": "mirror"}, "padding_mode"),
    ({"padding": "full"}, "padding"),
    ({"padding": "same", "stride": 2}, "same"),
    ({"padding": -1}, "padding"),
    ({"groups": 3}, "groups"),
    ({"kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"stride": 0}, "stride"),
    ({"in_channels": 0}, "in_channels"),
])
def test_bad_conv_arguments(kwargs: dict, match: str) -> None:
    args = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        ac.AnalogConv2d(**args)


def test_bad_input_shape_and_digital_type() -> None:
    layer = ac.AnalogConv2d(4, 6, 3)
    with pytest.raises(ValueError, match="expected input"):
        layer(torch.randn(2, 3, 8, 8))
    with pytest.raises(TypeError, match="Conv2d"):
        ac.AnalogConv2d.from_digital(nn.Conv1d(4, 6, 3))


def test_extra_repr_names_conv_arguments() -> None:
    text = ac.AnalogConv2d(4, 8, 3, padding=1, dilation=2, groups=2, padding_mode="reflect",
                           bias=False).extra_repr()
    for part in ("4, 8", "kernel_size=(3, 3)", "dilation=(2, 2)", "groups=2",
                 "padding_mode='reflect'", "bias=False", "tiles=2"):
        assert part in text


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_signature_is_torch_plus_rpu_config(ndim: int) -> None:
    import inspect

    torch_params = list(inspect.signature(DIGITAL[ndim]).parameters)
    ours = list(inspect.signature(ANALOG[ndim]).parameters)
    head = [p for p in torch_params if p not in ("device", "dtype")]
    assert ours[:len(head)] == head
    assert ours[len(head):len(head) + 2] == ["rpu_config", "tile_module_class"]
    # positional use as with torch
    layer = ANALOG[ndim](2, 4, 3, 1, 1, 1, 2, False, "circular", PERFECT)
    assert layer.groups == 2 and layer.padding_mode == "circular" and layer.rpu_config is PERFECT
