"""The DOREFA, PCM_NOISE and COPY weight modifiers against their formulas (aihwkit 1.2.0's
``weight_modifier.cpp`` and, for PCM_NOISE, ``weight_modifier_cuda.cu``)."""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import TilePlan
from analog_compiler.runtime.modifiers import PCM_PROG_COEFF, PCM_T_READ, modified_weight

import analog_compiler as ac

MT = ac.WeightModifierType
AMAX = 0.8
N = 200_000


def _weights(value: float | None = None, n: int = N) -> tuple[torch.Tensor, TilePlan]:
    """``[1, 1, n]`` weights (uniform in +-AMAX, or +-value with random signs), max|W| = AMAX."""
    torch.manual_seed(0)
    if value is None:
        w = (torch.rand(1, 1, n) * 2 - 1) * AMAX
    else:
        w = value * torch.where(torch.rand(1, 1, n) < 0.5, -1.0, 1.0)
    w[0, 0, 0] = AMAX
    return w, TilePlan.build(n, 1, 0, 0)


def _pcm(**kw) -> ac.WeightModifierParameter:
    return ac.WeightModifierParameter(type=MT.PCM_NOISE, **kw)


def _prog_sigma(a: torch.Tensor | float) -> torch.Tensor | float:
    p0, p1, p2 = PCM_PROG_COEFF
    return p0 + p1 * a + p2 * a * a


# ----------------------------------------------------------------------------- DOREFA
@pytest.mark.parametrize("res", [1 / 16, 16.0])
def test_dorefa(res: float) -> None:
    w, plan = _weights(n=5000)
    m = modified_weight(w, plan, ac.WeightModifierParameter(type=MT.DOREFA, res=res,
                                                              dorefa_clip=0.6))
    scale = 0.6 / math.tanh(AMAX)
    torch.testing.assert_close(m, torch.round(torch.tanh(w) * scale * 16) / 16)
    assert m.abs().max() == pytest.approx(0.6, abs=1 / 32)  # amax maps to dorefa_clip


def test_dorefa_sto_round_unbiased() -> None:
    w, plan = _weights()
    mod = ac.WeightModifierParameter(type=MT.DOREFA, res=0.1, sto_round=True)
    m = modified_weight(w, plan, mod)
    target = torch.tanh(w) * 0.6 / math.tanh(AMAX)
    k = m / 0.1
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert (m - target).abs().max() <= 0.1 + 1e-6
    assert (m - target).mean().abs() < 3 * 0.1 / math.sqrt(12 * N) * 2


# ----------------------------------------------------------------------------- PCM_NOISE
def test_pcm_noise_off_is_identity() -> None:
    """No noise (std_dev 0) and no drift time: the conductances map back to the weights."""
    w, plan = _weights(n=5000)
    torch.testing.assert_close(modified_weight(w, plan, _pcm()), w)


def test_pcm_programming_noise() -> None:
    """With the 1/f factor at zero (``t + t_read = 2 t_read``, i.e. ``t0 = t_read``), the
    noise is the programming noise ``std_dev * poly(|g|/g_max)`` uS."""
    w, plan = _weights()
    w = torch.where(w.abs() < 0.3, torch.full_like(w, 0.5), w)  # far from 0: no sign folding
    m = modified_weight(w, plan, _pcm(std_dev=2.0, g_max=25.0, pcm_t0=PCM_T_READ))
    assert torch.equal(torch.sign(m), torch.sign(w))
    sigma = 2.0 * _prog_sigma(w.abs() / AMAX) * AMAX / 25.0
    z = (m - w) / sigma
    assert z.std().item() == pytest.approx(1.0, rel=0.01)
    assert z.mean().abs() < 0.01


@pytest.mark.parametrize("a", [0.5, 0.9])
def test_pcm_read_noise(a: float) -> None:
    """At ``t = t0`` (no drift): programming noise plus 1/f noise ``|g| * Q_s * sqrt(ln((t0 +
    t_read) / (2 t_read)))``, ``Q_s = min(0.0088 / a^0.65, 0.2)``: their variances add."""
    w, plan = _weights(a * AMAX)
    m = modified_weight(w, plan, _pcm(std_dev=1.0))
    g = a * 25.0
    q_s = min(0.0088 / a ** 0.65, 0.2)
    read = g * q_s * math.sqrt(math.log((20.0 + PCM_T_READ) / (2 * PCM_T_READ)))
    expected = math.hypot(_prog_sigma(a), read)
    d = (m - w)[..., 1:] * 25.0 / AMAX * torch.sign(w[..., 1:])  # in uS, signed like g
    assert d.std().item() == pytest.approx(expected, rel=0.01)
    assert d.mean().abs() < 3 * expected / math.sqrt(N)


@pytest.mark.parametrize("a", [0.5, 0.1])
def test_pcm_drift_variation(a: float) -> None:
    """Only the drift variation (std_dev 0): ``g (t/t0)^-|nu|``, ``nu ~ N(0, sig)``,
    ``sig = clip(-0.0125 ln a - 0.0059, 0.008, 0.045)``: |nu| is half-normal."""
    w, plan = _weights(a * AMAX)
    t0, t = 20.0, 20.0 + 86400.0
    m = modified_weight(w, plan, _pcm(pcm_t_inference=86400.0))
    nu = -torch.log(m[..., 1:] / w[..., 1:]) / math.log(t / t0)
    sig = min(max(-0.0125 * math.log(a) - 0.0059, 0.008), 0.045)
    assert nu.min() >= -1e-6  # drift only shrinks |g|
    assert nu.mean().item() == pytest.approx(sig * math.sqrt(2 / math.pi), rel=0.01)
    assert (nu * nu).mean().sqrt().item() == pytest.approx(sig, rel=0.01)


def test_pcm_zero_threshold_and_faults() -> None:
    w, plan = _weights(n=50_000)
    # not programmed below pcm_zero_thres * std_dev * P0 uS (here 2 * 0.26348 uS)
    m = modified_weight(w, plan, _pcm(pcm_zero_thres=2.0, std_dev=1.0))
    small = (w.abs() * 25.0 / AMAX) <= 2.0 * PCM_PROG_COEFF[0]
    assert 500 < int(small.sum()) < 2000
    assert torch.equal(m[small], torch.zeros_like(m[small]))
    assert bool((m[~small] != 0).all())
    # stuck at reset: exactly 0 with that probability
    m = modified_weight(w, plan, _pcm(pcm_prob_at_reset=0.2))
    assert (m == 0).float().mean().item() == pytest.approx(0.2, abs=0.006)
    # stuck at g_max: the other device of the pair at g_max: g -> |g -+ g_max| (clipped)
    w3, plan3 = _weights(0.3 * AMAX, n=50_000)
    m = modified_weight(w3, plan3, _pcm(pcm_prob_at_gmax=0.3))[..., 1:]
    r = (m.abs() / AMAX)
    assert (r - 1.0).abs().lt(1e-5).float().mean().item() == pytest.approx(0.15, abs=0.006)
    assert (r - 0.7).abs().lt(1e-5).float().mean().item() == pytest.approx(0.15, abs=0.006)
    assert torch.equal(torch.sign(m), torch.sign(w3[..., 1:]))
    # at a random conductance: |w| uniform in [0, amax]
    m = modified_weight(w3, plan3, _pcm(pcm_prob_at_random=0.4))[..., 1:]
    moved = (m.abs() / AMAX - 0.3).abs() > 1e-5
    assert moved.float().mean().item() == pytest.approx(0.4, abs=0.01)
    assert (m.abs()[moved] / AMAX).mean().item() == pytest.approx(0.5, abs=0.01)


# ----------------------------------------------------------------------------- COPY
def test_copy_is_drop_connect_only() -> None:
    assert not ac.WeightModifierParameter(type="copy").enabled
    w, plan = _weights(n=50_000)
    m = modified_weight(w, plan, ac.WeightModifierParameter(type=MT.COPY, pdrop=0.25))
    dropped = m == 0
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.006)
    assert torch.equal(m[~dropped], w[~dropped])
    rc = ac.InferenceRPUConfig(modifier=ac.WeightModifierParameter(type="Copy"))
    from analog_compiler.runtime import hwa

    assert not hwa.active(ac.AnalogLinear(4, 2, rpu_config=rc).analog_module)


def test_every_aihwkit_type_has_a_member() -> None:
    """aihwkit 1.2.0's WeightModifierType names are exactly ours."""
    aihwkit = {"NONE", "DISCRETIZE", "MULT_NORMAL", "ADD_NORMAL", "DISCRETIZE_ADD_NORMAL",
               "DOREFA", "POLY", "PCM_NOISE", "PROG_NOISE", "DROP_CONNECT", "COPY"}
    assert set(MT.__members__) == aihwkit
    for name in aihwkit:
        assert ac.WeightModifierParameter(type=name).type is MT[name]


def test_config_fields() -> None:
    mod = _pcm(std_dev=1.0, pcm_t_inference=3600.0, pcm_prob_at_reset=0.01, dorefa_clip=0.5,
               per_batch_sample=True)
    assert ac.WeightModifierParameter.from_json(mod.to_json()) == mod
    default = ac.WeightModifierParameter()
    assert (default.dorefa_clip, default.pcm_t0, default.per_batch_sample) == (0.6, 20.0, False)
    for field, value in [("pcm_prob_at_gmax", 1.5), ("pcm_t0", 0.0), ("dorefa_clip", -1.0),
                         ("pcm_t_inference", -1.0), ("per_batch_sample", 1)]:
        with pytest.raises(ValueError, match=f"WeightModifierParameter.{field}"):
            ac.WeightModifierParameter(**{field: value})
