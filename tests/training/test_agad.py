"""AGAD (``DynamicTransferCompound``) against its recursion, written out per cross-point; the
fused C++ kernel against the reference kernel (exactly where nothing is random, by its noise
statistics otherwise)."""

import io
import math

import pytest
import torch
from analog_compiler.runtime import TrainingTileArray, agad, ops, unit_cell
from torch import nn

import analog_compiler as ac

QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=10.0, w_min=-10.0)


def _agad_args(arr, x, d, lr, seed):
    """The arguments ``ops.agad_update`` passes to ``analog::agad_update``."""
    calls = {}
    real = torch.ops.analog.agad_update
    try:
        torch.ops.analog.agad_update = lambda *a: calls.setdefault("args", a)  # type: ignore
        ops.agad_update(arr, x, d, lr, seed)
    finally:
        torch.ops.analog.agad_update = real  # type: ignore[misc]
    return calls["args"]


def _reference_agad_update(arr, x, d, lr, seed):
    """``ops.agad_update`` through the reference kernel (not the registered one)."""
    with torch.no_grad():
        agad.agad_update_reference(*_agad_args(arr, x, d, lr, seed))


@pytest.fixture(params=["registered", "reference"])
def kernel(request, monkeypatch):
    """AGAD tests run on the registered kernel (C++ when built) and on the reference."""
    if request.param == "reference":
        monkeypatch.setattr(unit_cell, "agad_update", _reference_agad_update)
    return request.param


needs_cpp = pytest.mark.skipif(ac.runtime.backend()["agad_update"]["cpu"] != "cpp",
                               reason="needs the C++ kernels")


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


def test_agad_follows_its_recursion(kernel):
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


def _quiet_rc(**kw):
    """AGAD on noise-free constant-step devices with mean-count pulses (nothing random)."""
    cell = dict(unit_cell_devices=[ac.ConstantStepDevice(dw_min=1e-3, **QUIET),
                                   ac.ConstantStepDevice(dw_min=2e-3, **QUIET)],
                in_chop_prob=0.34, fast_lr=0.02, transfer_every=1.0, forget_buffer=False,
                momentum=0.2, buffer_cap=2.0, experimental_correct_accumulation=True,
                transfer_lr=2.0, transfer_forward=ac.IOParameters(is_perfect=True),
                transfer_update=ac.UpdateParameters(
                    pulse_type=ac.PulseType.MEAN_COUNT, desired_bl=3,
                    update_bl_management=False, update_management=False))
    cell.update(kw)
    return ac.UnitCellRPUConfig(device=ac.DynamicTransferCompound(**cell),
                                update=ac.UpdateParameters(pulse_type=ac.PulseType.MEAN_COUNT))


def _twins(rc, rows, cols):
    a1 = TrainingTileArray(rows, cols, rc, bias=False)
    a1.sample_devices(1)
    a1.set_logical_weights(torch.randn(1, rows, cols) * 0.05)
    a2 = TrainingTileArray(rows, cols, rc, bias=False)
    a2.load_state_dict(a1.state_dict())
    return a1, a2


def _run(arr, batches, lr, reference):
    for n, (x, d) in enumerate(batches):
        if reference:
            with torch.no_grad():
                _reference_agad_update(arr, x, d, lr, n)
                arr.tc_vectors += x.shape[0]
                unit_cell.reduce(arr)
        else:
            arr.update(x, d, lr)


@needs_cpp
@pytest.mark.parametrize("forget", [False, True])
def test_cpp_kernel_equals_reference_when_deterministic(forget):
    """Mean counts, perfect reads, regular choppers: the fused kernel and the reference give
    the same state over several tiles, chopper periods and buffer carry-overs, with the write
    gate (``sweeps > n_s``), ``buffer_cap``, the corrected accumulation and ``auto_scale``."""
    rc = _quiet_rc(forget_buffer=forget, auto_scale=True)
    rc.mapping.max_input_size, rc.mapping.max_output_size = 4, 3
    torch.manual_seed(1)
    a1, a2 = _twins(rc, 5, 7)
    batches = [(torch.randn(6, 7), torch.randn(6, 5)) for _ in range(12)]
    _run(a1, batches, 0.05, False)
    _run(a2, batches, 0.05, True)
    assert int(a1.tc_tile[0, 0, 0, 1]) > 2 * agad.n_samples(0.34)  # the write gate opened
    assert bool((a1.tc_weights[1] != a1.weight.new_tensor(0)).any())
    for name in ("tc_weights", "tc_buffer", "tc_mean", "tc_past", "tc_switched", "tc_in_chop",
                 "tc_tile"):
        assert torch.allclose(getattr(a1, name).double(), getattr(a2, name).double(),
                              atol=1e-5), name


@pytest.mark.parametrize("kind", ["registered", "reference"])
def test_read_noise_enters_the_running_mean_with_its_variance(kind):
    """Gaussian read noise ``out_noise``: the fast array is deterministic (mean counts) and the
    running mean is linear in the reads, so after ``R`` reads per cross-point ``mean_noisy -
    mean_quiet ~ N(0, sigma^2 mu^2 sum_{i<R} (1 - mu)^(2i))``, independently per cross-point:
    over 8192 of them the normalised differences have mean 0 and variance 1 (5 sigma)."""
    rows, cols, n_vec, sigma = 1024, 8, 80, 0.05
    noisy = _quiet_rc(transfer_forward=ac.IOParameters(out_noise=sigma, out_res=-1.0,
                                                       out_bound=0.0, inp_res=-1.0),
                      tail_weightening=1.0)
    quiet = _quiet_rc(tail_weightening=1.0)
    torch.manual_seed(2)
    batches = [(torch.randn(16, cols), torch.randn(16, rows)) for _ in range(n_vec // 16)]
    arrs = []
    for rc in (noisy, quiet):
        arr = TrainingTileArray(rows, cols, rc, bias=False)
        arr.sample_devices(1)
        _run(arr, batches, 0.05, kind == "reference")
        arrs.append(arr)
    assert torch.equal(arrs[0].tc_weights[0], arrs[1].tc_weights[0])
    reads = n_vec // cols
    mu = 1.0 / agad.n_samples(0.34)  # tail_weightening / n_s
    sd = sigma * mu * math.sqrt(sum((1 - mu) ** (2 * i) for i in range(reads)))
    z = ((arrs[0].tc_mean - arrs[1].tc_mean) / sd).flatten().double()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2 / n)


def test_chopper_periods_and_random_flips(kernel):
    """``in_chop_random``: a column's chopper flips at the end of each period of ``n_s`` reads
    and otherwise with probability ``in_chop_prob``: over 40 sweeps of 32 columns (10 period
    ends) the flip count is ``10 * 32 + Binomial(30 * 32, p)`` (5 sigma)."""
    p, sweeps, cols = 0.3, 40, 32
    rc = _quiet_rc(in_chop_prob=p, in_chop_random=True)
    assert agad.n_samples(p) == 4
    arr = TrainingTileArray(2, cols, rc, bias=False)
    arr.sample_devices(1)
    x, d = torch.zeros(cols, cols), torch.zeros(cols, 2)
    flips, prev = 0, arr.tc_in_chop.clone()
    for _ in range(sweeps):
        arr.update(x, d, 1e-3)
        changed = arr.tc_in_chop != prev
        assert torch.equal(arr.tc_switched.bool(), changed)  # flipped at its (one) read
        flips += int(changed.sum())
        prev = arr.tc_in_chop.clone()
    n = (sweeps - 10) * cols
    assert abs(flips - 10 * cols - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_agad_update_opcheck():
    arr = TrainingTileArray(5, 4, ac.build_config("agad", ac.SoftBoundsDevice()), bias=False)
    arr.sample_devices(2)
    args = _agad_args(arr, torch.randn(3, 4), torch.randn(3, 5), 0.05, 3)
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else
                 [t.clone() for t in a] if isinstance(a, list) and a and
                 isinstance(a[0], torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.analog.agad_update.default, args,
                          test_utils=("test_schema", "test_faketensor"))


def _model(rc):
    torch.manual_seed(0)
    return ac.convert(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)), rc)


def test_seeded_runs_reproduce_and_threads_do_not_matter():
    rc = ac.build_config("agad", ac.SoftBoundsDevice(dw_min=0.01), construction_seed=5)
    rc.device.transfer_forward.out_noise = 0.02
    threads = torch.get_num_threads()
    states = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            model = _model(rc)
            torch.manual_seed(123)
            x, y = torch.randn(32, 6), torch.randn(32, 2)
            opt = ac.AnalogSGD(model.parameters(), lr=0.1)
            for _ in range(6):
                opt.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                opt.step()
            states.append(model.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert float(states[0]["0.analog_module.tc_mean"].abs().sum()) > 0
    for (k, v1), v2 in zip(states[0].items(), states[1].values()):
        if isinstance(v1, torch.Tensor):
            assert torch.equal(v1, v2), k
