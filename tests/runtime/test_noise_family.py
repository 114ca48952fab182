"""The noise-model family (aihwkit 1.2.0's inference noise models): each model's programming
noise, drift exponent / relaxation and read noise against its published formulas (written out
here independently, from aihwkit's source), with tolerances sized by the sample; the chips they
make (deterministic per seed, exact with the noise off, per-tile conversion, statistics of the
programmed weights); JSON and checkpoint round trips; errors."""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import chip_codec, ops
from analog_compiler.runtime.tiling import TilePlan
from pcm_formulas import assert_mean, assert_std, folded_normal_moments, read_sigma, sigma_prog
from torch import Tensor

import analog_compiler as ac

N = 200_000


def normals(seed: int, n: int = N) -> Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def const(value: float, n: int = N) -> Tensor:
    return torch.full((n,), value, dtype=torch.float64)


def log_factor(t: float, t_read: float) -> float:
    return math.sqrt(math.log((t + t_read) / (2 * t_read)))


def clamped_normal_moments(g: float, sigma: float) -> tuple[float, float]:
    """Mean and std of max(0, g + sigma xi)."""
    a = g / sigma
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    mean = g * cdf + sigma * pdf
    second = (g * g + sigma * sigma) * cdf + g * sigma * pdf
    return mean, math.sqrt(second - mean * mean)


def check_clamped(samples: Tensor, g: float, sigma: float) -> None:
    mean, std = clamped_normal_moments(g, sigma)
    assert_mean(samples, mean, std)
    assert_std(samples, std)


def check_folded(nu: Tensor, mu: float, sd: float, scale: float = 1.0) -> None:
    mean, std = folded_normal_moments(mu, sd)
    assert_mean(nu, scale * mean, scale * std)
    assert_std(nu, scale * std)


# ----------------------------------------------------------------- StateIndependentNoiseModel
def test_state_independent_formulas() -> None:
    m = ac.StateIndependentNoiseModel()
    assert (m.prog_coeff, m.drift_nu_mean, m.drift_nu_std, m.t_0, m.t_read) == (
        (0.2, 0.0, 0.0), 0.1, 0.05, 20.0, 250e-9)
    for g in (5.0, 20.0):
        assert_std(m.program(const(g), normals(1)), 0.2)  # state independent
    check_folded(m.drift_parameter(const(10.0), normals(2)), 0.1, 0.05)
    m2 = ac.StateIndependentNoiseModel(drift_scale=2.0, prog_coeff=[0.1, 0.4], g_max=20.0)
    check_folded(m2.drift_parameter(const(10.0), normals(3)), 0.1, 0.05, scale=2.0)
    assert_std(m2.program(const(10.0), normals(4)), 0.1 + 0.4 * 0.5)
    t, g_p, nu = 3600.0, 12.0, 0.07
    g_d = g_p * ((t + 20.0) / 20.0) ** -nu
    out = m.read(const(g_p), const(nu), t, None, normals(5))
    assert_mean(out, g_d, 1.0)
    assert_std(out, g_d / 25.0 * log_factor(t + 20.0, 250e-9))


# ----------------------------------------------------------------- CustomDriftPCMLikeNoiseModel
def test_custom_drift_formulas() -> None:
    m = ac.CustomDriftPCMLikeNoiseModel(custom_drift_model=dict(
        g_lst=[0.0, 10.0, 25.0], nu_mean_lst=[0.08, 0.05, 0.03], nu_std_lst=[0.03, 0.02, 0.01]))
    check_folded(m.drift_parameter(const(5.0), normals(1)), 0.065, 0.025)  # interpolated
    check_folded(m.drift_parameter(const(17.5), normals(2)), 0.04, 0.015)
    check_folded(m.drift_parameter(const(30.0), normals(3)), 0.03, 0.01)  # clipped to the table
    for g in (2.0, 12.0, 24.0):
        assert_std(m.program(const(g), normals(4)), sigma_prog(g))  # PCMLikeNoiseModel's
    t, g_p, nu = 86400.0, 8.0, 0.05
    g_d = g_p * ((t + 20.0) / 20.0) ** -nu
    assert_std(m.read(const(g_p), const(nu), t, None, normals(5)), g_d * read_sigma(g_p, t))
    with pytest.raises(ValueError, match="outside the drift model"):
        ac.CustomDriftPCMLikeNoiseModel(
            custom_drift_model=dict(g_lst=[1.0, 25.0], nu_mean_lst=[0.1, 0.1],
                                    nu_std_lst=[0.0, 0.0]))


# ----------------------------------------------------------------- HermesNoiseModel
HERMES = {  # num_devices: g_max, t_0, programming coefficients, mu, sd, Q (from aihwkit 1.2.0)
    2: (20.7, 300.0, (0.16603222, 4.71806468, -8.48101252, 4.68961419)),
    1: (10.35, 200.0, (0.15781817, 2.32443916, -2.16310839, 0.68841818)),
}


def hermes_mu_sd_q(g: float, n_dev: int) -> tuple[float, float, float]:
    lg = math.log(g)
    mu = (min(max(-0.0387 * lg - 0.0182, 0.072), 0.13) if g < 0.0945
          else -0.0436 * g * g - 0.0126 * g + 0.0736)
    if n_dev == 1:
        sd = (min(max(-0.0120 * lg - 0.0023, 0.0124), 0.04) if g < 0.3039
              else -0.0165 * g * g + 0.0116 * g + 0.0104)
        q = (min(max(-0.0078 * lg + 0.0038, 0.0179), 0.04) if g < 0.1591
             else 0.0664 * g ** 3 - 0.1352 * g ** 2 + 0.0768 * g + 0.0088)
    else:
        sd = (min(max(-0.0117 * lg - 0.0057, 0.0091), 0.04) if g < 0.3055
              else -0.0118 * g * g + 0.0093 * g + 0.0073)
        q = (min(max(-0.0117 * lg - 0.0069, 0.015), 0.04) if g < 0.16
             else 0.0069 * g ** 3 - 0.0280 * g ** 2 + 0.0211 * g + 0.0123)
    return mu, sd, q


@pytest.mark.parametrize("n_dev", [1, 2])
def test_hermes_formulas(n_dev: int) -> None:
    m = ac.HermesNoiseModel(num_devices=n_dev)
    g_max, t_0, coeff = HERMES[n_dev]
    assert m.converter().g_max == g_max and m.effective_t_0 == t_0 and m.t_read == 512e-9
    for rel in (0.05, 0.2, 0.5, 0.9):  # both sides of every split point
        g = rel * g_max
        sigma = sum(c * rel ** k for k, c in enumerate(coeff))
        check_clamped(m.program(const(g), normals(1)), g, sigma)  # clamped at 0
        mu, sd, q = hermes_mu_sd_q(rel, n_dev)
        check_folded(m.drift_parameter(const(g), normals(2)), mu, sd)
        t, nu = 3600.0, 0.06
        g_d = g * ((t + t_0) / t_0) ** -nu
        assert_std(m.read(const(g), const(nu), t, None, normals(3)),
                   g_d * q * log_factor(t + t_0, 512e-9))
    with pytest.raises(ValueError, match="HermesNoiseModel.g_max"):
        ac.HermesNoiseModel(num_devices=1, g_max=12.0)
    with pytest.raises(ValueError, match="HermesNoiseModel.num_devices"):
        ac.HermesNoiseModel(num_devices=3)


# ----------------------------------------------------------------- ReRAM
def test_reram_wan2022_formulas() -> None:
    m = ac.ReRamWan2022NoiseModel()
    day = [0.701, 22.086, -50.773, 47.095, -16.458]
    sec = [0.348, 16.030, -43.853, 45.393, -16.815]
    for rel in (0.3, 0.6, 0.9):
        g = 25.0 * rel
        check_clamped(m.program(const(g), normals(1)), g,
                      sum(c * rel ** k for k, c in enumerate(sec)))
        out = m.read(const(0.0), const(g), 86400.0, None, normals(2))  # around the target
        check_clamped(out, g, sum(c * rel ** k for k, c in enumerate(day)))
    with pytest.raises(ValueError, match="times of coeff_dic"):
        m.check_time(100.0)


def test_reram_cmo_formulas() -> None:
    m = ac.ReRamCMONoiseModel()
    assert m.converter() == ac.SingleDeviceConductanceConverter(g_max=88.199997, g_min=9.0)
    assert_std(m.program(const(40.0), normals(1)), 0.00081107 + 0.00106879 * 40.0)  # range 0.2
    t, g = 3600.0, 50.0
    shift = -0.08900206 * math.log(t)
    relax = m.read(const(g), const(g), t, normals(2), None)
    assert_mean(relax, g + shift, 1.0)
    assert_std(relax, 0.04201137 * math.log(t) + 0.41183342)
    read = m.read(const(g), const(g), t, None, normals(3))
    assert_std(read, 0.0277316483 * math.log10(g + shift) * log_factor(t, 1e-6))
    assert float(m.read(const(88.0), const(88.0), t, normals(4), normals(5)).max()) <= 88.199997


# ----------------------------------------------------------------- chips
def custom() -> ac.CustomDriftPCMLikeNoiseModel:
    return ac.CustomDriftPCMLikeNoiseModel()


MODELS = [ac.StateIndependentNoiseModel(), custom(), ac.HermesNoiseModel(),
          ac.HermesNoiseModel(num_devices=1), ac.ReRamWan2022NoiseModel(), ac.ReRamCMONoiseModel(),
          ac.StateIndependentNoiseModel(g_converter=ac.DualPairConductanceConverter()),
          ac.PCMLikeNoiseModel()]
T_READ = {ac.ReRamWan2022NoiseModel: 86400.0}


def chip(model: ac.NoiseModel, w: Tensor, seed: int, t: float, read: int | None) -> Tensor:
    plan = TilePlan.build(w.shape[2], w.shape[1], 64, 48, 1)
    rs = None if read is None else torch.tensor(read)
    return ops.pcm_chip(w, plan, model, seed, t, rs)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_chip_is_a_function_of_targets_and_seeds(model: ac.NoiseModel) -> None:
    w = torch.randn(1, 70, 100, generator=torch.Generator().manual_seed(0))
    t = T_READ.get(type(model), 3600.0)
    a, b = chip(model, w, 5, t, 9), chip(model, w, 5, t, 9)
    assert torch.equal(a, b) and bool(torch.isfinite(a).all())
    assert not torch.equal(a, chip(model, w, 5, t, 10))  # another read
    p = chip(model, w, 5, 0.0, None)  # programmed state
    assert torch.equal(p, chip(model, w, 5, 0.0, None))
    assert not torch.equal(p, chip(model, w, 6, 0.0, None))  # another chip
    if not isinstance(model, ac.ReRamWan2022NoiseModel):  # (its reads redraw around the target)
        assert not torch.equal(a, chip(model, w, 6, t, 9))
    err = (p - w).abs().mean() / w.abs().mean()
    assert 1e-4 < float(err) < 0.3  # noisy, but the weights


@pytest.mark.parametrize("model", [
    ac.StateIndependentNoiseModel(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0,
                                  g_converter=ac.NPairConductanceConverter(g_min=1.0)),
    ac.ReRamCMONoiseModel(prog_noise_scale=0.0),
    ac.HermesNoiseModel(prog_noise_scale=0.0, g_converter=ac.CustomPairConductanceConverter()),
], ids=lambda m: type(m).__name__)
def test_noise_off_chip_holds_the_targets(model: ac.NoiseModel) -> None:
    """Per-tile conversion and back is exact: tiles of very different magnitude keep theirs."""
    w = torch.randn(1, 70, 100, generator=torch.Generator().manual_seed(1))
    w[:, :48, :64] *= 100.0  # one tile much larger than the others
    # (float32: a single device holds W - min W, so the error scales with the largest tile)
    torch.testing.assert_close(chip(model, w, 3, 0.0, None), w, rtol=1e-4,
                               atol=1e-6 * float(w.abs().max()))


def test_chip_statistics_of_programmed_weights() -> None:
    """StateIndependentNoiseModel, single pair, g_max 25: a weight of half a tile's max|W| has
    G+ = 12.5 + 0.2 xi and G- = max(0, 0.2 xi'); W_p = (G+ - G-) / 25 has mean
    0.5 - 0.2 / sqrt(2 pi) / 25 and std 0.2 sqrt(1.5 - 1 / (2 pi)) / 25."""
    w = torch.full((1, 200, 400), 0.5)
    plan = TilePlan.build(400, 200, 64, 48, 1)
    firsts = plan.offsets(plan.in_sizes)
    w[0, :, firsts] = 1.0  # every tile holds a max|W| of 1 (in its first column)
    p = chip(ac.StateIndependentNoiseModel(), w, 11, 0.0, None)[0]
    mask = torch.ones_like(p, dtype=torch.bool)
    mask[:, firsts] = False
    vals = p[mask]
    std = 0.2 * math.sqrt(1.5 - 1 / (2 * math.pi)) / 25.0
    assert_mean(vals, 0.5 - 0.2 / math.sqrt(2 * math.pi) / 25.0, std)
    assert_std(vals, std)


@pytest.mark.parametrize("model", MODELS[:6], ids=lambda m: type(m).__name__)
def test_layer_program_drift_and_checkpoint(model: ac.NoiseModel) -> None:
    rc = ac.InferenceRPUConfig(noise_model=model)
    assert ac.InferenceRPUConfig.from_json(rc.to_json()) == rc
    torch.manual_seed(0)
    layer = ac.AnalogLinear(40, 30, rpu_config=rc).eval()
    x = torch.randn(8, 40)
    ac.program_analog_weights(layer)
    ac.drift_analog_weights(layer, t_inference=T_READ.get(type(model), 86400.0))
    layer.analog_module.rpu_config.forward.out_noise = 0.0
    again = ac.AnalogLinear(40, 30).eval()
    again.load_state_dict(layer.state_dict())
    assert again.analog_module.rpu_config.noise_model == model
    torch.testing.assert_close(again(x), layer(x))


def test_device_chip_opcheck() -> None:
    w = torch.randn(1, 12, 20)
    args = (w, [20], [12], torch.tensor(3), 3600.0, True, torch.tensor(4),
            *chip_codec.encode(ac.HermesNoiseModel(), 3600.0))
    torch.library.opcheck(torch.ops.analog.device_chip.default, args,
                          test_utils=("test_schema", "test_faketensor"))


def test_reading_at_an_unknown_time_names_the_model() -> None:
    layer = ac.AnalogLinear(8, 4, rpu_config=ac.InferenceRPUConfig(
        noise_model=ac.ReRamWan2022NoiseModel())).eval()
    ac.program_analog_weights(layer)
    with pytest.raises(ValueError, match="ReRamWan2022NoiseModel: t_inference must be 0 or one"):
        ac.drift_analog_weights(layer, t_inference=3600.0)
