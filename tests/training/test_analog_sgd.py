"""Training tiles in layers: analog forward/backward with their own periphery, AnalogSGD,
schedulers, checkpoints, convert with mixed policies."""

import copy
import io

import pytest
import torch
from analog_compiler.runtime import TileArray, TrainingTileArray
from torch import nn

import analog_compiler as ac

PERFECT = ac.IOParameters(is_perfect=True)


def _ideal(**kw):
    return ac.SingleRPUConfig(device=ac.IdealDevice(), forward=PERFECT, backward=PERFECT, **kw)


def test_ideal_layer_step_is_sgd_and_backward_is_transposed_forward():
    torch.manual_seed(0)
    layer = ac.AnalogLinear(5, 4, rpu_config=_ideal())
    assert isinstance(layer.analog_module, TrainingTileArray)
    w0, b0 = layer.get_weights()
    x = torch.randn(3, 5, requires_grad=True)
    g = torch.randn(3, 4)
    opt = ac.AnalogSGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    (layer(x) * g).sum().backward()
    assert layer.analog_module.weight.grad is None  # no digital gradient for the tile
    torch.testing.assert_close(x.grad, g @ w0)
    opt.step()
    w1, b1 = layer.get_weights()
    torch.testing.assert_close(w1, w0 - 0.1 * g.T @ x.detach())
    torch.testing.assert_close(b1, b0 - 0.1 * g.sum(0))
    assert not layer.analog_module.has_pending_update


def test_backward_uses_its_own_io_parameters():
    torch.manual_seed(0)
    noisy = ac.IOParameters(out_noise=0.5)
    x, g = torch.randn(8, 6), torch.randn(8, 5)
    for fwd, bwd, exact_y, exact_gx in ((PERFECT, noisy, True, False),
                                        (noisy, PERFECT, False, True)):
        rc = ac.SingleRPUConfig(device=ac.IdealDevice(), forward=fwd, backward=bwd)
        layer = ac.AnalogLinear(6, 5, bias=False, rpu_config=rc)
        w, _ = layer.get_weights()
        xr = x.clone().requires_grad_(True)
        y = layer(xr)
        (y * g).sum().backward()
        assert torch.allclose(y, x @ w.T, atol=1e-5) is exact_y
        assert torch.allclose(xr.grad, g @ w, atol=1e-5) is exact_gx


def test_lr_scheduler_scales_the_analog_update():
    torch.manual_seed(0)
    layer = ac.AnalogLinear(4, 3, bias=False, rpu_config=_ideal())
    opt = ac.AnalogSGD(layer.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, g = torch.randn(2, 4), torch.randn(2, 3)
    deltas = []
    for _ in range(2):
        w0 = layer.get_weights()[0]
        opt.zero_grad()
        (layer(x) * g).sum().backward()
        opt.step()
        sched.step()
        deltas.append(layer.get_weights()[0] - w0)
    torch.testing.assert_close(deltas[1], 0.5 * deltas[0])


def test_plain_sgd_leaves_training_tiles_alone_and_zero_grad_drops_pending():
    layer = ac.AnalogLinear(4, 3, rpu_config=_ideal())
    w0 = layer.get_weights()[0]
    (layer(torch.randn(2, 4)).sum()).backward()
    torch.optim.SGD(layer.parameters(), lr=1.0).step()
    assert torch.equal(layer.get_weights()[0], w0)
    opt = ac.AnalogSGD(layer.parameters(), lr=1.0)
    assert layer.analog_module.has_pending_update
    opt.zero_grad()
    assert not layer.analog_module.has_pending_update
    opt.step()
    assert torch.equal(layer.get_weights()[0], w0)


def _train(model, steps, seed):
    torch.manual_seed(seed)
    opt = ac.AnalogSGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))


def test_seeded_run_is_reproducible():
    rc = ac.SingleRPUConfig(device=ac.SoftBoundsDevice(dw_min=0.01))
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(11)
        runs.append(_train(ac.convert(_mlp(), rc), 3, seed).state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0] if k.endswith("weight"))
    assert not torch.equal(runs[0]["0.analog_module.weight"], runs[2]["0.analog_module.weight"])


def test_checkpoint_loads_with_weights_only_and_resumes_identically():
    rc = ac.SingleRPUConfig(device=ac.LinearStepDevice(dw_min=0.01, gamma_up=0.5))
    model = _train(ac.convert(_mlp(), rc), 2, 0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = ac.convert(_mlp(), ac.SingleRPUConfig(device=ac.ConstantStepDevice()))
    fresh.load_state_dict(state)
    arr = fresh[0].analog_module
    assert isinstance(arr.rpu_config.device, ac.LinearStepDevice)
    assert arr.rpu_config == rc
    for key in ("dev_scale_up", "dev_shape_up", "dev_max_bound", "device_seed", "update_count"):
        assert torch.equal(getattr(arr, key), getattr(model[0].analog_module, key))
    _train(model, 1, 9)
    _train(fresh, 1, 9)
    assert torch.equal(fresh[0].analog_module.weight, model[0].analog_module.weight)


def test_convert_mixes_training_and_inference_tiles():
    model = ac.convert(_mlp(), ac.InferenceRPUConfig(),
                       policy={"0": ac.SingleRPUConfig(device=ac.ConstantStepDevice(dw_min=0.01))})
    assert type(model[0].analog_module) is TrainingTileArray
    assert type(model[2].analog_module) is TileArray
    before = copy.deepcopy(model.state_dict())
    _train(model, 2, 0)
    for key in ("0.analog_module.weight", "2.analog_module.weight"):
        assert not torch.equal(model.state_dict()[key], before[key])


def test_conv2d_ideal_training_step_equals_digital_sgd():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    analog = ac.AnalogConv2d.from_digital(conv, _ideal())
    x, g = torch.randn(2, 2, 5, 5), torch.randn(2, 3, 5, 5)
    for m, opt_cls in ((conv, torch.optim.SGD), (analog, ac.AnalogSGD)):
        opt = opt_cls(m.parameters(), lr=0.01)
        opt.zero_grad()
        (m(x) * g).sum().backward()
        opt.step()
    w, b = analog.get_weights()
    torch.testing.assert_close(w, conv.weight.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, conv.bias.detach(), rtol=1e-4, atol=1e-5)


def test_training_tiles_need_a_single_rpu_config():
    with pytest.raises(TypeError, match="TrainingTileArray: rpu_config must be a SingleRPUConfig"):
        TrainingTileArray(2, 2, ac.InferenceRPUConfig())
    with pytest.raises(TypeError, match="AnalogLinear: rpu_config must be"):
        ac.AnalogLinear(2, 2, rpu_config=ac.ConstantStepDevice())
