"""The pulsed update against closed-form device formulas, sized by the sample."""

import math

import pytest
import torch
from analog_compiler.runtime import (
    ConstantStepDevice,
    IdealDevice,
    PulseType,
    SingleRPUConfig,
    SoftBoundsDevice,
    TrainingTileArray,
    UpdateParameters,
)
from analog_compiler.runtime.update import sample_device_state
from analog_compiler.runtime.update_ops import encode_device, encode_update


@pytest.fixture(autouse=True, params=["registered", "reference"])
def kernel(request, monkeypatch):
    """Every test runs on the registered kernel (C++ when built) and on the reference kernel."""
    if request.param == "reference":
        from analog_compiler.runtime import training_tile, update_ops

        def reference(weight, state, x, d, lr, seed, plan, device, update):
            with torch.no_grad():
                update_ops.tile_update_reference(
                    weight, state, x, d, lr, seed, list(plan.in_sizes), list(plan.out_sizes),
                    *encode_device(device), *encode_update(update))

        monkeypatch.setattr(training_tile, "tile_update", reference)
    return request.param


QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0)


def _array(device, out=4, inp=3, update=None, seed=1):
    rc = SingleRPUConfig(device=device, update=update or UpdateParameters())
    arr = TrainingTileArray(out, inp, rc, bias=False)
    arr.sample_devices(seed)
    with torch.no_grad():
        arr.weight.zero_()
    return arr


def _one_pulse_per_sample(arr, n, up=True):
    """``n`` input vectors that each give exactly one coincidence per device: p = q = 1, BL = 1
    (lr = dw_min, |x| = |d| = 1). Up pulses need x d < 0."""
    out, inp = arr.weight.shape[1:]
    x = torch.ones(n, inp)
    d = torch.full((n, out), -1.0 if up else 1.0)
    arr.update(x, d, lr=arr.rpu_config.device.dw_min)


def test_mean_count_is_exactly_minus_lr_x_d():
    torch.manual_seed(0)
    dev = ConstantStepDevice(dw_min=1e-3, w_max=10.0, w_min=-10.0, **QUIET)
    arr = _array(dev, 6, 5, UpdateParameters(pulse_type=PulseType.MEAN_COUNT))
    x, d = torch.randn(3, 5), torch.randn(3, 6)
    arr.update(x, d, lr=0.01)
    torch.testing.assert_close(arr.weight[0], -0.01 * d.T @ x, rtol=1e-4, atol=1e-7)


def test_stochastic_update_of_nearly_ideal_device_is_minus_lr_x_d_in_expectation():
    """N copies of one (x, d): per device the coincidences of the N vectors are independent, so
    dw = dw_min * sum_n c_n with E = N lr |x d| and Var = N dw_min^2 BL pq (1 - pq)."""
    torch.manual_seed(0)
    dw, lr, n = 1e-3, 0.02, 300
    dev = ConstantStepDevice(dw_min=dw, w_max=10.0, w_min=-10.0, **QUIET)
    arr = _array(dev, 24, 20)
    x, d = torch.rand(20) * 2 - 1, torch.rand(24) * 2 - 1
    arr.update(x.expand(n, -1).contiguous(), d.expand(n, -1).contiguous(), lr)
    xa, da = x.abs().max(), d.abs().max()
    bl = math.ceil(lr * xa * da / dw)
    assert 1 < bl <= 31
    a = math.sqrt(lr / (dw * bl)) * math.sqrt(da / xa)
    b = math.sqrt(lr / (dw * bl)) * math.sqrt(xa / da)
    pq = torch.outer(b * d.abs(), a * x.abs())
    expected = -n * lr * torch.outer(d, x)
    sd = dw * torch.sqrt(n * bl * pq * (1 - pq)).clamp_min(1e-12)
    z = (arr.weight[0].detach() - expected) / sd
    assert z.abs().max() < 5.5
    assert abs(float(z.mean())) < 5 / math.sqrt(z.numel()) * 3  # rows share d's trains


@pytest.mark.parametrize("up_down", [0.0, 0.2, -0.3])
def test_constant_step_n_up_then_n_down_follows_dw_min_asymmetry_and_bounds(up_down):
    dev = ConstantStepDevice(dw_min=0.01, up_down=up_down, w_max=0.3, w_min=-0.4, **QUIET)
    arr = _array(dev)
    _one_pulse_per_sample(arr, 10, up=True)
    torch.testing.assert_close(arr.weight, torch.full_like(arr.weight, 10 * 0.01 * (1 + up_down)))
    _one_pulse_per_sample(arr, 10, up=False)
    net = 10 * 0.01 * ((1 + up_down) - (1 - up_down))
    torch.testing.assert_close(arr.weight, torch.full_like(arr.weight, net))
    _one_pulse_per_sample(arr, 100, up=True)  # stops at the upper bound
    torch.testing.assert_close(arr.weight, torch.full_like(arr.weight, 0.3))
    _one_pulse_per_sample(arr, 200, up=False)  # and at the lower one
    torch.testing.assert_close(arr.weight, torch.full_like(arr.weight, -0.4))


def test_constant_step_cycle_to_cycle_noise_spread():
    """N up pulses with multiplicative noise: w = dw sum_k (1 + s xi_k): mean N dw, std
    dw s sqrt(N), over 30x30 independent devices."""
    n, dw, s = 20, 0.01, 0.3
    dev = ConstantStepDevice(dw_min=dw, w_max=10.0, w_min=-10.0,
                             **{**QUIET, "dw_min_std": s})
    arr = _array(dev, 30, 30)
    _one_pulse_per_sample(arr, n)
    w = arr.weight.detach().flatten()
    m = w.numel()
    std = dw * s * math.sqrt(n)
    assert abs(float(w.mean()) - n * dw) < 5 * std / math.sqrt(m)
    assert abs(float(w.std()) - std) < 5 * std / math.sqrt(2 * m)


def test_soft_bounds_approach_w_max_geometrically():
    dw, w_max = 0.02, 0.5
    dev = SoftBoundsDevice(dw_min=dw, w_max=w_max, w_min=-w_max, **QUIET)
    arr = _array(dev)
    done = 0
    for n in (1, 10, 50, 200):
        _one_pulse_per_sample(arr, n - done)
        done = n
        expected = w_max - w_max * (1 - dw / w_max) ** n
        torch.testing.assert_close(arr.weight, torch.full_like(arr.weight, expected))
    assert float(arr.weight.detach().max()) < w_max


def test_device_to_device_spreads_match_dtod():
    dev = ConstantStepDevice(dw_min=0.01, dw_min_dtod=0.2, up_down=0.0, up_down_dtod=0.05,
                             w_max=0.8, w_max_dtod=0.1, w_min=-0.6, w_min_dtod=0.25,
                             enforce_consistency=False)
    shape = (200, 200)
    st = sample_device_state(dev, shape, seed=7)
    m = shape[0] * shape[1]
    checks = [  # tensor, mean, std
        (st["scale_up"] / 0.01, 1.0, math.hypot(0.2, 0.05)),
        (st["scale_down"] / 0.01, 1.0, math.hypot(0.2, 0.05)),
        (st["max_bound"], 0.8, 0.8 * 0.1),
        (st["min_bound"], -0.6, 0.6 * 0.25),
    ]
    for t, mean, std in checks:
        assert abs(float(t.mean()) - mean) < 5 * std / math.sqrt(m)
        assert abs(float(t.std()) - std) < 5 * std / math.sqrt(2 * m)
    again = sample_device_state(dev, shape, seed=7)
    assert all(torch.equal(st[k], again[k]) for k in st)


def test_ideal_device_and_pulse_type_none_are_the_float_update():
    x, d = torch.randn(5, 3), torch.randn(5, 4)
    for dev, up in ((IdealDevice(), UpdateParameters()),
                    (ConstantStepDevice(), UpdateParameters(pulse_type=PulseType.NONE))):
        arr = _array(dev, update=up)
        arr.update(x, d, lr=0.1)
        torch.testing.assert_close(arr.weight[0], -0.1 * d.T @ x)
    arr = _array(ConstantStepDevice(w_max=0.05, w_min=-0.05, **QUIET),
                 update=UpdateParameters(pulse_type=PulseType.NONE_WITH_DEVICE))
    arr.update(x, d, lr=10.0)
    assert float(arr.weight.abs().max()) == pytest.approx(0.05)


def test_update_rejects_bad_shapes():
    arr = _array(ConstantStepDevice())
    with pytest.raises(ValueError, match=r"TrainingTileArray\.update: x must be \[N, 3\]"):
        arr.update(torch.ones(2, 4), torch.ones(2, 4), 0.1)
    with pytest.raises(ValueError, match=r"TrainingTileArray\.update: d must be \[2, 4\]"):
        arr.update(torch.ones(2, 3), torch.ones(3, 4), 0.1)


def test_tile_update_opcheck():
    arr = _array(ConstantStepDevice(), 5, 4)
    with torch.no_grad():
        arr.weight.normal_(0, 0.1)
    rc = arr.rpu_config
    args = (arr.weight.detach().clone(), [t.clone() for t in arr.device_state()],
            torch.randn(3, 4), torch.randn(3, 5), 0.05, torch.tensor(3), [4], [5],
            *encode_device(rc.device), *encode_update(rc.update))
    torch.library.opcheck(torch.ops.analog.tile_update.default, args,
                          test_utils=("test_schema", "test_faketensor"))
