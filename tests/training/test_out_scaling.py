"""Learned output scales (mapping.learn_out_scaling): scalar or per column, differentiable."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac


def _rc(columnwise: bool, omega: float = 0.0) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(
        forward=ac.IOParameters(is_perfect=True),
        mapping=ac.MappingParameter(learn_out_scaling=True, out_scaling_columnwise=columnwise,
                                    weight_scaling_omega=omega, weight_scaling_columnwise=True,
                                    max_output_size=2))


def _scaled_layer() -> tuple[ac.AnalogLinear, torch.Tensor]:
    """An eval layer with per-column learned output scales 0.5, 2, 3 and an input batch."""
    torch.manual_seed(0)
    layer = ac.AnalogLinear(5, 3, rpu_config=_rc(True, omega=1.0)).eval()
    with torch.no_grad():
        layer.analog_module.out_scaling_alpha.copy_(torch.tensor([0.5, 2.0, 3.0]))
    return layer, torch.randn(4, 5)


def test_parameter_only_when_enabled() -> None:
    assert "analog_module.out_scaling_alpha" not in ac.AnalogLinear(4, 3).state_dict()
    col = ac.AnalogLinear(4, 3, rpu_config=_rc(True))
    assert col.analog_module.out_scaling_alpha.shape == (3,)
    scalar = ac.AnalogLinear(4, 3, rpu_config=_rc(False))
    assert scalar.analog_module.out_scaling_alpha.shape == (1,)
    conv = ac.AnalogConv2d(4, 6, 3, groups=2, rpu_config=_rc(True))
    assert conv.analog_module.out_scaling_alpha.shape == (6,)
    conv(torch.randn(1, 4, 5, 5)).sum().backward()
    assert conv.analog_module.out_scaling_alpha.grad.shape == (6,)


@pytest.mark.parametrize("columnwise", [True, False])
@pytest.mark.parametrize("omega", [0.0, 1.0])
def test_forward_and_gradients(columnwise: bool, omega: float) -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(5, 3, rpu_config=_rc(columnwise, omega))
    arr = layer.analog_module
    w, b = layer.get_weights()  # alpha = 1 here; get_weights includes the learned scales
    with torch.no_grad():
        arr.out_scaling_alpha.copy_(torch.tensor([0.5, 2.0, 3.0][: arr.out_scaling_alpha.numel()]))
    x = torch.randn(7, 5)
    alpha = arr.out_scaling_alpha.detach()
    torch.testing.assert_close(layer(x), alpha * (x @ w.T) + b)
    gy = torch.randn(7, 3)
    (layer(x) * gy).sum().backward()
    expected = (gy * (x @ w.T)).sum(0)
    if not columnwise:
        expected = expected.sum().view(1)
    torch.testing.assert_close(arr.out_scaling_alpha.grad, expected)
    torch.testing.assert_close(arr.bias.grad, gy.sum(0))


def test_scales_change_in_training() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(5, 3, rpu_config=_rc(True))
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    x = torch.randn(32, 5)
    target = 3 * layer(x).detach()
    for _ in range(3):
        opt.zero_grad()
        ((layer(x) - target) ** 2).mean().backward()
        opt.step()
    assert (layer.analog_module.out_scaling_alpha.detach() > 1.05).all()


def test_to_digital_and_checkpoint_include_the_scales() -> None:
    layer, x = _scaled_layer()
    digital = ac.AnalogLinear.to_digital(layer)
    torch.testing.assert_close(digital(x), layer(x))
    fresh = ac.AnalogLinear(5, 3)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh.eval()(x), layer(x))


def test_get_set_weights_round_trip_folds_the_scales() -> None:
    layer, x = _scaled_layer()
    y = layer(x)
    w, b = layer.get_weights()
    torch.testing.assert_close(x @ w.T + b, y)
    layer.set_weights(w, b)  # folds the scales into the weights, scales back to 1
    torch.testing.assert_close(layer.analog_module.out_scaling_alpha.detach(), torch.ones(3))
    torch.testing.assert_close(layer(x), y)
    layer.remap_weights(1.0)
    torch.testing.assert_close(layer(x), y)
