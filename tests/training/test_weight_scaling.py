"""Weight scaling (``weight_scaling_omega > 0``) and learned output scales on training tiles,
against aihwkit 1.2.0's semantics (``TileWithPeriphery``): the forward and the input gradient
are those of the logical weights, the logical weights move by ``-lr d^T x``."""

import pytest
import torch
from analog_compiler.runtime import TrainingTileArray

import analog_compiler as ac

PERFECT = ac.IOParameters(is_perfect=True)
W0 = torch.tensor([[0.2, -0.4, 0.1, 0.3], [1.0, 0.5, -0.2, 0.0], [0.05, 0.1, -0.1, 0.02]])
X = torch.tensor([[1.0, -0.5, 0.25, 2.0], [0.3, 0.2, -1.0, 0.0]])
D = torch.tensor([[0.5, -1.0, 0.2], [0.1, 0.3, -0.4]])
# aihwkit 1.2.0, AnalogLinear(4, 3, bias=False), SingleRPUConfig(IdealDevice(), perfect IO,
# MappingParameter(weight_scaling_omega=0.5, weight_scaling_columnwise=...)), set_weights(W0):
# the tile's weights without scaling and its scales
AIHWKIT_TILE = {
    False: ([[0.1, -0.2, 0.05, 0.15], [0.5, 0.25, -0.1, 0.0], [0.025, 0.05, -0.05, 0.01]],
            [2.0]),
    True: ([[0.25, -0.5, 0.125, 0.375], [0.5, 0.25, -0.1, 0.0], [0.25, 0.5, -0.5, 0.1]],
           [0.8, 2.0, 0.2]),
}


def _layer(device, columnwise, max_input_size=512, config=ac.SingleRPUConfig, **mapping):
    mp = ac.MappingParameter(weight_scaling_omega=0.5, weight_scaling_columnwise=columnwise,
                             max_input_size=max_input_size, **mapping)
    rc = config(device=device, forward=PERFECT, backward=PERFECT, mapping=mp)
    layer = ac.AnalogLinear(4, 3, bias=False, rpu_config=rc)
    layer.set_weights(W0)
    return layer


def _step(layer, lr=0.1):
    x = X.clone().requires_grad_(True)
    opt = ac.AnalogSGD(layer.parameters(), lr=lr)
    y = layer(x)
    (y * D).sum().backward()
    opt.step()
    return y.detach(), x.grad


@pytest.mark.parametrize("columnwise", [False, True])
def test_tile_weights_and_scales_match_aihwkit(columnwise):
    layer = _layer(ac.IdealDevice(), columnwise)
    tile_w, scales = AIHWKIT_TILE[columnwise]
    w, _ = layer.get_weights(apply_weight_scaling=False)
    torch.testing.assert_close(w, torch.tensor(tile_w))
    arr = layer.analog_module
    torch.testing.assert_close(arr.mapping_scales.reshape(-1),
                               torch.tensor(scales).expand(3).contiguous())


@pytest.mark.parametrize("max_input_size", [512, 2], ids=["one tile", "two input splits"])
@pytest.mark.parametrize("columnwise", [False, True])
def test_ideal_device_step_is_sgd_on_the_logical_weights(columnwise, max_input_size):
    """Forward ``W0 x``, input gradient ``W0^T d``, new logical weights ``W0 - lr d^T x`` (as
    aihwkit gives for every omega and both scalings), though the tile holds ``W0 / alpha``."""
    layer = _layer(ac.IdealDevice(), columnwise, max_input_size)
    if max_input_size == 2:
        scales = layer.analog_module.mapping_scales
        assert not torch.equal(scales[:, 0], scales[:, 1])  # each split has its own scales
    y, gx = _step(layer)
    torch.testing.assert_close(y, X @ W0.T)
    torch.testing.assert_close(gx, D @ W0)
    torch.testing.assert_close(layer.get_weights()[0], W0 - 0.1 * D.T @ X)


@pytest.mark.parametrize("columnwise", [False, True])
def test_pulsed_mean_count_update_of_the_tile_is_scaled_back(columnwise):
    """A constant-step device with mean-count trains: the tile moves by ``-lr (d / alpha)^T x``
    (in whole and fractional pulses of dw_min), so the logical weights by ``-lr d^T x``."""
    dev = ac.ConstantStepDevice(dw_min=1e-4, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0,
                                w_max_dtod=0.0, w_min_dtod=0.0, w_max=1.0, w_min=-1.0)
    layer = _layer(dev, columnwise, 2)
    layer.analog_module.rpu_config.update.pulse_type = ac.PulseType.MEAN_COUNT
    layer.analog_module.rpu_config.update.desired_bl = 1000  # trains long enough: no clipping
    _step(layer, lr=0.01)
    torch.testing.assert_close(layer.get_weights()[0], W0 - 0.01 * D.T @ X, rtol=0, atol=2e-6)


def test_mixed_precision_with_two_input_splits():
    """The digital ``chi`` accumulates ``-lr (d / alpha)^T x`` per tile: with a fine
    granularity (1e-4) all but half a pulse is transferred (times alpha <= 2: 1e-4 on the
    logical weights), and the logical weights follow SGD."""
    dev = ac.ConstantStepDevice(dw_min=1e-4, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0,
                                w_max_dtod=0.0, w_min_dtod=0.0, w_max=1.0, w_min=-1.0)
    layer = _layer(ac.MixedPrecisionCompound(device=dev), True, 2,
                   config=ac.DigitalRankUpdateRPUConfig)
    _step(layer)
    torch.testing.assert_close(layer.get_weights()[0], W0 - 0.1 * D.T @ X, rtol=0, atol=1.2e-4)


def test_unit_cell_needs_one_input_split():
    cfg = ac.build_config("ttv2", ac.IdealizedPresetDevice())
    cfg.mapping = ac.MappingParameter(weight_scaling_omega=1.0, max_input_size=2)
    with pytest.raises(ValueError, match="weight_scaling_omega"):
        TrainingTileArray(3, 4, cfg, bias=False)


def test_unit_cell_with_scaling_forward_is_logical():
    torch.manual_seed(0)
    dev = ac.ConstantStepDevice(w_max_dtod=0.0, w_min_dtod=0.0, w_max=1.0, w_min=-1.0)
    cfg = ac.build_config("c-ttv2", dev)
    cfg.mapping = ac.MappingParameter(weight_scaling_omega=0.5, weight_scaling_columnwise=True)
    cfg.forward = PERFECT
    layer = ac.AnalogLinear(4, 3, bias=False, rpu_config=cfg)
    layer.set_weights(W0)
    torch.testing.assert_close(layer.get_weights()[0], W0, rtol=0, atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(layer(X), X @ layer.get_weights()[0].T)
    _step(layer)  # runs; the transfer moves the slow array only a little
    assert torch.isfinite(layer.get_weights()[0]).all()


def test_learned_out_scales_train_digitally():
    """``learn_out_scaling``: ``y = alpha_out * (W x) + b``; ``alpha_out`` gets the digital
    SGD step of its gradient ``sum(d * W x)`` and the tile update sees ``alpha_out * d``."""
    rc = ac.SingleRPUConfig(device=ac.IdealDevice(), forward=PERFECT, backward=PERFECT,
                            mapping=ac.MappingParameter(learn_out_scaling=True))
    layer = ac.AnalogLinear(4, 3, bias=True, rpu_config=rc)
    layer.set_weights(W0, torch.zeros(3))
    arr = layer.analog_module
    with torch.no_grad():
        arr.out_scaling_alpha.fill_(2.0)
    x = X.clone().requires_grad_(True)
    opt = ac.AnalogSGD(layer.parameters(), lr=0.1)
    y = layer(x)
    torch.testing.assert_close(y, 2.0 * X @ W0.T)
    (y * D).sum().backward()
    torch.testing.assert_close(x.grad, 2.0 * D @ W0)
    opt.step()
    torch.testing.assert_close(arr.out_scaling_alpha.detach(),
                               torch.tensor([2.0 - 0.1 * float((D * (X @ W0.T)).sum())]))
    # the tile (logical weights without the learned scale) moved by -lr (2 d)^T x
    torch.testing.assert_close(layer.get_weights()[0] / arr.out_scaling_alpha.detach(),
                               W0 - 0.1 * 2.0 * D.T @ X)
