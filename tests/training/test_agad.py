"""AGAD (``DynamicTransferCompound``) against its recursion, written out per cross-point."""

import io
import math

import torch
from analog_compiler.runtime import TrainingTileArray
from torch import nn

import analog_compiler as ac

QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=10.0, w_min=-10.0)


def _oracle(x, d, lr, fast_lr, dw_a, dw_c, in_chop_prob, tail, rows, cols):
    """aihwkit's ``DynamicTransferRPUDevice::readAndUpdate`` with a transfer after every vector,
    perfect reads, constant steps, one-pulse writes (``desired_bl = 1``)."""
    a, c, h = torch.zeros(rows, cols), torch.zeros(rows, cols), torch.zeros(rows, cols)
    mean, past = torch.zeros(rows, cols), torch.zeros(rows, cols)
    in_chop = [False] * cols  # output choppers never flip in AGAD (all 0)
    switched = [False] * cols
    ns = max(math.ceil(1 / in_chop_prob), 2)
    mu = min(tail / ns, 1.0)
    scale = lr / dw_a  # transfer_lr * lr / (buffer_granularity * dw_min_A)
    k, sweeps = 0, 0
    for xn, dn in zip(x, d):
        sx = torch.tensor([-1.0 if ch else 1.0 for ch in in_chop])
        a -= fast_lr * torch.outer(dn, xn * sx)
        s = sweeps % ns + 1
        v = a[:, k].clone()
        if switched[k]:
            past[:, k] = mean[:, k]
        switched[k] = False
        dw = (v - past[:, k]) * (-1.0 if in_chop[k] else 1.0)
        omega = h[:, k] + dw * scale
        big = omega.abs() >= 1
        n = torch.where(big, omega.trunc().clamp(-1, 1), torch.zeros_like(omega))
        h[:, k] = torch.where(big, omega * 0.0, omega)
        mean[:, k] = mean[:, k] * (1 - mu) + v * mu
        if sweeps > ns:
            c[:, k] += n * dw_c
        if s == ns:
            in_chop[k], switched[k] = not in_chop[k], True
        if k == cols - 1:
            sweeps += 1
        k = (k + 1) % cols
    return a, c, h, mean, past


def test_agad_follows_its_recursion():
    rows, cols, lr, fast_lr = 3, 2, 0.05, 0.01
    dev_a = ac.ConstantStepDevice(dw_min=1e-3, **QUIET)
    dev_c = ac.ConstantStepDevice(dw_min=2e-3, **QUIET)
    cell = ac.DynamicTransferCompound(
        unit_cell_devices=[dev_a, dev_c], in_chop_prob=0.5, tail_weightening=1.0,
        fast_lr=fast_lr, transfer_every=1.0, transfer_forward=ac.IOParameters(is_perfect=True))
    rc = ac.UnitCellRPUConfig(device=cell, update=ac.UpdateParameters(
        pulse_type=ac.PulseType.MEAN_COUNT))
    arr = TrainingTileArray(rows, cols, rc, bias=False)
    arr.sample_devices(1)
    gen = torch.Generator().manual_seed(3)
    x, d = torch.rand(24, cols, generator=gen), torch.randn(24, rows, generator=gen)
    for n in range(0, 24, 4):  # batches of 4 vectors
        arr.update(x[n:n + 4], d[n:n + 4], lr)
    a, c, h, mean, past = _oracle(x, d, lr, fast_lr, 1e-3, 2e-3, 0.5, 1.0, rows, cols)
    assert torch.allclose(arr.tc_weights[0, 0], a, atol=1e-6)
    assert torch.allclose(arr.tc_buffer[0], h, atol=1e-3)
    assert torch.allclose(arr.tc_mean[0], mean, atol=1e-6)
    assert torch.allclose(arr.tc_past[0], past, atol=1e-6)
    assert torch.allclose(arr.tc_weights[1, 0], c, atol=1e-6)
    assert (c != 0).sum() >= 2  # the slow array was written
    assert torch.equal(arr.weight[0], arr.tc_weights[1, 0])
    assert int(arr.tc_tile[0, 0, 0, 1]) == 12  # sweeps


def test_build_config_agad_trains_and_loads_weights_only():
    rc = ac.build_config("agad", ac.SoftBoundsDevice(), construction_seed=2)
    assert type(rc.device) is ac.DynamicTransferCompound
    torch.manual_seed(0)
    model = nn.Sequential(ac.AnalogLinear(4, 2, bias=False, rpu_config=rc))
    arr = next(m for m in model.modules() if isinstance(m, TrainingTileArray))
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    opt = ac.AnalogSGD(model.parameters(), lr=0.1)
    a0 = arr.tc_weights[0].clone()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert not torch.equal(arr.tc_weights[0], a0)
    assert int(arr.tc_vectors) == 24 and bool(arr.tc_mean.abs().sum() > 0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    twin = nn.Sequential(ac.AnalogLinear(4, 2, bias=False, rpu_config=rc))
    twin.load_state_dict(state)
    t_arr = next(m for m in twin.modules() if isinstance(m, TrainingTileArray))
    for name in ("tc_weights", "tc_buffer", "tc_mean", "tc_past", "tc_switched", "tc_in_chop"):
        assert torch.equal(getattr(t_arr, name), getattr(arr, name)), name
