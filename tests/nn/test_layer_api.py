"""The aihwkit layer API on AnalogLinear / AnalogConv: weights, chip verbs, tiles, errors."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import TileArray
from torch import nn

import analog_compiler as ac


def scaled_config(columnwise: bool = True, omega: float = 1.0, **mapping) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(
        weight_scaling_omega=omega, weight_scaling_columnwise=columnwise, **mapping))


# ------------------------------------------------------------------ get / set / remap
@pytest.mark.parametrize("columnwise", [True, False])
def test_set_get_weights_with_omega_round_trip(columnwise: bool) -> None:
    layer = ac.AnalogLinear(10, 5, rpu_config=scaled_config(columnwise, max_input_size=4))
    w, b = torch.randn(5, 10), torch.randn(5)
    layer.set_weights(w, b)
    w2, b2 = layer.get_weights()
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(b2, b)
    raw, _ = layer.get_weights(apply_weight_scaling=False)
    assert float(raw.abs().max()) == pytest.approx(1.0)
    assert not torch.allclose(raw, w)
    # an explicit omega in set_weights
    layer.set_weights(w, weight_scaling_omega=0.25)
    assert float(layer.get_weights(apply_weight_scaling=False)[0].abs().max()) == \
        pytest.approx(0.25)
    torch.testing.assert_close(layer.get_weights()[0], w)
    # apply_weight_scaling=False stores W as is
    layer.set_weights(w, apply_weight_scaling=False)
    torch.testing.assert_close(layer.get_weights(apply_weight_scaling=False)[0], w)
    # conv weights keep their torch shape
    conv = ac.AnalogConv2d(2, 4, 3, rpu_config=scaled_config(columnwise))
    wc = torch.randn(4, 2, 3, 3)
    conv.set_weights(wc)
    torch.testing.assert_close(conv.get_weights()[0], wc)


def test_weight_attribute_is_a_view_of_the_tile_targets() -> None:
    """``layer.weight``: the digital layer's shape, dtype and device, no copy, read-only."""
    layer = ac.AnalogLinear(6, 4, rpu_config=scaled_config(max_input_size=4),
                            dtype=torch.bfloat16)
    w, b = torch.randn(4, 6), torch.randn(4)
    layer.set_weights(w, b)
    assert layer.weight.shape == (4, 6) and layer.weight.dtype == torch.bfloat16
    assert layer.weight.data_ptr() == layer.analog_module.weight.data_ptr()
    assert layer.weight.requires_grad
    # tile side of the mapping: the targets divided by the output scales
    torch.testing.assert_close(layer.weight.float(),
                               layer.get_target_weights(apply_weight_scaling=False)[0].float())
    assert layer.bias is layer.analog_module.bias
    torch.testing.assert_close(layer.bias, b.to(torch.bfloat16))
    conv = ac.AnalogConv2d(4, 6, 3, groups=2, bias=False)
    assert conv.weight.shape == (6, 2, 3, 3) and conv.bias is None
    torch.testing.assert_close(conv.weight, conv.get_target_weights()[0])
    with pytest.raises(AttributeError, match="AnalogLinear.weight is read-only.*set_weights"):
        layer.weight = torch.zeros(4, 6)
    with pytest.raises(AttributeError, match="AnalogConv2d.bias is read-only"):
        conv.bias = None
    assert "weight" not in dict(layer.named_parameters())  # the tile array owns the parameter


def test_remap_weights() -> None:
    layer = ac.AnalogLinear(6, 4, rpu_config=scaled_config(True))
    w, b = layer.get_weights()
    layer.remap_weights(0.5)
    tiles = layer.analog_module.weight.detach()
    torch.testing.assert_close(tiles.abs().amax(-1), torch.full((1, 4), 0.5))
    torch.testing.assert_close(layer.get_weights()[0], w)
    torch.testing.assert_close(layer.get_weights()[1], b)
    layer.remap_weights(None)  # back to the mapping's omega
    torch.testing.assert_close(layer.analog_module.weight.detach().abs().amax(-1),
                               torch.ones(1, 4))
    plain = ac.AnalogLinear(6, 4)  # omega 0 in the mapping: remap to 1.0 by default
    w, _ = plain.get_weights()
    x = torch.randn(3, 6)
    plain.remap_weights()
    assert float(plain.analog_module.weight.detach().abs().max()) == pytest.approx(1.0)
    torch.testing.assert_close(plain.get_weights()[0], w)
    plain.rpu_config.forward.is_perfect = True
    plain.analog_module.rpu_config = plain.rpu_config
    torch.testing.assert_close(plain(x), x @ w.T + plain.get_weights()[1])


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda m: m.set_weights(torch.randn(3, 5)), ValueError, "shape"),
    (lambda m: m.set_weights([[1.0]]), TypeError, "Tensor"),
    (lambda m: m.set_weights(torch.randn(4, 6), torch.randn(3)), ValueError, "bias"),
    (lambda m: m.set_weights(torch.randn(4, 6), [0.0] * 4), TypeError, "bias"),
    (lambda m: m.set_weights(torch.randn(4, 6), weight_scaling_omega=-1.0), ValueError, "omega"),
    (lambda m: m.drift_analog_weights(-1.0), ValueError, "t_inference"),
    (lambda m: m.drift_analog_weights("1h"), ValueError, "t_inference"),
    (lambda m: m.drift_analog_weights(float("nan")), ValueError, "t_inference"),
    (lambda m: m.drift_analog_weights(float("inf")), ValueError, "t_inference"),
    (lambda m: m.drift_analog_weights(True), ValueError, "t_inference"),
])
def test_bad_calls(call, exc: type, match: str) -> None:
    layer = ac.AnalogLinear(6, 4).eval()
    with pytest.raises(exc, match=match):
        call(layer)


def test_set_bias_on_layer_without_bias() -> None:
    layer = ac.AnalogLinear(6, 4, bias=False)
    with pytest.raises(ValueError, match="bias"):
        layer.set_weights(torch.randn(4, 6), torch.randn(4))


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("make", [
    lambda: ac.AnalogLinear(6, 4),
    lambda: ac.AnalogConv1d(2, 4, 3),
    lambda: ac.AnalogConv2d(2, 4, 3, groups=2),
    lambda: ac.AnalogConv3d(2, 4, 2),
], ids=["linear", "conv1d", "conv2d", "conv3d"])
@pytest.mark.parametrize(("what", "bad"), [("weight", NAN), ("weight", INF), ("bias", -INF),
                                           ("bias", NAN)])
def test_set_weights_rejects_non_finite_values(make, what: str, bad: float) -> None:
    layer = make()
    before = [t.clone() for t in layer.get_weights()]
    weight, bias = (t.clone() for t in before)
    (weight if what == "weight" else bias).view(-1)[1] = bad
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"^{name}\.set_weights: {what} has non-finite values"):
        layer.set_weights(weight, bias)
    for old, now in zip(before, layer.get_weights()):  # nothing was written
        torch.testing.assert_close(now, old)
    with pytest.raises(ValueError, match="omega"):
        layer.set_weights(before[0], weight_scaling_omega=NAN)


def test_every_set_weights_path_rejects_non_finite_values() -> None:
    lin = nn.Linear(6, 4)
    with torch.no_grad():
        lin.bias[0] = NAN
    with pytest.raises(ValueError, match=r"AnalogLinear\.set_weights: bias has non-finite"):
        ac.AnalogLinear.from_digital(lin)
    mha = nn.MultiheadAttention(8, 2)
    with torch.no_grad():
        mha.in_proj_weight[3, 3] = INF
    with pytest.raises(ValueError, match=r"AnalogLinear\.set_weights: weight has non-finite"):
        ac.AnalogMultiheadAttention.from_digital(mha)
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = NAN
    with pytest.raises(ValueError, match=r"AnalogConv2d\.set_weights: weight has non-finite"):
        ac.AnalogConv2d.from_digital(conv)


# ------------------------------------------------------------------ program / drift
def test_drift_accepts_numpy_scalars() -> None:
    import numpy as np

    layer = ac.AnalogLinear(4, 2).eval()
    layer.drift_analog_weights(np.float32(60.0))
    assert float(layer.analog_module.t_inference) == 60.0
    layer.drift_analog_weights(0)
    assert float(layer.analog_module.t_inference) == 0.0


def test_program_and_drift_only_in_eval() -> None:
    layer = ac.AnalogLinear(6, 4)
    with pytest.raises(ac.ModuleError, match="training mode"):
        layer.program_analog_weights()
    with pytest.raises(ac.ModuleError, match="training mode"):
        layer.drift_analog_weights(10.0)
    model = nn.Sequential(layer)
    with pytest.raises(ac.ModuleError):
        ac.program_analog_weights(model)
    with pytest.raises(ac.ModuleError):
        ac.drift_analog_weights(model, 10.0)


def test_layer_program_drift_semantics() -> None:
    layer = ac.AnalogLinear(16, 8).eval()
    arr = layer.analog_module
    layer.program_analog_weights()
    seed = int(arr.program_seed)
    programmed = arr.chip_weight.clone()
    layer.drift_analog_weights(3600.0)
    first = arr.chip_weight.clone()
    layer.drift_analog_weights(3600.0)
    assert int(arr.program_seed) == seed  # same chip
    assert not torch.equal(first, arr.chip_weight)  # fresh read noise
    layer.program_analog_weights()
    assert int(arr.program_seed) != seed  # a new chip
    assert not torch.equal(arr.chip_weight, programmed)
    layer.set_weights(*layer.get_weights())
    assert not arr.is_programmed


def test_model_level_helpers() -> None:
    model = nn.Sequential(ac.AnalogLinear(4, 4), nn.ReLU(),
                          nn.Sequential(ac.AnalogConv1d(1, 2, 3)), nn.Linear(2, 2)).eval()
    names = [name for name, _ in ac.analog_layers(model)]
    assert names == ["0", "2.0"]
    ac.drift_analog_weights(model, 60.0)  # programs first
    for _, layer in ac.analog_layers(model):
        assert layer.analog_module.is_programmed
        assert float(layer.analog_module.t_inference) == 60.0
    seeds = [int(m.analog_module.program_seed) for _, m in ac.analog_layers(model)]
    ac.program_analog_weights(model)
    assert [int(m.analog_module.program_seed) for _, m in ac.analog_layers(model)] != seeds
    assert float(model[0].analog_module.t_inference) == 0.0
    with pytest.raises(TypeError):
        list(ac.analog_layers("model"))  # type: ignore[arg-type]


# ------------------------------------------------------------------ realistic read / write
def test_realistic_read_write() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(32, 16)
    w, b = layer.get_weights()
    layer.realistic_read_write = True
    layer.set_weights(w, b)  # a realistic write programs the chip
    assert layer.analog_module.is_programmed
    read1, _ = layer.get_weights()
    read2, _ = layer.get_weights()
    exact, _ = layer.get_weights(force_exact=True)  # the programmed chip, read exactly
    torch.testing.assert_close(layer.get_target_weights()[0], w)
    assert not torch.allclose(exact, w, atol=1e-3)  # programming noise
    assert not torch.equal(read1, read2)  # noisy, fresh reads
    err = (read1 - exact).abs().mean() / exact.abs().mean()
    assert 0.005 < float(err) < 0.5  # the periphery's noise and quantization, not garbage
    layer.set_weights(w, b, force_exact=True)  # exact write: not programmed
    assert not layer.analog_module.is_programmed
    layer.get_weights()  # a realistic read changes nothing
    assert not layer.analog_module.is_programmed
    # the exact read follows the drifted chip; the realistic one sees it compensated
    layer.eval()
    layer.drift_analog_weights(86400.0 * 365)
    drifted, _ = layer.get_weights(force_exact=True)
    assert float(drifted.abs().mean()) < 0.8 * float(w.abs().mean())
    compensated, _ = layer.get_weights()
    assert 0.8 < float(compensated.abs().mean() / w.abs().mean()) < 1.25
    assert not type(layer).realistic_read_write  # a per-layer switch, off by default


def test_realistic_read_applies_every_digital_scale() -> None:
    # Mapping scales and learned output scales multiply the chip's weights in a realistic read
    # (an estimate from the forward), as they do in the exact read and in the forward.
    torch.manual_seed(0)
    rc = ac.InferenceRPUConfig(mapping=ac.MappingParameter(
        weight_scaling_omega=1.0, weight_scaling_columnwise=True, learn_out_scaling=True,
        out_scaling_columnwise=True))
    layer = ac.AnalogLinear(24, 8, rpu_config=rc)
    with torch.no_grad():
        layer.analog_module.out_scaling_alpha.copy_(torch.linspace(0.5, 2.0, 8))
    exact, _ = layer.get_weights(force_exact=True)
    layer.realistic_read_write = True
    reads = torch.stack([layer.get_weights()[0] for _ in range(20)])
    # the read's noise is a few percent of each row's max; the row scales must be there
    row_ratio = reads.mean(0).abs().amax(1) / exact.abs().amax(1)
    assert torch.all((row_ratio > 0.8) & (row_ratio < 1.25)), row_ratio


# ------------------------------------------------------------------ tiles
def test_tile_enumeration() -> None:
    layer = ac.AnalogLinear(1025, 600, rpu_config=scaled_config())
    assert layer.analog_tile_count() == 3 * 2
    named = list(layer.named_analog_tiles())
    assert [n for n, _ in named][:3] == ["analog_module.g0.i0.j0", "analog_module.g0.i0.j1",
                                         "analog_module.g0.i1.j0"]
    tiles = list(layer.analog_tiles())
    assert len(tiles) == 6 and all(t.array is layer.analog_module for t in tiles)
    assert {t.shape for t in tiles} == {(300, 342), (300, 341)}
    assert all(t.physical_shape == (300, 342) for t in tiles)
    assert tiles[-1].utilization == pytest.approx(341 / 342)
    w, _ = layer.get_weights()
    t = tiles[3]  # g0 i1 j1
    torch.testing.assert_close(t.get_weights(), w[300:600, 342:684])
    assert layer.get_analog_tile_devices() == [torch.device("cpu")] * 6
    assert "i1" in repr(t) or "in_split=1" in repr(t)
    assert t.rpu_config is layer.rpu_config


def test_register_analog_tile_and_unregister_parameter() -> None:
    layer = ac.AnalogLinear(4, 3)
    new = TileArray(3, 4, ac.FloatingPointRPUConfig())
    layer.register_analog_tile(new)
    assert layer.analog_module is new and layer.rpu_config is new.rpu_config
    layer.register_analog_tile(new, name="analog_module", update_only=True)
    with pytest.raises(ac.ModuleError):
        layer.register_analog_tile(new, name="other_tile", update_only=True)
    with pytest.raises(TypeError, match="TileArray"):
        layer.register_analog_tile(nn.Linear(4, 3))  # type: ignore[arg-type]
    layer.register_parameter("extra", nn.Parameter(torch.zeros(1)))
    assert "extra" in dict(layer.named_parameters())
    layer.unregister_parameter("extra")
    assert "extra" not in dict(layer.named_parameters())
    with pytest.raises(ac.ModuleError, match="extra"):
        layer.unregister_parameter("extra")


def test_extra_repr() -> None:
    text = ac.AnalogLinear(1025, 600, bias=False).extra_repr()
    for part in ("in_features=1025", "out_features=600", "bias=False", "tiles=6",
                 "3x2 of 300x342", "InferenceRPUConfig"):
        assert part in text, (part, text)


def test_reset_parameters() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(50, 40).eval()
    layer.program_analog_weights()
    before, _ = layer.get_weights()
    layer.reset_parameters()
    after, bias = layer.get_weights()
    assert not torch.equal(before, after)
    assert not layer.analog_module.is_programmed
    bound = 1 / 50**0.5  # torch's kaiming-uniform bound for nn.Linear
    assert float(after.abs().max()) <= bound and float(after.abs().max()) > 0.9 * bound
    assert float(bias.abs().max()) <= bound
    conv = ac.AnalogConv2d(3, 4, 3)
    conv.reset_parameters()
    assert float(conv.get_weights()[0].abs().max()) <= 1 / 27**0.5


def test_to_dtype_and_device() -> None:
    layer = ac.AnalogLinear(4, 3).eval()
    layer.drift_analog_weights(10.0)
    layer = layer.to(torch.float64)
    arr = layer.analog_module
    assert arr.weight.dtype == arr.chip_weight.dtype == torch.float64
    assert arr.program_seed.dtype == torch.int64
    assert layer(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64
    layer = layer.to("cpu")
    assert layer.get_analog_tile_devices() == [torch.device("cpu")]


def test_half_precision_keeps_drift_time() -> None:
    layer = ac.AnalogLinear(8, 4).eval()
    layer.drift_analog_weights(86400.0)  # not representable in float16
    layer = layer.half()
    arr = layer.analog_module
    assert arr.chip_weight.dtype == torch.float16
    assert arr.t_inference.dtype == torch.float64 and float(arr.t_inference) == 86400.0
    layer.realistic_read_write = True
    assert bool(torch.isfinite(layer.get_weights()[0]).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda() -> None:
    layer = ac.AnalogConv2d(2, 4, 3, rpu_config=scaled_config(max_input_size=7)).cuda().eval()
    assert layer.get_analog_tile_devices()[0].type == "cuda"
    layer.drift_analog_weights(3600.0)
    y = layer(torch.randn(2, 2, 5, 5, device="cuda"))
    assert y.is_cuda and bool(torch.isfinite(y).all())
