"""OneSidedUnitCell (``W = g+ - g-``, potentiation only, refresh) against formulas and the
single-device pulsed update."""

import io

import pytest
import torch
from analog_compiler.runtime import TrainingTileArray, one_sided, ops
from analog_compiler.runtime.update import STATE_KEYS, sample_device_state
from torch import nn

import analog_compiler as ac

QUIET = dict(dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
             w_max=1.0, w_min=-1.0, reset_std=0.0)
MEAN = ac.UpdateParameters(pulse_type=ac.PulseType.MEAN_COUNT)
P, M = one_sided.PLUS, one_sided.MINUS


def _array(cell, update=MEAN, out=4, inp=3, seed=1, max_in=0):
    rc = ac.UnitCellRPUConfig(device=cell, update=update)
    rc.mapping.max_input_size = max_in
    arr = TrainingTileArray(out, inp, rc, bias=False)
    arr.sample_devices(seed)
    return arr


def _cell(**kw):
    return ac.OneSidedUnitCell(unit_cell_devices=[ac.ConstantStepDevice(dw_min=1e-3, **QUIET)],
                               **kw)


def test_set_weights_splits_by_sign():
    arr = _array(_cell())
    w = torch.tensor([[0.3, -0.2, 0.0], [-0.5, 0.1, 0.7], [0.0, 0.0, -0.9], [2.0, -2.0, 0.4]])
    arr.set_logical_weights(w)
    assert torch.equal(arr.tc_weights[P, 0], w.clamp(0, 1))
    assert torch.equal(arr.tc_weights[M, 0], (-w).clamp(0, 1))
    assert torch.equal(arr.weight[0], w.clamp(-1, 1))


def test_up_train_moves_only_g_plus():
    """Mean-count pulses on constant steps: one vector with ``d < 0`` raises ``W`` by
    ``lr |d| x`` on ``g+`` alone; ``d > 0`` lowers it through ``g-`` alone."""
    arr = _array(_cell())
    x = torch.tensor([[0.5, 1.0, 0.25]])
    d = -torch.tensor([[1.0, 0.5, 0.2, 0.8]])
    lr = 0.004  # at most 4 pulses: inside the default desired_bl
    arr.update(x, d, lr)
    assert torch.allclose(arr.tc_weights[P, 0], lr * (-d).T @ x, atol=1e-7)
    assert torch.equal(arr.tc_weights[M], torch.zeros_like(arr.tc_weights[M]))
    gp = arr.tc_weights[P].clone()
    arr.update(x, -d, lr)
    assert torch.equal(arr.tc_weights[P], gp)
    assert torch.allclose(arr.tc_weights[M, 0], lr * (-d).T @ x, atol=1e-7)
    assert torch.allclose(arr.weight, torch.zeros_like(arr.weight), atol=1e-7)


@pytest.mark.parametrize("max_in", [0, 2])
def test_stochastic_pulses_match_the_single_device_update(max_in):
    """Same seed, same pulse trains: on constant steps away from the bounds ``g+`` gains the
    single-device update's increases and ``g-`` its decreases, per cross-point and vector."""
    cell = _cell()
    up = ac.UpdateParameters(desired_bl=10)
    arr = _array(cell, update=up, out=5, inp=4, max_in=max_in)
    gen = torch.Generator().manual_seed(0)
    lr = 0.01
    for step in range(3):
        x, d = torch.randn(1, 4, generator=gen), torch.randn(1, 5, generator=gen)
        seed = (int(arr.device_seed) * 1_000_003 + int(arr.update_count) + 1) % 2**62
        ref = arr.weight.detach().clone()
        state = [s[P].clone() for s in (getattr(arr, "dev_" + k) for k in STATE_KEYS)]
        ops.tile_update(ref, state, x, d, lr, torch.tensor((seed * 7) % 2**62), arr.plan,
                        cell.unit_cell_devices[0], up)
        gp, gm, w0 = arr.tc_weights[P].clone(), arr.tc_weights[M].clone(), arr.weight.clone()
        arr.update(x, d, lr)
        delta = ref - w0
        assert torch.allclose(arr.tc_weights[P] - gp, delta.clamp(min=0), atol=1e-7), step
        assert torch.allclose(arr.tc_weights[M] - gm, (-delta).clamp(min=0), atol=1e-7), step
        assert (delta != 0).sum() > 0


@pytest.mark.parametrize("max_in", [0, 2])
def test_refresh_resets_and_rewrites_the_difference(max_in):
    """``g+ = 0.8 > 0.75 w_max`` and ``g- = 0.3 > 0.25 |w_max|``: both reset to 0, the
    difference 0.5 re-written on ``g+``; the mirror case on ``g-``; cells below a threshold
    stay; ``W`` is kept (to the pulse resolution)."""
    write = ac.UpdateParameters(pulse_type=ac.PulseType.MEAN_COUNT, desired_bl=1000)
    arr = _array(_cell(refresh_every=2, refresh_forward=ac.IOParameters(is_perfect=True),
                       refresh_update=write), max_in=max_in)
    gp = torch.tensor([[0.8, 0.3, 0.8], [0.5, 0.9, 0.1], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2]])
    gm = torch.tensor([[0.3, 0.8, 0.2], [0.1, 0.5, 0.0], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    with torch.no_grad():
        arr.tc_weights[P, 0] = gp
        arr.tc_weights[M, 0] = gm
        one_sided.reduce(arr)
    x, d = torch.ones(1, 3), torch.zeros(1, 4)  # no update pulses
    arr.update(x, d, 0.01)  # vector 1: no refresh yet
    assert torch.equal(arr.tc_weights[P, 0], gp) and int(arr.tc_refreshes) == 0
    arr.update(x, d, 0.01)  # vector 2: refresh (units_in_mbatch: every 2 batches of 1)
    hit = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    want_p = torch.where(hit, (gp - gm).clamp(min=0), gp)
    want_m = torch.where(hit, (gm - gp).clamp(min=0), gm)
    assert int(arr.tc_refreshes) == int(hit.sum())
    assert torch.allclose(arr.tc_weights[P, 0], want_p, atol=1e-6)
    assert torch.allclose(arr.tc_weights[M, 0], want_m, atol=1e-6)
    assert torch.allclose(arr.weight[0], gp - gm, atol=1e-6)


def test_copy_inverted_swaps_the_steps_and_mirrors_the_bounds():
    dev = ac.ConstantStepDevice(up_down=0.2, w_max=0.9, w_min=-0.4)
    arr = _array(ac.OneSidedUnitCell(unit_cell_devices=[dev], copy_inverted=True), seed=5)
    ref = sample_device_state(dev, tuple(arr.weight.shape), 6)
    assert torch.equal(arr.dev_scale_up[P], ref["scale_down"])
    assert torch.equal(arr.dev_scale_down[P], ref["scale_up"])
    assert torch.equal(arr.dev_max_bound[P], -ref["min_bound"])
    assert torch.equal(arr.dev_min_bound[P], -ref["max_bound"])
    own = sample_device_state(dev, tuple(arr.weight.shape), 5)
    assert torch.equal(arr.dev_scale_up[M], own["scale_up"])


def test_exp_step_is_refused():
    rc = ac.UnitCellRPUConfig(device=ac.OneSidedUnitCell(
        unit_cell_devices=[ac.ConstantStepDevice(), ac.ExpStepDevice()]))
    with pytest.raises(NotImplementedError, match=r"unit_cell_devices\[1\]: ExpStepDevice"):
        ac.AnalogLinear(3, 2, rpu_config=rc)


def test_analog_sgd_trains_it_and_the_checkpoint_loads_weights_only():
    """Both devices only ever rise (no refresh, no cycle noise), the loss falls, and the
    state round-trips through ``torch.load(weights_only=True)``."""
    dev = ac.SoftBoundsDevice(dw_min=0.005, dw_min_std=0.0, w_max=1.0, w_min=-1.0)
    rc = ac.UnitCellRPUConfig(device=ac.OneSidedUnitCell(unit_cell_devices=[dev]))
    torch.manual_seed(0)
    model = nn.Sequential(ac.AnalogLinear(6, 2, bias=False, rpu_config=rc))
    arr = next(m for m in model.modules() if isinstance(m, TrainingTileArray))
    x = torch.randn(32, 6)
    y = x @ (0.3 * torch.randn(6, 2))
    opt = ac.AnalogSGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        g = arr.tc_weights.clone()
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert (arr.tc_weights >= g).all()
    assert losses[-1] < 0.5 * losses[0]
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert any(k.endswith("tc_refreshes") for k in state)
    twin = nn.Sequential(ac.AnalogLinear(6, 2, bias=False, rpu_config=rc))
    twin.load_state_dict(state)
    t_arr = next(m for m in twin.modules() if isinstance(m, TrainingTileArray))
    assert torch.equal(t_arr.tc_weights, arr.tc_weights)
    assert torch.equal(t_arr.weight, arr.weight)
    assert torch.equal(t_arr.dev_scale_up, arr.dev_scale_up)
