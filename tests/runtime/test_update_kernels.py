"""The fused C++ update kernel against the reference kernel: statistics, determinism per seed,
independence of the thread count; the formula tests also run on the reference kernel."""

import math

import pytest
import torch
from analog_compiler.runtime import (
    ConstantStepDevice,
    ExpStepDevice,
    LinearStepDevice,
    PiecewiseStepDevice,
    PowStepDevice,
    PulseType,
    SoftBoundsDevice,
    UpdateParameters,
)
from analog_compiler.runtime.update import STATE_KEYS, sample_device_state
from analog_compiler.runtime.update_ops import (
    encode_device,
    encode_update,
    tile_update_reference,
)

needs_cpp = pytest.mark.skipif(
    torch._C._dispatch_has_kernel_for_dispatch_key("analog::tile_update", "CPU") is False,
    reason="compiled update kernel not built")


def _case(device, update=None, shape=(12, 10), n=16, seed=0):
    torch.manual_seed(seed)
    st = sample_device_state(device, shape, seed=5)
    w = torch.empty(shape).uniform_(-0.2, 0.2)
    x, d = torch.randn(n, shape[1]), torch.randn(n, shape[0]) * 0.5
    x[x.abs() < 0.3] = 0.0  # sparse inputs, as after a ReLU
    kind, dp = encode_device(device)
    pt, up = encode_update(update or UpdateParameters())
    return w[None], [st[k][None] for k in STATE_KEYS], x, d, kind, dp, pt, up, shape


def _run(kernel, case, seed, lr=0.05):
    w, st, x, d, kind, dp, pt, up, shape = case
    w = w.clone()
    args = (w, st, x, d, lr, torch.tensor(seed), [shape[1]], [shape[0]], kind, dp, pt, up)
    if kernel == "cpp":
        torch.ops.analog.tile_update(*args)
    else:
        tile_update_reference(*args)
    return w[0]


DEVICES = [ConstantStepDevice(dw_min=0.01), SoftBoundsDevice(dw_min=0.01, w_max=0.4, w_min=-0.3),
           LinearStepDevice(dw_min=0.01, gamma_up=0.4, gamma_down=0.2, mult_noise=False),
           ExpStepDevice(dw_min=0.01, dw_min_std_add=0.1, dw_min_std_slope=0.2),
           PowStepDevice(dw_min=0.01, pow_gamma=1.5),
           PiecewiseStepDevice(dw_min=0.01, piecewise_up=[1.2, 1.0, 0.4],
                               piecewise_down=[0.5, 1.0, 1.3])]


@needs_cpp
@pytest.mark.parametrize("device", DEVICES, ids=lambda dv: type(dv).__name__)
def test_cpp_matches_reference_statistics(device):
    """Mean and spread of the change of every device over R seeds agree (z-test per device)."""
    case = _case(device)
    r = 24
    runs = {k: torch.stack([_run(k, case, s) for s in range(r)]) for k in ("cpp", "reference")}
    w0 = case[0][0]
    dc, dr = runs["cpp"] - w0, runs["reference"] - w0
    var = (dc.var(0) + dr.var(0)) / r
    z = (dc.mean(0) - dr.mean(0)) / var.clamp_min(1e-14).sqrt()
    assert float(z.abs().max()) < 5.5
    assert float(z.mean().abs()) < 5 / math.sqrt(z.numel()) * 2
    moved = dc.abs().sum() / dr.abs().sum()
    assert 0.9 < float(moved) < 1.1
    spread = dc.std(0).mean() / dr.std(0).mean()
    assert 0.85 < float(spread) < 1.15


@needs_cpp
@pytest.mark.parametrize("pulse_type", [PulseType.MEAN_COUNT, PulseType.DETERMINISTIC_IMPLICIT,
                                        PulseType.NONE, PulseType.NONE_WITH_DEVICE])
def test_cpp_deterministic_pulse_types_equal_reference(pulse_type):
    device = ConstantStepDevice(dw_min=0.01, dw_min_std=0.0)
    up = UpdateParameters(pulse_type=pulse_type, x_res_implicit=0.1, d_res_implicit=0.05)
    case = _case(device, up)
    torch.testing.assert_close(_run("cpp", case, 1, lr=0.5), _run("reference", case, 1, lr=0.5),
                               rtol=1e-5, atol=1e-6)


@needs_cpp
def test_cpp_is_deterministic_per_seed_and_independent_of_threads():
    case = _case(SoftBoundsDevice(dw_min=0.005), shape=(40, 30), n=32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("cpp", case, 7)
        torch.set_num_threads(max(2, threads))
        many = _run("cpp", case, 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    assert not torch.equal(one, _run("cpp", case, 8))
