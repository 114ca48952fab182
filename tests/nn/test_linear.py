"""AnalogLinear: ideal and noise-free forward against independent computations, conversion,
seeding, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from analog_oracle import oracle_forward, quiet_io
from torch import nn

import analog_compiler as ac


def config(io: ac.IOParameters | None = None, omega: float = 0.0, columnwise: bool = False,
           max_in: int = 512, max_out: int = 512, **kw) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(
        forward=io or ac.IOParameters(),
        mapping=ac.MappingParameter(weight_scaling_omega=omega,
                                    weight_scaling_columnwise=columnwise,
                                    max_input_size=max_in, max_output_size=max_out), **kw)


@pytest.mark.parametrize(("max_in", "max_out", "omega", "columnwise"), [
    (512, 512, 0.0, False), (7, 5, 0.0, False), (7, 5, 1.0, True), (4, 0, 0.8, False)])
def test_perfect_equals_f_linear(max_in, max_out, omega, columnwise) -> None:
    torch.manual_seed(0)
    rc = config(ac.IOParameters(is_perfect=True), omega, columnwise, max_in, max_out)
    layer = ac.AnalogLinear(19, 11, rpu_config=rc)
    w, b = layer.get_weights()
    x = torch.randn(2, 3, 19)
    torch.testing.assert_close(layer(x), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    fp = ac.AnalogLinear(19, 11, rpu_config=ac.FloatingPointRPUConfig(rc.mapping))
    fp.set_weights(w, b)
    torch.testing.assert_close(fp(x), F.linear(x, w, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("omega", "columnwise"), [(0.0, False), (1.0, False), (0.7, True)])
def test_noise_free_layer_matches_oracle(omega: float, columnwise: bool) -> None:
    """The layer's scaled tiles, summed partial products and bias against the loop oracle, with
    the weight-scaling factors recomputed here from max|W| per tile (or row) and omega."""
    io = quiet_io(out_bound=4.0)
    layer = ac.AnalogLinear(13, 7, rpu_config=config(io, omega, columnwise, 5, 3))
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(7, 13, generator=gen, dtype=torch.float64)
    b = torch.randn(7, generator=gen, dtype=torch.float64)
    layer = layer.double()
    layer.set_weights(w, b)
    x = torch.randn(9, 13, generator=gen, dtype=torch.float64) * 3
    in_sizes, out_sizes = [5, 4, 4], [3, 2, 2]
    scales = torch.ones(1, 3, 7, dtype=torch.float64)
    if omega > 0:
        col0 = 0
        for i, cols in enumerate(in_sizes):
            row0 = 0
            for rows in out_sizes:
                block = w[row0:row0 + rows, col0:col0 + cols].abs()
                peak = block.amax(1) if columnwise else block.amax().expand(rows)
                scales[0, i, row0:row0 + rows] = peak / omega
                row0 += rows
            col0 += cols
    tile_w = w.clone()
    col0 = 0
    for i, cols in enumerate(in_sizes):
        tile_w[:, col0:col0 + cols] /= scales[0, i].unsqueeze(1)
        col0 += cols
    y_ref, _, _ = oracle_forward(x, tile_w.unsqueeze(0), io, in_sizes, out_sizes,
                                 scales if omega > 0 else None, b)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y_ref, rtol=1e-9, atol=1e-9)


def test_seeded_forward() -> None:
    layer = ac.AnalogLinear(8, 4)
    x = torch.randn(3, 8)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return layer(x)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    layer.eval()
    layer.drift_analog_weights(60.0)
    assert torch.equal(run(4), run(4))
    assert not torch.equal(run(4), run(5))


def test_noise_is_redrawn_every_forward_in_eval() -> None:
    layer = ac.AnalogLinear(8, 4).eval()
    x = torch.randn(3, 8)
    assert not torch.equal(layer(x), layer(x))


def test_gradients_reach_weights_inputs_and_bias() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(9, 5, rpu_config=config(max_in=4))
    x = torch.randn(6, 9, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    arr = layer.analog_module
    assert arr.weight.grad is not None and arr.weight.grad.abs().sum() > 0
    assert arr.bias.grad is not None
    torch.testing.assert_close(arr.bias.grad, torch.full((5,), 6.0))
    # no clipping here: the straight-through input gradient is W^T 1
    torch.testing.assert_close(x.grad, torch.ones(6, 5) @ arr.weight.detach()[0])


def test_from_digital_and_to_digital() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(10, 4)
    analog = ac.AnalogLinear.from_digital(lin, config(ac.IOParameters(is_perfect=True),
                                                      omega=1.0))
    assert analog.training
    w, b = analog.get_weights()
    torch.testing.assert_close(w, lin.weight.detach())
    torch.testing.assert_close(b, lin.bias.detach())
    x = torch.randn(3, 10)
    torch.testing.assert_close(analog(x), lin(x), rtol=1e-5, atol=1e-5)
    back = ac.AnalogLinear.to_digital(analog)
    assert type(back) is nn.Linear and back.training
    torch.testing.assert_close(back.weight, lin.weight)
    torch.testing.assert_close(back.bias, lin.bias)
    # realistic: the programmed, drifted, compensated chip folded into plain weights
    analog.eval()
    analog.drift_analog_weights(3600.0)
    real = ac.AnalogLinear.to_digital(analog, realistic=True)
    assert not real.training
    assert not torch.allclose(real.weight, lin.weight)
    torch.testing.assert_close(real(x), analog(x), rtol=1e-5, atol=1e-5)
    no_bias = ac.AnalogLinear.from_digital(nn.Linear(3, 2, bias=False))
    assert no_bias.analog_module.bias is None and no_bias.get_weights()[1] is None
    assert ac.AnalogLinear.to_digital(no_bias).bias is None
    with pytest.raises(TypeError, match="nn.Linear"):
        ac.AnalogLinear.from_digital(nn.Conv1d(2, 2, 1))  # type: ignore[arg-type]


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="in_features"):
        ac.AnalogLinear(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        ac.AnalogLinear(3, True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rpu_config"):
        ac.AnalogLinear(3, 3, rpu_config=ac.IOParameters())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tile_module_class"):
        ac.AnalogLinear(3, 3, tile_module_class=nn.Linear)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        ac.AnalogLinear(3, 2)(torch.randn(4, 5))


def test_dtype_device_kwargs_and_custom_tile_class() -> None:
    class MyArray(ac.runtime.TileArray):
        pass

    layer = ac.AnalogLinear(3, 2, tile_module_class=MyArray, dtype=torch.float64)
    assert isinstance(layer.analog_module, MyArray)
    assert layer.analog_module.weight.dtype == torch.float64
    assert layer(torch.randn(1, 3, dtype=torch.float64)).dtype == torch.float64


def test_signature_and_unbatched_input() -> None:
    import inspect

    params = list(inspect.signature(ac.AnalogLinear).parameters)
    assert params[:5] == ["in_features", "out_features", "bias", "rpu_config",
                          "tile_module_class"]
    layer = ac.AnalogLinear(5, 3, False, config(ac.IOParameters(is_perfect=True)))
    x = torch.randn(5)
    y = layer(x)
    assert y.shape == (3,)
    torch.testing.assert_close(y, layer.get_weights()[0] @ x)


def test_batched_output_is_not_a_view_and_backpropagates() -> None:
    """A [B, T, in] input gives a [B, T, out] result that is no view (FSDP2 warns about views:
    an in-place op on one skips its hooks), with the gradients of the 2-D call."""
    torch.manual_seed(0)
    layer = ac.AnalogLinear(8, 4, rpu_config=ac.InferenceRPUConfig(forward=quiet_io()))
    x = torch.randn(2, 3, 8, requires_grad=True)
    torch.manual_seed(1)
    y = layer(x)
    assert y.shape == (2, 3, 4) and y._base is None
    y.pow(2).sum().backward()
    x2 = x.detach().reshape(6, 8).requires_grad_()
    torch.manual_seed(1)
    y2 = layer(x2)
    y2.pow(2).sum().backward()
    assert torch.equal(y.detach().reshape(6, 4), y2.detach())
    torch.testing.assert_close(x.grad.reshape(6, 8), x2.grad)
