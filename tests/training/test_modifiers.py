"""Weight modifiers: each one's statistics match its formula; training only; straight-through."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import TilePlan
from analog_compiler.runtime.modifiers import modified_weight
from analog_compiler.runtime.tile_array import new_seed

import analog_compiler as ac

MT = ac.WeightModifierType
PCM = (0.26348, 1.9650, -1.1731)


def _weights(amax: float = 0.8, n: int = 400) -> tuple[torch.Tensor, TilePlan]:
    torch.manual_seed(0)
    w = (torch.rand(1, n, n) * 2 - 1) * amax
    w[0, 0, 0] = amax  # exact max|W|
    return w, TilePlan.build(n, n, 0, 0)


def _mod(**kw) -> ac.WeightModifierParameter:
    return ac.WeightModifierParameter(**kw)


@pytest.mark.parametrize("rel", [True, False])
def test_add_normal(rel: bool) -> None:
    w, plan = _weights()
    amax = 0.8 if rel else 2.0
    d = modified_weight(w, plan, _mod(type=MT.ADD_NORMAL, std_dev=0.05, rel_to_actual_wmax=rel,
                                      assumed_wmax=2.0)) - w
    assert d.mean().abs() < 1e-3
    assert d.std().item() == pytest.approx(0.05 * amax, rel=0.02)


def test_mult_normal() -> None:
    w, plan = _weights()
    d = modified_weight(w, plan, _mod(type=MT.MULT_NORMAL, std_dev=0.1)) - w
    assert (d / w).std().item() == pytest.approx(0.1 * 0.8, rel=0.02)  # w * std_dev * amax * xi


def test_poly() -> None:
    w, plan = _weights()
    c = (0.0105392, 0.0768, -0.046925)
    d = modified_weight(w, plan, _mod(type=MT.POLY, std_dev=2.0)) - w
    a = w.abs() / 0.8
    sigma = 0.8 * 2.0 * (c[0] + c[1] * a + c[2] * a * a)
    assert (d / sigma).std().item() == pytest.approx(1.0, rel=0.02)
    assert (d / sigma).mean().abs() < 0.01


def test_prog_noise() -> None:
    w, plan = _weights()
    w = torch.where(w.abs() < 0.3, torch.full_like(w, 0.5), w)  # keep |w| >> noise: no folding
    mod = _mod(type=MT.PROG_NOISE, std_dev=1.0, coeffs=PCM, g_max=25.0)
    m = modified_weight(w, plan, mod)
    assert torch.equal(torch.sign(m), torch.sign(w))  # sign(w) |w + noise|
    a = w.abs() / 0.8
    sigma = 0.8 * (1.0 / 25.0) * (PCM[0] + PCM[1] * a + PCM[2] * a * a)
    z = (m - w) / sigma
    assert z.std().item() == pytest.approx(1.0, rel=0.02)
    assert z.mean().abs() < 0.01


@pytest.mark.parametrize("res", [8.0, 1 / 8])
def test_discretize(res: float) -> None:
    w, plan = _weights()
    m = modified_weight(w, plan, _mod(type=MT.DISCRETIZE, res=res))
    step = 0.8 / 8
    k = m / step
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert (m - w).abs().max() <= step / 2 + 1e-6
    assert torch.equal(m, 0.8 * torch.round(w / 0.8 * 8) / 8)


def test_discretize_sto_round_unbiased() -> None:
    w, plan = _weights()
    m = modified_weight(w, plan, _mod(type=MT.DISCRETIZE, res=8.0, sto_round=True))
    step = 0.1
    assert (m - w).abs().max() <= step + 1e-6
    assert (m - w).mean().abs() < 1e-3


def test_discretize_add_normal() -> None:
    w, plan = _weights()
    m = modified_weight(w, plan, _mod(type=MT.DISCRETIZE_ADD_NORMAL, res=8.0, std_dev=0.02))
    d = m - 0.8 * torch.round(w / 0.8 * 8) / 8
    assert d.std().item() == pytest.approx(0.02 * 0.8, rel=0.02)


def test_drop_connect() -> None:
    w, plan = _weights()
    m = modified_weight(w, plan, _mod(type=MT.DROP_CONNECT, pdrop=0.3))
    dropped = m == 0
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.005)
    assert torch.equal(m[~dropped], w[~dropped])


def test_amax_is_per_tile() -> None:
    torch.manual_seed(1)
    w = torch.ones(1, 100, 200) * 0.1
    w[:, :, 100:] *= 10  # second input split: max 1.0, first: 0.1
    plan = TilePlan.build(200, 100, 100, 0)
    d = modified_weight(w, plan, _mod(type=MT.ADD_NORMAL, std_dev=0.1)) - w
    assert d[..., :100].std().item() == pytest.approx(0.01, rel=0.05)
    assert d[..., 100:].std().item() == pytest.approx(0.1, rel=0.05)


def _layer(mod: ac.WeightModifierParameter) -> ac.AnalogLinear:
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True), modifier=mod)
    torch.manual_seed(3)
    return ac.AnalogLinear(16, 8, rpu_config=rc)


def test_off_in_eval_and_on_in_training() -> None:
    layer = _layer(_mod(type=MT.ADD_NORMAL, std_dev=0.1))
    x = torch.randn(5, 16)
    w, b = layer.get_weights()
    layer.eval()
    torch.testing.assert_close(layer(x), x @ w.T + b)
    layer.train()
    assert not torch.allclose(layer(x), x @ w.T + b, atol=1e-3)
    assert not torch.allclose(layer(x), layer(x))  # fresh noise at every forward


def test_enable_during_test() -> None:
    layer = _layer(_mod(type=MT.ADD_NORMAL, std_dev=0.1, enable_during_test=True)).eval()
    x = torch.randn(5, 16)
    w, b = layer.get_weights()
    assert not torch.allclose(layer(x), x @ w.T + b, atol=1e-3)


def test_straight_through_gradient() -> None:
    mod = _mod(type=MT.DISCRETIZE_ADD_NORMAL, res=4.0, std_dev=0.1, pdrop=0.2)
    layer = _layer(mod).train()
    arr = layer.analog_module
    x = torch.randn(6, 16, requires_grad=True)
    torch.manual_seed(11)
    y = layer(x)
    torch.manual_seed(11)
    new_seed()  # the forward draws the op seed first
    w_mod = modified_weight(arr.weight, arr.plan, mod)[0]
    torch.testing.assert_close(y, x.detach() @ w_mod.T + arr.bias.detach())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(6, 8) @ w_mod)  # the modified weights
    torch.testing.assert_close(arr.weight.grad[0], torch.ones(8, 6) @ x.detach())  # to clean w
    assert arr.weight.grad[0].abs().min() > 0  # dropped weights are updated too


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="pdrop"):
        _mod(pdrop=1.0)
    with pytest.raises(ValueError, match="WeightModifierParameter.type"):
        _mod(type="GAUSS")
    with pytest.raises(ValueError, match="std_dev"):
        _mod(std_dev=-1.0)
    m = _mod(type="prog_noise", coeffs=[1.0, 2.0])
    assert m.type is MT.PROG_NOISE and m.coeffs == (1.0, 2.0)
    assert ac.WeightModifierParameter.from_json(m.to_json()) == m
