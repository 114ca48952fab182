"""Learned input ranges: forward, gradients (aihwkit's rule), decay, init from data, calibration."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac


def _rc(io: ac.IOParameters | None = None, **ir) -> ac.InferenceRPUConfig:
    ir = {"enable": True, "init_from_data": 0, **ir}
    return ac.InferenceRPUConfig(
        forward=io or ac.IOParameters(is_perfect=True),
        mapping=ac.MappingParameter(max_input_size=4),
        pre_post=ac.PrePostProcessingParameter(ac.InputRangeParameter(**ir)))


def _layer(**ir) -> ac.AnalogLinear:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(8, 3, rpu_config=_rc(**ir))
    with torch.no_grad():
        layer.analog_module.input_range.copy_(torch.tensor([[1.0, 2.0]]))
    return layer


def _r_cols(layer) -> torch.Tensor:
    return layer.analog_module.input_range.detach().repeat_interleave(4, dim=1).reshape(1, 8)


def test_parameter_only_when_enabled() -> None:
    plain = ac.AnalogLinear(8, 3, rpu_config=ac.InferenceRPUConfig())
    assert "analog_module.input_range" not in plain.state_dict()
    layer = _layer()
    assert layer.analog_module.input_range.shape == (1, 2)
    assert "analog_module.input_range_update_idx" in layer.state_dict()
    fixed = ac.AnalogLinear(8, 3, rpu_config=_rc(learn_input_range=False))
    assert not fixed.analog_module.input_range.requires_grad


def test_forward_clips_per_split() -> None:
    layer = _layer()
    x = 3 * torch.randn(16, 8)
    w, b = layer.get_weights()
    rc = _r_cols(layer)
    expected = torch.minimum(torch.maximum(x, -rc), rc) @ w.T + b
    for mode in (layer.train(), layer.eval()):
        torch.testing.assert_close(mode(x), expected)


def test_tile_sees_inputs_scaled_into_the_dac() -> None:
    io = ac.IOParameters(noise_management="NONE", bound_management="NONE", out_noise=0.0,
                         inp_res=-1.0, out_res=-1.0, out_bound=0.0)
    torch.manual_seed(0)
    plain = ac.AnalogLinear(8, 3, rpu_config=ac.InferenceRPUConfig(forward=io))
    ranged = ac.AnalogLinear(8, 3, rpu_config=_rc(io=io, init_value=3.0))
    ranged.set_weights(*plain.get_weights())
    x = (torch.rand(64, 8) * 2 - 1) * 2.9  # inside the range, outside inp_bound=1
    w, b = plain.get_weights()
    torch.testing.assert_close(ranged(x), x @ w.T + b)
    assert (plain(x) - (x @ w.T + b)).abs().max() > 0.1  # NM=NONE clips at inp_bound


def _expected_range_grad(x, g_clip, r_cols, r, decay=0.0, min_pct=0.95, relative=True):
    upper, lower = x >= r_cols, x <= -r_cols
    col = (g_clip.clamp(max=0) * upper).sum(0) - (g_clip.clamp(min=0) * lower).sum(0)
    grad = col.view(2, 4).sum(1).view(1, 2)
    if relative:
        grad = grad * r
    inside = (~(upper | lower)).float().view(-1, 2, 4).mean((0, 2)).view(1, 2)
    return grad + decay * r * (inside > min_pct).float()


@pytest.mark.parametrize("relative", [True, False])
def test_range_gradient(relative: bool) -> None:
    layer = _layer(gradient_relative=relative, decay=0.0).train()
    arr = layer.analog_module
    x = (3 * torch.randn(32, 8)).requires_grad_()
    gy = torch.randn(32, 3)
    (layer(x) * gy).sum().backward()
    w, _ = layer.get_weights()
    g_clip = gy @ w
    rc = _r_cols(layer)
    inside = (x.detach().abs() < rc)
    torch.testing.assert_close(x.grad, g_clip * inside)  # straight-through inside only
    expected = _expected_range_grad(x.detach(), g_clip, rc, arr.input_range.detach(),
                                    relative=relative)
    torch.testing.assert_close(arr.input_range.grad, expected)
    assert (arr.input_range.grad != 0).all()


def test_decay_when_nothing_clips() -> None:
    layer = _layer(decay=0.01).train()
    arr = layer.analog_module
    x = 0.5 * (torch.rand(32, 8) * 2 - 1)  # |x| < 1 <= r: nothing clips
    layer(x).sum().backward()
    torch.testing.assert_close(arr.input_range.grad, 0.01 * arr.input_range.detach())
    arr.input_range.grad = None
    layer.eval()(x)  # no decay, no gradient in eval
    assert arr.input_range.grad is None


def test_ranges_learn_with_an_optimizer() -> None:
    layer = _layer(decay=0.0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    ac.attach_hwa_hooks(opt, layer)
    before = layer.analog_module.input_range.detach().clone()
    x = 4 * torch.randn(64, 8)
    target = x @ layer.get_weights()[0].T  # unclipped outputs: the ranges should grow
    for _ in range(5):
        opt.zero_grad()
        ((layer(x) - target) ** 2).mean().backward()
        opt.step()
    after = layer.analog_module.input_range.detach()
    assert (after > before).all()


def test_post_step_keeps_ranges_positive() -> None:
    layer = _layer()
    with torch.no_grad():
        layer.analog_module.input_range.copy_(torch.tensor([[-2.0, 0.0]]))
    ac.post_update_step(layer)
    r = layer.analog_module.input_range.detach()
    assert r[0, 0] == 2.0 and r[0, 1] > 0


def test_init_from_data() -> None:
    layer = _layer(init_from_data=2, init_std_alpha=3.0).train()
    arr = layer.analog_module
    batches = [torch.randn(50, 8) * s for s in (1.0, 2.0, 5.0)]
    for b in batches:
        layer(b)
    stds = [torch.stack([b[:, :4].std(), b[:, 4:].std()]) for b in batches[:2]]
    torch.testing.assert_close(arr.input_range.detach()[0], 3.0 * (stds[0] + stds[1]) / 2)
    assert int(arr.input_range_update_idx) == 2
    layer2 = _layer(init_from_data=5).eval()
    layer2(batches[2])  # eval: no initialisation
    assert int(layer2.analog_module.input_range_update_idx) == 0


def _net(**ir) -> torch.nn.Sequential:
    torch.manual_seed(1)
    rc = _rc(init_from_data=100, **ir)
    return torch.nn.Sequential(ac.AnalogLinear(8, 6, rpu_config=rc), torch.nn.ReLU(),
                               ac.AnalogLinear(6, 2, rpu_config=rc))


@pytest.mark.parametrize("method", ["max", "std", "percentile"])
def test_calibrate_input_ranges(method: str) -> None:
    net = _net().train()
    data = [(torch.randn(40, 8) * 2, None) for _ in range(3)]
    ranges = ac.calibrate_input_ranges(net, data, method=method, percentile=0.9)
    assert net.training  # mode restored
    assert set(ranges) == {"0.analog_module", "2.analog_module"}
    x = torch.cat([d[0] for d in data])
    r0 = net[0].analog_module.input_range.detach()[0]
    if method == "max":
        expected = torch.stack([x[:, :4].abs().max(), x[:, 4:].abs().max()])
    elif method == "std":
        expected = 3.0 * torch.stack([torch.stack([d[0][:, :4].std(), d[0][:, 4:].std()])
                                      for d in data]).mean(0)
    else:
        expected = torch.stack([torch.stack([d[0][:, :4].abs().flatten().quantile(0.9),
                                             d[0][:, 4:].abs().flatten().quantile(0.9)])
                                for d in data]).mean(0)
    torch.testing.assert_close(r0, expected)
    hidden = torch.relu(net[0].eval()(x))  # second layer: from the calibrated first layer
    if method == "max":
        r2 = net[2].analog_module.input_range.detach()[0]
        torch.testing.assert_close(r2, torch.stack([hidden[:, :3].max(), hidden[:, 3:].max()]))
    assert int(net[0].analog_module.input_range_update_idx) == 100
    info = net[0].rpu_config.pre_post.input_range.calibration_info
    assert info is not None and method in info


def test_calibrate_errors() -> None:
    plain = torch.nn.Sequential(ac.AnalogLinear(4, 2))
    with pytest.raises(ValueError, match="input ranges enabled"):
        ac.calibrate_input_ranges(plain, torch.randn(4, 4))
    with pytest.raises(ValueError, match="method"):
        ac.calibrate_input_ranges(_net(), torch.randn(4, 8), method="mse")


def test_checkpoint_round_trip() -> None:
    layer = _layer()
    fresh = ac.AnalogLinear(8, 3)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh.analog_module.input_range, layer.analog_module.input_range)
    x = 3 * torch.randn(8, 8)
    torch.testing.assert_close(fresh.eval()(x), layer.eval()(x))
