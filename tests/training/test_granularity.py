"""The weight granularity of BL / update management, per device model, against aihwkit 1.2.0."""

import pytest
import torch
from analog_compiler.runtime import (
    ConstantStepDevice,
    DigitalRankUpdateRPUConfig,
    ExpStepDevice,
    LinearStepDevice,
    MixedPrecisionCompound,
    PiecewiseStepDevice,
    PowStepDevice,
    PulseType,
    SingleRPUConfig,
    SoftBoundsDevice,
    TrainingTileArray,
    UpdateParameters,
    update_ops,
)
from analog_compiler.runtime.config.presets import PCMPresetDevice
from analog_compiler.runtime.update_ops import decode_device, encode_device, encode_update

# ``device.as_bindings(RPUDataType.FLOAT).calc_weight_granularity()`` in aihwkit 1.2.0 (float32)
AIHWKIT = [
    (ConstantStepDevice(dw_min=0.01), 0.009999999776482582),
    (SoftBoundsDevice(dw_min=0.01), 0.009999999776482582),
    (LinearStepDevice(dw_min=0.01, gamma_up=0.3), 0.009999999776482582),
    (PowStepDevice(dw_min=0.01), 0.004999999888241291),
    (PowStepDevice(dw_min=0.01, pow_gamma=2.5, up_down=0.2), 0.0017677668947726488),
    (ExpStepDevice(dw_min=0.01), 0.009834244847297668),
    (ExpStepDevice(dw_min=0.01, up_down=0.3, A_down=0.5, gamma_down=3.0, a=-0.3, b=0.4,
                   w_max=1.2, w_min=-0.4), 0.005945819895714521),
    (ExpStepDevice(dw_min=0.01, up_down=-0.3), 0.009834244847297668),
    (ExpStepDevice(dw_min=0.01, A_down=5.0, gamma_down=0.1), 0.009999999776482582),
    (PiecewiseStepDevice(dw_min=0.01), 0.009999999776482582),
    (PiecewiseStepDevice(dw_min=0.01, piecewise_up=[1.5, 0.5, 2.0, 3.0],
                         piecewise_down=[1.0] * 4), 0.019999999552965164),
    (PiecewiseStepDevice(dw_min=0.01, piecewise_up=[1.5, 0.7, 2.0],
                         piecewise_down=[1.0] * 3), 0.00699999975040555),
    (PCMPresetDevice(), 0.032349999994039536),  # 20x its dw_min (0.0016)
]


@pytest.mark.parametrize("device,expected", AIHWKIT,
                         ids=[type(d).__name__ + str(i) for i, (d, _) in enumerate(AIHWKIT)])
def test_weight_granularity_matches_aihwkit(device, expected):
    assert device.weight_granularity == pytest.approx(expected, rel=1e-6)
    kind, params = encode_device(device)
    assert params[0] == pytest.approx(expected, rel=1e-6)  # the kernels' BL granularity
    assert decode_device(kind, params).dw_min == pytest.approx(expected, rel=1e-6)


QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=1.0, w_min=-1.0)


def _mean_count_step(device, x, d, lr, kernel):
    """The update of one tile at W = 0 by MEAN_COUNT trains (BL and update management on)."""
    rc = SingleRPUConfig(device=device, update=UpdateParameters(pulse_type=PulseType.MEAN_COUNT))
    arr = TrainingTileArray(d.shape[1], x.shape[1], rc, bias=False)
    arr.sample_devices(3)
    with torch.no_grad():
        arr.weight.zero_()
    if kernel == "registered":
        arr.update(x, d, lr)
    else:
        with torch.no_grad():
            update_ops.tile_update_reference(
                arr.weight, arr.device_state(), x, d, lr, torch.tensor(1), list(arr.plan.in_sizes),
                list(arr.plan.out_sizes), *encode_device(device), *encode_update(rc.update))
    return arr.weight.detach()[0]


@pytest.mark.parametrize("kernel", ["registered", "reference"])
@pytest.mark.parametrize("device", [
    PowStepDevice(dw_min=0.01, pow_gamma=2.0, pow_gamma_dtod=0.0, **QUIET),
    PiecewiseStepDevice(dw_min=0.01, piecewise_up=[0.2, 0.3, 0.8], piecewise_down=[0.8, 0.3, 0.2],
                        **QUIET),
    ExpStepDevice(dw_min=0.01, **QUIET),
], ids=["PowStep", "PiecewiseStep", "ExpStep"])
def test_bl_management_uses_the_granularity(device, kernel):
    """At W = 0 one pulse changes a weight by exactly the granularity (PowStep: omega = 1/2;
    PiecewiseStep: the middle node; ExpStep: down pulses), so with ``lr max|x| max|d|`` equal to
    the granularity, BL = 1, A = B = 1 and the mean-count update is exactly ``-lr d^T x``. With
    ``dw_min`` in its place (as before) it was 1/4, 3/10 and 0.98 of that."""
    g = device.weight_granularity
    x = torch.tensor([[1.0, 0.5, 0.25]])
    d = torch.tensor([[0.4, 1.0]]).float()  # x d > 0 everywhere: down pulses only
    w = _mean_count_step(device, x, d, g, kernel)
    torch.testing.assert_close(w, -g * d.T @ x, rtol=1e-5, atol=1e-9)


def test_mixed_precision_eps_is_the_granularity():
    dev = PowStepDevice(dw_min=0.01, pow_gamma=2.0)
    rc = DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=dev))
    assert rc.device.eps == pytest.approx(0.0025)
    assert MixedPrecisionCompound(device=dev, granularity=0.004).eps == 0.004


def test_encode_override():
    """A compound's granularity (``OneSidedUnitCell``: the mean of its devices') replaces the
    device's in the kernels' parameters."""
    assert encode_device(PowStepDevice(dw_min=0.01), 0.007)[1][0] == 0.007
