"""``WeightModifierParameter.per_batch_sample``: a different modified weight per batch sample
(aihwkit's torch tile: one draw per index of the input's leading dimension), run in one op
call with the samples as extra tile groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from analog_compiler.runtime import TilePlan, ops
from analog_compiler.runtime.modifiers import modified_weight
from analog_compiler.runtime.tile_array import new_seed

import analog_compiler as ac

MT = ac.WeightModifierType


def _mod(**kw) -> ac.WeightModifierParameter:
    return ac.WeightModifierParameter(**{"type": MT.ADD_NORMAL, "std_dev": 0.1,
                                         "per_batch_sample": True, **kw})


def _rc(mod, io=None, **mapping) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(forward=io or ac.IOParameters(is_perfect=True), modifier=mod,
                                 mapping=ac.MappingParameter(**mapping))


def _draws(arr, mod, samples: int, seed: int) -> torch.Tensor:
    """The per-sample weights the forward drew after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    new_seed()  # the forward draws the op seed first
    return modified_weight(arr.weight, arr.plan, mod, samples)


def test_modified_weight_draws_independent_samples() -> None:
    torch.manual_seed(0)
    w = torch.rand(1, 300, 300) * 2 - 1
    w[0, 0, 0] = 1.0
    m = modified_weight(w, TilePlan.build(300, 300, 0, 0), _mod(), samples=3)
    assert m.shape == (3, 1, 300, 300)
    d = m - w
    for s in range(3):
        assert d[s].std().item() == pytest.approx(0.1, rel=0.02)
    corr = (d[0] * d[1]).mean() / (d[0].std() * d[1].std())
    assert corr.abs() < 0.01


def test_linear_uses_one_weight_per_sample() -> None:
    mod = _mod()
    torch.manual_seed(1)
    layer = ac.AnalogLinear(12, 5, rpu_config=_rc(mod)).train()
    arr = layer.analog_module
    x = torch.randn(4, 12, requires_grad=True)
    torch.manual_seed(7)
    y = layer(x)
    w = _draws(arr, mod, 4, 7)[:, 0]
    expected = torch.einsum("ni,noi->no", x.detach(), w) + arr.bias.detach()
    torch.testing.assert_close(y, expected)
    gy = torch.randn(4, 5)
    y.backward(gy)
    torch.testing.assert_close(x.grad, torch.einsum("no,noi->ni", gy, w))  # per-sample weights
    torch.testing.assert_close(arr.weight.grad[0], gy.T @ x.detach())  # clean-weight gradient


def test_sequence_shares_its_sample_weights() -> None:
    """``[N, T, in]``: the T rows of sample n use W_n (aihwkit: batch = leading dimension)."""
    mod = _mod(type=MT.MULT_NORMAL, std_dev=0.3)
    torch.manual_seed(2)
    layer = ac.AnalogLinear(6, 3, bias=False, rpu_config=_rc(mod)).train()
    x = torch.randn(3, 5, 6)
    torch.manual_seed(8)
    y = layer(x)
    w = _draws(layer.analog_module, mod, 3, 8)[:, 0]
    torch.testing.assert_close(y, torch.einsum("nti,noi->nto", x, w))


@pytest.mark.parametrize("nm", ["ABS_MAX", "AVERAGE_ABS_MAX"])
def test_periphery_is_per_sample_and_exact(nm: str) -> None:
    """Noise and bound management, DAC, ADC and clipping over several tiles give, per sample,
    exactly the op on that sample's rows with its weights (noise off: deterministic);
    AVERAGE_ABS_MAX averages over each sample's rows."""
    io = ac.IOParameters(out_noise=0.0, w_noise=0.0, inp_res=1 / 62, out_res=1 / 254,
                         out_bound=3.0, noise_management=nm)
    mod = _mod(type=MT.POLY, std_dev=2.0)
    torch.manual_seed(3)
    layer = ac.AnalogLinear(20, 9, rpu_config=_rc(mod, io, max_input_size=8, max_output_size=4,
                                                  weight_scaling_omega=1.0)).train()
    arr = layer.analog_module
    x = torch.randn(3, 4, 20) * 2
    torch.manual_seed(9)
    y = layer(x)
    w = _draws(arr, mod, 3, 9)
    for n in range(3):
        ref, _ = ops.tile_forward(x[n], w[n], arr.output_scales(), arr.bias, torch.tensor(0),
                                  list(arr.plan.in_sizes), list(arr.plan.out_sizes),
                                  arr.kernel_io, False)
        torch.testing.assert_close(y[n], ref)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_uses_one_weight_per_image(dims: int) -> None:
    mod = _mod()
    cls = ac.AnalogConv2d if dims == 2 else ac.AnalogConv3d
    torch.manual_seed(4)
    layer = cls(2, 3, 3, padding=1, rpu_config=_rc(mod)).train()
    shape = (3, 2, 6, 5) if dims == 2 else (3, 2, 4, 4, 3)
    x = torch.randn(*shape)
    torch.manual_seed(10)
    y = layer(x)
    w = _draws(layer.analog_module, mod, 3, 10)[:, 0].reshape(3, 3, 2, *([3] * dims))
    conv = F.conv2d if dims == 2 else F.conv3d
    expected = torch.cat([conv(x[n:n + 1], w[n], layer.analog_module.bias.detach(), padding=1)
                          for n in range(3)])
    torch.testing.assert_close(y, expected)


def test_eval_and_rows_check() -> None:
    mod = _mod()
    layer = ac.AnalogLinear(6, 3, rpu_config=_rc(mod)).eval()
    x = torch.randn(4, 6)
    w, b = layer.get_weights()
    torch.testing.assert_close(layer(x), x @ w.T + b)  # modifier off in eval
    arr = layer.analog_module.train()
    with pytest.raises(ValueError, match="samples=3"):
        arr(x, samples=3)
    assert ac.AnalogLinear(6, 3, rpu_config=_rc(mod)).train()(torch.randn(6)).shape == (3,)


def test_fine_tune_and_checkpoint(tmp_path) -> None:
    """HWA fine-tuning through ``ac.convert`` with a per-sample PCM_NOISE modifier learns, and
    the checkpoint round-trips (configs included)."""
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    mod = ac.WeightModifierParameter(type=MT.PCM_NOISE, std_dev=1.0, per_batch_sample=True)
    rc = ac.StandardHWATrainingPreset(modifier=mod)
    rc.pre_post.input_range.init_from_data = 2
    model = ac.convert(net, rc).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    ac.attach_hwa_hooks(opt, model)
    x = torch.randn(64, 8)
    target = torch.stack([x[:, :4].sum(1), x[:, 4:].sum(1)], 1)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    fresh = ac.convert(net, ac.InferenceRPUConfig())
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert fresh[0].rpu_config.modifier == mod
    model.eval(), fresh.eval()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    torch.testing.assert_close(fresh(x), a)
