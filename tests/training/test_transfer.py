"""Transfer compounds (Tiki-Taka, c-TTv2) against closed-form formulas, sized by the sample."""

import io
import math

import pytest
import torch
from analog_compiler.runtime import TrainingTileArray, ops, transfer, unit_cell
from torch import nn

import analog_compiler as ac

QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=10.0, w_min=-10.0)
MEAN = ac.UpdateParameters(pulse_type=ac.PulseType.MEAN_COUNT)


def _reference_transfer_update(arr, x, d, lr, seed):
    """``ops.transfer_update`` through the reference kernel (not the registered one)."""
    calls = {}

    def capture(*args):
        calls["args"] = args

    real = torch.ops.analog.transfer_update
    try:
        torch.ops.analog.transfer_update = capture  # type: ignore[misc]
        ops.transfer_update(arr, x, d, lr, seed)
    finally:
        torch.ops.analog.transfer_update = real  # type: ignore[misc]
    with torch.no_grad():
        transfer.transfer_update_reference(*calls["args"])


@pytest.fixture(params=["registered", "reference"])
def kernel(request, monkeypatch):
    """c-TTv2 tests run on the registered kernel (C++ when built) and on the reference."""
    if request.param == "reference":
        monkeypatch.setattr(unit_cell, "transfer_update", _reference_transfer_update)
    return request.param


def _array(rc, out=4, inp=3, seed=1):
    arr = TrainingTileArray(out, inp, rc, bias=False)
    arr.sample_devices(seed)
    return arr


def _perfect(rc):
    rc.forward.is_perfect = True
    rc.backward.is_perfect = True
    return rc


# ------------------------------------------------------------------------------------- configs
def test_defaults_are_aihwkits():
    tc = ac.TransferCompound()
    assert (tc.gamma, tc.transfer_every, tc.units_in_mbatch, tc.n_reads_per_transfer) == \
        (0.0, 1.0, True, 1)
    assert (tc.fast_lr, tc.transfer_lr, tc.scale_transfer_lr, tc.scale_fast_lr) == \
        (1.0, 1.0, True, True)
    assert tc.transfer_update.desired_bl == 31 and tc.fully_hidden
    ct = ac.ChoppedTransferCompound()
    assert (ct.in_chop_prob, ct.in_chop_random, ct.out_chop_prob) == (0.1, True, 0.0)
    assert (ct.buffer_granularity, ct.auto_granularity, ct.step, ct.momentum) == \
        (1.0, 0.0, 1.0, 0.0)
    assert (ct.forget_buffer, ct.no_buffer, ct.units_in_mbatch, ct.auto_scale) == \
        (True, False, False, False)
    assert (ct.auto_momentum, ct.scale_fast_lr, ct.fast_lr) == (0.99, False, 1.0)
    tu = ct.transfer_update
    assert (tu.desired_bl, tu.update_bl_management, tu.update_management) == (1, False, False)
    dt = ac.DynamicTransferCompound()
    assert (dt.in_chop_random, dt.tail_weightening, dt.buffer_cap) == (False, 5.0, 0.0)
    os = ac.OneSidedUnitCell()
    assert (os.refresh_every, os.refresh_upper_thres, os.refresh_lower_thres) == (0, 0.75, 0.25)


@pytest.mark.parametrize("algorithm", ["sgd", "mp", "tiki-taka", "ttv1", "ttv2", "c-ttv2",
                                       "chopped-ttv2", "agad"])
def test_build_config_round_trips(algorithm):
    rc = ac.build_config(algorithm, ac.ReRamSBPresetDevice())
    assert type(rc).from_json(rc.to_json()) == rc
    expected = {"sgd": ac.SingleRPUConfig, "mp": ac.DigitalRankUpdateRPUConfig}
    assert isinstance(rc, expected.get(algorithm, ac.UnitCellRPUConfig))


def test_build_config_settings():
    rc = ac.build_config("c-ttv2", ac.SoftBoundsDevice)
    dev = rc.device
    assert type(dev) is ac.ChoppedTransferCompound
    assert (dev.fast_lr, dev.auto_scale, dev.units_in_mbatch, dev.in_chop_prob) == \
        (0.1, True, False, 0.1)
    assert rc.update.desired_bl == 5
    assert dev.transfer_forward.noise_management is ac.NoiseManagementType.NONE
    assert dev.transfer_forward.bound_management is ac.BoundManagementType.NONE
    assert ac.build_config("ttv2", ac.SoftBoundsDevice).device.in_chop_prob == 0.0
    tt = ac.build_config("tiki-taka", ac.ConstantStepDevice(dw_min=0.01), construction_seed=3)
    assert type(tt.device) is ac.TransferCompound and tt.device.construction_seed == 3
    assert all(d.dw_min == 0.01 for d in tt.device.unit_cell_devices)
    with pytest.raises(ValueError, match="unknown algorithm"):
        ac.build_config("adam", ac.SoftBoundsDevice)


def test_presets_have_the_published_numbers():
    sb = ac.ReRamSBPresetDevice()
    assert (sb.dw_min, sb.w_max, sb.w_min, sb.dw_min_std, sb.mult_noise) == \
        (0.002, 1.25, -0.75, 3.75, False)
    assert sb.w_max_dtod == pytest.approx(0.24) and sb.w_min_dtod == pytest.approx(0.4)
    ec = ac.EcRamPresetDevice()
    assert (ec.dw_min, ec.gamma_up, ec.gamma_down, ec.w_max) == (0.002, 0.1153, 0.5085, 1.1724)
    assert (ac.IdealizedPresetDevice().dw_min, ac.GokmenVlasovPresetDevice().dw_min) == \
        (0.0002, 0.0016)
    pcm = ac.PCMPresetDevice()
    assert (pcm.A_up, pcm.A_down, pcm.w_min, pcm.w_max) == (-27.235, -2.235, 0.0, 2.0)
    assert ac.CapacitorPresetDevice().lifetime == 0.0  # leakage is not modelled


def test_presets_drive_every_algorithm():
    """Presets are subclasses of the device models: every kernel takes them."""
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    for algorithm in ("sgd", "mp", "ttv1", "c-ttv2"):
        model = _model(ac.build_config(algorithm, ac.ReRamSBPresetDevice(), construction_seed=1))
        w0 = model[0].analog_module.weight.detach().clone()
        opt = ac.AnalogSGD(model.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        assert not torch.equal(model[0].analog_module.weight, w0), algorithm


def test_validation_names_the_field():
    with pytest.raises(ValueError, match="TransferCompound.unit_cell_devices"):
        ac.TransferCompound(unit_cell_devices=[ac.ConstantStepDevice()] * 3)
    with pytest.raises(ValueError, match="ChoppedTransferCompound.in_chop_prob"):
        ac.ChoppedTransferCompound(in_chop_prob=1.5)
    with pytest.raises(ValueError, match="n_reads_per_transfer=1"):
        ac.ChoppedTransferCompound(n_reads_per_transfer=2)
    with pytest.raises(ValueError, match="with_reset_prob"):
        ac.TransferCompound(with_reset_prob=0.5)
    with pytest.raises(TypeError, match="UnitCellRPUConfig.device"):
        ac.UnitCellRPUConfig(device=ac.ConstantStepDevice())


# ---------------------------------------------------------------------------------- Tiki-Taka
@pytest.mark.parametrize("max_in", [0, 2])
def test_tiki_taka_transfers_the_accumulated_gradient(max_in):
    """Constant steps, no noise, mean-count pulses, perfect reads: A accumulates ``-lr d^T x``
    per batch exactly; after batch ``t`` column ``k_t = (t - 1) mod in`` of ``A`` is added to
    ``C`` with ``transfer_lr * lr``: ``C[:, k] = C0[:, k] + lr_t * G[:, k] * sum(t: k_t = k)``."""
    dev = ac.ConstantStepDevice(dw_min=1e-3, **QUIET)
    tc = ac.TransferCompound(unit_cell_devices=[dev, dev], transfer_update=MEAN,
                             transfer_lr=50.0, transfer_forward=ac.IOParameters(is_perfect=True))
    rc = _perfect(ac.UnitCellRPUConfig(device=tc, update=MEAN))
    if max_in:  # two input splits (columns [0, 1] and [2]): each tile cycles its own columns
        rc.mapping.max_input_size = max_in
    arr = _array(rc, 5, 3)
    splits = [(0, 2), (2, 1)] if max_in else [(0, 3)]
    torch.manual_seed(0)
    w0 = torch.randn(1, 5, 3) * 0.1
    arr.set_logical_weights(w0)
    x, d = torch.randn(4, 3), torch.randn(4, 5)
    lr, steps = 1e-3, 7  # BL management: ceil(lr max|x| max|d| / dw_min) < desired_bl
    grad = -lr * d.T @ x
    for _ in range(steps):
        arr.update(x, d, lr)
    a, c = arr.tc_weights
    # float32 sums of hundreds of (fractional) pulses: a tolerance far below the signal (> 1e-3)
    assert torch.allclose(a[0], steps * grad, atol=2e-5)
    expected = w0[0].clone()
    for t in range(1, steps + 1):
        for c0, size in splits:
            k = c0 + (t - 1) % size
            expected[:, k] += 50.0 * lr * t * grad[:, k]
    assert torch.allclose(c[0], expected, atol=2e-5)
    assert (c[0] - w0[0]).abs().max() > 1e-3
    assert torch.equal(arr.weight, c)  # gamma = 0: the visible weight is C
    assert [int(v) for v in arr.tc_tile[0, :, 0, 0]] == [steps % size for _, size in splits]


def test_tiki_taka_gamma_mixes_the_arrays():
    dev = ac.ConstantStepDevice(dw_min=1e-3, **QUIET)
    tc = ac.TransferCompound(unit_cell_devices=[dev, dev], gamma=0.25, transfer_every=0.0)
    arr = _array(_perfect(ac.UnitCellRPUConfig(device=tc, update=MEAN)), 3, 2)
    arr.update(torch.randn(5, 2), torch.randn(5, 3), 0.01)
    a, c = arr.tc_weights
    assert torch.allclose(arr.weight, 0.25 * a + c)
    assert a.abs().sum() > 0


# ------------------------------------------------------------------------------------- c-TTv2
def _chopped(**kw):
    dev = ac.ConstantStepDevice(dw_min=1e-3, **QUIET)
    base = dict(unit_cell_devices=[dev, dev], transfer_update=ac.UpdateParameters(
        pulse_type=ac.PulseType.MEAN_COUNT, desired_bl=1, update_bl_management=False,
        update_management=False), transfer_forward=ac.IOParameters(is_perfect=True))
    base.update(kw)
    return _perfect(ac.UnitCellRPUConfig(device=ac.ChoppedTransferCompound(**base), update=MEAN))


def test_chopped_buffer_and_write_follow_the_formula(kernel):
    """One vector (``fast_lr``, absolute), then one transfer of column 0:
    ``H = lr_scale * A[:, 0]`` with ``lr_scale = transfer_lr * lr / dw_min``; rows with
    ``|H| >= 1`` get one pulse (``desired_bl = 1``) on ``C`` and ``H *= momentum`` (0)."""
    torch.manual_seed(0)
    arr = _array(_chopped(in_chop_prob=0.0, fast_lr=0.002, transfer_lr=500.0), 64, 8)
    arr.set_logical_weights(torch.zeros(1, 64, 8))
    x, d = torch.rand(1, 8) + 0.5, torch.randn(1, 64)
    lr = 0.002
    arr.update(x, d, lr)
    a, c = arr.tc_weights
    assert torch.allclose(a[0], -0.002 * d.T @ x, atol=1e-6)
    h = a[0, :, 0] * 500.0 * lr / 1e-3
    big = h.abs() >= 1
    assert 0 < int(big.sum()) < 64
    assert torch.allclose(arr.tc_buffer[0, :, 0], torch.where(big, 0.0 * h, h), atol=1e-6)
    assert torch.allclose(c[0, :, 0], torch.where(big, 1e-3 * h.sign(), 0.0 * h), atol=1e-7)
    assert torch.count_nonzero(c[0, :, 1:]) == 0 and int(arr.tc_tile[0, 0, 0, 0]) == 1


def test_chopper_flips_as_specified(kernel):
    """``in_chop_prob = 1``: each column's chopper flips after each of its reads; the fast
    update of a chopped column has the opposite sign."""
    arr = _array(_chopped(in_chop_prob=1.0), 4, 3)
    arr.set_logical_weights(torch.zeros(1, 4, 3))
    x, d = torch.ones(1, 3), torch.ones(1, 4)
    for _n in range(3):
        arr.update(x, d, 1e-3)
    assert arr.tc_in_chop.tolist() == [[[1, 1, 1]]]
    a_before = arr.tc_weights[0].clone()
    arr.update(x, d, 1e-3)  # column 0 chopped: its A entries now grow the other way
    delta = arr.tc_weights[0] - a_before
    assert torch.all(delta[0, :, 0] > 0) and torch.all(delta[0, :, 1:] > 0)
    for _ in range(2):
        arr.update(x, d, 1e-3)
    assert arr.tc_in_chop.tolist() == [[[0, 0, 0]]] and int(arr.tc_tile[0, 0, 0, 1]) == 2


def test_chopper_flip_rate_matches_in_chop_prob(kernel):
    """Random choppers: flips after reads are Bernoulli(in_chop_prob): over 20 sweeps of 256
    columns the flip count is within 5 sigma of its mean."""
    p, sweeps, cols = 0.3, 20, 256
    arr = _array(_chopped(in_chop_prob=p), 2, cols)
    x, d = torch.zeros(sweeps * cols, cols), torch.zeros(sweeps * cols, 2)
    flips = 0
    prev = arr.tc_in_chop.clone()
    for s in range(sweeps):
        arr.update(x[s * cols:(s + 1) * cols], d[s * cols:(s + 1) * cols], 1e-3)
        flips += int((arr.tc_in_chop != prev).sum())  # a column flipped an odd number of times
        prev = arr.tc_in_chop.clone()
    n = sweeps * cols
    assert abs(flips - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_auto_scale_count_lr():
    """``auto_scale``: the fast learning rate is ``fast_lr * desired_bl * dw_min / (m_x m_d)``,
    ``m`` the running maxima (the first vector sets them)."""
    t = transfer.decode_transfer(transfer.encode_transfer(ac.ChoppedTransferCompound(
        auto_scale=True, fast_lr=0.1)))
    m_x = transfer.ema(0.0, 2.0, 4, 0.99)
    m_x = transfer.ema(m_x, 4.0, 4, 0.99)
    assert m_x == pytest.approx(2.0 * (1 - 0.0025) + 4.0 * 0.0025)
    assert transfer.count_lr(t, 0.5, 5, 1e-3, m_x, 0.5) == pytest.approx(
        0.1 * 5 * 1e-3 / (m_x * 0.5))


@pytest.mark.skipif(ac.runtime.backend()["transfer_update"]["cpu"] != "cpp",
                    reason="needs the C++ kernels")
def test_cpp_kernel_equals_reference_when_deterministic():
    """Mean counts, no noise, chopper flips with probability 1: the fused kernel and the
    reference give the same state (several tiles, out choppers, buffer carry-over)."""
    rc = _chopped(in_chop_prob=1.0, out_chop_prob=1.0, auto_scale=True, fast_lr=0.5)
    rc.mapping.max_input_size, rc.mapping.max_output_size = 4, 3
    torch.manual_seed(1)
    a1 = _array(rc, 5, 7)
    a1.set_logical_weights(torch.randn(1, 5, 7) * 0.05)
    a2 = _array(rc, 5, 7)
    a2.load_state_dict(a1.state_dict())
    for _ in range(3):
        x, d = torch.randn(6, 7), torch.randn(6, 5)
        a1.update(x, d, 0.05)
        with torch.no_grad():
            _reference_transfer_update(a2, x, d, 0.05, 0)
            a2.tc_vectors += 6
            unit_cell.reduce(a2)
        a2.update_count += 1
    for name in ("tc_weights", "tc_buffer", "tc_in_chop", "tc_out_chop", "tc_tile"):
        assert torch.allclose(getattr(a1, name).double(), getattr(a2, name).double(),
                              atol=1e-6), name


def test_transfer_update_opcheck():
    arr = _array(ac.build_config("c-ttv2", ac.SoftBoundsDevice()), 5, 4)
    calls = {}
    real = torch.ops.analog.transfer_update
    try:
        torch.ops.analog.transfer_update = lambda *a: calls.setdefault("args", a)
        ops.transfer_update(arr, torch.randn(3, 4), torch.randn(3, 5), 0.05, 3)
    finally:
        torch.ops.analog.transfer_update = real
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else
                 [t.clone() for t in a] if isinstance(a, list) and a and
                 isinstance(a[0], torch.Tensor) else a for a in calls["args"])
    torch.library.opcheck(torch.ops.analog.transfer_update.default, args,
                          test_utils=("test_schema", "test_faketensor"))


# ------------------------------------------------------------------------- layers and training
def _model(rc, seed=0):
    torch.manual_seed(seed)
    return ac.convert(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)), rc)


def _train(model, steps=15, lr=0.1):
    torch.manual_seed(123)
    x = torch.randn(32, 6)
    y = torch.tanh(x @ (0.3 * torch.randn(6, 2)))  # a teacher the model can learn
    opt = ac.AnalogSGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("algorithm", ["ttv1", "c-ttv2"])
def test_seeded_runs_reproduce_and_threads_do_not_matter(algorithm):
    rc = ac.build_config(algorithm, ac.SoftBoundsDevice(dw_min=0.01), construction_seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        m1 = _model(rc)
        _train(m1, 5)
        torch.set_num_threads(2)
        m2 = _model(rc)
        _train(m2, 5)
    finally:
        torch.set_num_threads(threads)
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        if isinstance(v1, torch.Tensor):
            assert torch.equal(v1, v2), k


@pytest.mark.parametrize("algorithm", ["ttv1", "c-ttv2"])
def test_checkpoint_round_trip_weights_only(algorithm):
    rc = ac.build_config(algorithm, ac.SoftBoundsDevice(dw_min=0.01), construction_seed=5)
    model = _model(rc)
    _train(model, 4)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = _model(ac.SingleRPUConfig(), seed=9)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    arr = fresh[0].analog_module
    assert type(arr.rpu_config.device) is type(rc.device)
    for name in ("tc_weights", "tc_buffer", "tc_in_chop", "tc_tile", "tc_vectors",
                 "dev_max_bound"):
        assert torch.equal(getattr(arr, name), getattr(model[0].analog_module, name)), name
    assert _train(fresh, 3) == _train(model, 3)  # the same devices, state and random stream


@pytest.mark.parametrize("algorithm", ["c-ttv2", "agad"])
def test_dtype_casts_keep_the_float64_transfer_counters(algorithm):
    """``model.double()`` then ``model.float()`` keeps ``tc_tile`` float64 and exact (the
    kernels require it), and the cast model trains on as the uncast one does."""
    rc = ac.build_config(algorithm, ac.SoftBoundsDevice(dw_min=0.01), construction_seed=5)
    model, same = _model(rc), _model(rc)
    _train(model, 3)
    _train(same, 3)
    arr = model[0].analog_module
    arr.tc_tile[0, 0, 0, 2] = 1.0 + 2.0 ** -40  # a value float32 cannot hold
    same[0].analog_module.tc_tile.copy_(arr.tc_tile)
    before = arr.tc_tile.clone()
    model.double().float()
    assert arr.tc_tile.dtype == torch.float64 and torch.equal(arr.tc_tile, before)
    assert arr.weight.dtype == torch.float32
    assert _train(model, 2) == _train(same, 2)


def test_analog_sgd_drives_c_ttv2_on_soft_bounds():
    """c-TTv2 on soft-bounds devices lowers an MSE loss (the slow array moves)."""
    rc = ac.build_config("c-ttv2", ac.SoftBoundsDevice(dw_min=0.005), construction_seed=2)
    model = _model(rc)
    c0 = model[0].analog_module.weight.detach().clone()
    losses = _train(model, 40, lr=0.2)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    assert not torch.equal(model[0].analog_module.weight, c0)
