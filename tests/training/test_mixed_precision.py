"""MixedPrecisionCompound: the digital rank update chi and its transfer as pulse counts."""

import io

import pytest
import torch
from analog_compiler.runtime import TrainingTileArray

import analog_compiler as ac

QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=5.0, w_min=-5.0)


def _array(**mp):
    dev = ac.ConstantStepDevice(dw_min=0.01, **QUIET)
    rc = ac.DigitalRankUpdateRPUConfig(device=ac.MixedPrecisionCompound(device=dev, **mp))
    arr = TrainingTileArray(4, 3, rc, bias=False)
    with torch.no_grad():
        arr.weight.zero_()
    return arr


def test_transfer_is_rounded_chi_over_granularity_and_keeps_the_rest():
    torch.manual_seed(0)
    arr = _array()
    x, d = torch.randn(5, 3), torch.randn(5, 4)
    arr.update(x, d, lr=0.1)
    chi = -0.1 * d.T @ x
    counts = torch.round(chi / 0.01)
    torch.testing.assert_close(arr.weight[0], counts * 0.01)
    torch.testing.assert_close(arr.mp_chi[0], chi - counts * 0.01)
    assert float(arr.mp_chi.abs().max()) <= 0.005 + 1e-6


def test_transfer_every_and_rows_per_transfer():
    torch.manual_seed(0)
    arr = _array(transfer_every=2, n_rows_per_transfer=1)
    x, d = torch.randn(2, 3), torch.randn(2, 4)
    arr.update(x, d, lr=0.5)
    assert float(arr.weight.abs().max()) == 0.0  # accumulated, not transferred yet
    arr.update(x, d, lr=0.5)
    moved = arr.weight[0].abs().sum(1) > 0
    assert moved.tolist() == [True, False, False, False]  # row 0 only
    arr.update(x, d, lr=0.5)
    arr.update(x, d, lr=0.5)
    assert (arr.weight[0].abs().sum(1) > 0).tolist() == [True, True, False, False]
    assert int(arr.mp_row) == 2


def test_mixed_precision_layer_trains_and_checkpoints():
    torch.manual_seed(0)
    rc = ac.DigitalRankUpdateRPUConfig(
        device=ac.MixedPrecisionCompound(device=ac.SoftBoundsDevice(dw_min=0.01), n_x_bins=15,
                                         n_d_bins=15))
    layer = ac.AnalogLinear(6, 3, rpu_config=rc)
    opt = ac.AnalogSGD(layer.parameters(), lr=0.1)
    x, y = torch.randn(32, 6), torch.randn(32, 3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0]
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = ac.AnalogLinear(6, 3, rpu_config=ac.SingleRPUConfig())
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert isinstance(fresh.rpu_config, ac.DigitalRankUpdateRPUConfig)
    assert torch.equal(fresh.analog_module.mp_chi, layer.analog_module.mp_chi)


def test_mixed_precision_config_checks_and_round_trip():
    rc = ac.DigitalRankUpdateRPUConfig(
        device=ac.MixedPrecisionCompound(device=ac.PowStepDevice(), granularity=0.002))
    assert ac.DigitalRankUpdateRPUConfig.from_json(rc.to_json()) == rc
    assert rc.device.eps == 0.002 and ac.MixedPrecisionCompound().eps == 0.001
    with pytest.raises(ValueError, match=r"MixedPrecisionCompound\.n_rows_per_transfer"):
        ac.MixedPrecisionCompound(n_rows_per_transfer=0)
    with pytest.raises(TypeError, match=r"MixedPrecisionCompound\.device must be"):
        ac.MixedPrecisionCompound(device=ac.IdealDevice())
    with pytest.raises(TypeError, match=r"DigitalRankUpdateRPUConfig\.device must be"):
        ac.DigitalRankUpdateRPUConfig(device=ac.ConstantStepDevice())
