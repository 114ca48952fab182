"""``analog::device_chip``: the C++ kernel and the reference kernel, each against the noise
formulas of every model (written out here from aihwkit 1.2.0's source, independently of the
package) and against each other.

The two kernels draw their own random streams (Philox keyed by seed, element and device in C++;
torch generators in the reference), so they are compared through statistics with tolerances from
the sample size; determinism (per seed, across calls, across thread counts) is exact.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from analog_compiler.runtime import _ext, chip_codec, chip_ops
from analog_compiler.runtime.tiling import TilePlan
from chip_determinism import assert_thread_count_and_dtype_independent
from pcm_formulas import Z, assert_mean, assert_std, folded_normal_moments, read_sigma, sigma_prog
from torch import Tensor

import analog_compiler as ac

CPP_ACTIVE = ac.runtime.backend()["device_chip"]["cpu"] == "cpp"
IMPLS = [pytest.param("cpp", marks=pytest.mark.skipif(
    not CPP_ACTIVE, reason=f"C++ kernels not active: {_ext.load_error()}")), "reference"]
T_DAY = 86400.0
N = 20000  # devices per level


def chip(impl: str, w: Tensor, plan: TilePlan, model: ac.NoiseModel, seed: int, t: float,
         read_seed: int | None = None) -> Tensor:
    """The op, or its reference kernel, on the encoding of ``model``."""
    model.check_time(t)
    args = (w, list(plan.in_sizes), list(plan.out_sizes), torch.tensor(seed), float(t),
            read_seed is not None, torch.tensor(read_seed or 0), *chip_codec.encode(model, t))
    fn = torch.ops.analog.device_chip if impl == "cpp" else chip_ops.device_chip_reference
    return fn(*args)


def levels(values: list[float], n: int = N) -> tuple[Tensor, TilePlan]:
    """One tile row of ``n`` copies of each level."""
    w = torch.tensor(values, dtype=torch.float32).repeat_interleave(n).view(1, 1, -1)
    return w, TilePlan.build(w.shape[2], 1, 0, 0)


def block(x: Tensor, k: int, n: int = N) -> Tensor:
    return x.flatten()[k * n:(k + 1) * n].double()


def clamped_moments(g: float, sigma: float) -> tuple[float, float]:
    """Mean and std of max(0, g + sigma xi)."""
    if sigma == 0:
        return max(g, 0.0), 0.0
    a = g / sigma
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    mean = g * cdf + sigma * pdf
    return mean, math.sqrt((g * g + sigma * sigma) * cdf + g * sigma * pdf - mean * mean)


def log_factor(t: float, t_read: float) -> float:
    return math.sqrt(math.log((t + t_read) / (2 * t_read)))


# Programming-noise std (uS) of a target g (uS) per model (defaults, single pair / device).
HERMES_COEFF = (0.16603222, 4.71806468, -8.48101252, 4.68961419)  # 2 devices, g_max 20.7
WAN_SEC = (0.348, 16.030, -43.853, 45.393, -16.815)
WAN_DAY = (0.701, 22.086, -50.773, 47.095, -16.458)


def poly(coeff: tuple[float, ...], x: float) -> float:
    return sum(c * x ** k for k, c in enumerate(coeff))


PAIR_MODELS = {  # model, g_max, programming std of g (uS)
    "state_independent": (ac.StateIndependentNoiseModel(), 25.0, lambda g: 0.2),
    "custom_drift": (ac.CustomDriftPCMLikeNoiseModel(), 25.0, sigma_prog),
    "hermes": (ac.HermesNoiseModel(), 20.7, lambda g: poly(HERMES_COEFF, g / 20.7)),
    "wan2022": (ac.ReRamWan2022NoiseModel(), 25.0, lambda g: poly(WAN_SEC, g / 25.0)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(PAIR_MODELS))
def test_programming_noise_against_conductance(impl: str, name: str) -> None:
    """W_p s = G+_p - G-_p: G+ programmed around the level's conductance, G- (target 0)
    clamped at 0; mean and std of both from the model's programming-noise polynomial."""
    model, g_max, sigma = PAIR_MODELS[name]
    w, plan = levels([1.0, 0.5, 0.2])
    us = chip(impl, w, plan, model, 3, 0.0) * g_max
    m0, s0 = clamped_moments(0.0, sigma(0.0))
    for k, level in enumerate([1.0, 0.5, 0.2]):
        mp, sp = clamped_moments(level * g_max, sigma(level * g_max))
        sd = math.sqrt(sp * sp + s0 * s0)
        assert_mean(block(us, k), mp - m0, sd)
        assert_std(block(us, k), sd)


@pytest.mark.parametrize("impl", IMPLS)
def test_reram_cmo_programming_noise_single_device(impl: str) -> None:
    """One device per weight over [g_min, g_max] = [9, 88.2] uS (the tile's min W maps to
    g_min): G_p = G + (0.00081107 + 0.00106879 G) xi, not clamped."""
    w, plan = levels([-1.0, 1.0, 0.0])
    s = (88.199997 - 9.0) / 2.0
    g = (chip(impl, w, plan, ac.ReRamCMONoiseModel(), 3, 0.0) + 1.0) * s + 9.0
    for k, target in enumerate([9.0, 88.199997, 9.0 + s]):
        sd = 0.00081107 + 0.00106879 * target
        assert_mean(block(g, k), target, sd)
        assert_std(block(g, k), sd)


DRIFT = {  # model, g_max, t_0, (mu, sd) of nu's normal at relative level r
    "state_independent": (ac.StateIndependentNoiseModel(prog_noise_scale=0.0), 25.0, 20.0,
                          lambda r: (0.1, 0.05)),
    # the table g (0, 10, 25) uS, mean (0.08, 0.05, 0.03), std (0.03, 0.02, 0.01)
    "custom_drift": (ac.CustomDriftPCMLikeNoiseModel(prog_noise_scale=0.0), 25.0, 20.0,
                     lambda r: ((0.08 - 0.003 * 25 * r, 0.03 - 0.001 * 25 * r) if r <= 0.4 else
                                (0.05 - 0.02 * (25 * r - 10) / 15, 0.02 - 0.01 * (25 * r - 10)
                                 / 15))),
    "hermes": (ac.HermesNoiseModel(prog_noise_scale=0.0), 20.7, 300.0,
               lambda r: ((min(max(-0.0387 * math.log(r) - 0.0182, 0.072), 0.13) if r < 0.0945
                           else -0.0436 * r * r - 0.0126 * r + 0.0736),
                          (min(max(-0.0117 * math.log(r) - 0.0057, 0.0091), 0.04) if r < 0.3055
                           else -0.0118 * r * r + 0.0093 * r + 0.0073))),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(DRIFT))
def test_drift_exponent_distribution(impl: str, name: str) -> None:
    """Without programming noise G- stays 0 and W_t / W_0 = ((t + t_0) / t_0)^-nu: nu is a
    folded normal with the model's mean and std at the level (both sides of the split points)."""
    model, _, t_0, mu_sd = DRIFT[name]
    rel = [1.0, 0.4, 0.2, 0.05]
    w, plan = levels(rel)
    torch.testing.assert_close(chip(impl, w, plan, model, 3, 0.0), w, rtol=1e-6, atol=0.0)
    span = math.log((T_DAY + t_0) / t_0)
    nu = -torch.log((chip(impl, w, plan, model, 3, T_DAY) / w).double()) / span
    for k, r in enumerate(rel):
        mean, std = folded_normal_moments(*mu_sd(r))
        assert_mean(block(nu, k), mean, std)
        assert_std(block(nu, k), std)
    scaled = dataclasses.replace(model, drift_scale=0.5)
    nu_half = -torch.log((chip(impl, w, plan, scaled, 3, T_DAY) / w).double()) / span
    mean, std = folded_normal_moments(*mu_sd(0.4))
    assert_mean(block(nu_half, 1), 0.5 * mean, 0.5 * std)


READ = {  # model (no programming noise), g_max, relative read std of a device at level r, t
    "state_independent": (ac.StateIndependentNoiseModel(prog_noise_scale=0.0), 25.0,
                          lambda r, t: log_factor(t + 20.0, 250e-9) / 25.0),
    "custom_drift": (ac.CustomDriftPCMLikeNoiseModel(prog_noise_scale=0.0), 25.0,
                     lambda r, t: read_sigma(25.0 * r, t)),
    "hermes": (ac.HermesNoiseModel(prog_noise_scale=0.0), 20.7,
               lambda r, t: (min(max(-0.0117 * math.log(r) - 0.0069, 0.015), 0.04) if r < 0.16
                             else 0.0069 * r ** 3 - 0.0280 * r ** 2 + 0.0211 * r + 0.0123)
               * log_factor(t + 300.0, 512e-9)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(READ))
def test_read_noise_std(impl: str, name: str) -> None:
    """The same chip read with and without read noise: the difference relative to the drifted
    conductance is a normal of the model's relative read std (times read_noise_scale)."""
    model, _, rel_sigma = READ[name]
    w, plan = levels([1.0, 0.5, 0.1])
    drifted = chip(impl, w, plan, model, 3, T_DAY)
    read = chip(impl, w, plan, model, 3, T_DAY, read_seed=8)
    for k, r in enumerate([1.0, 0.5, 0.1]):
        z = (block(read, k) - block(drifted, k)) / (block(drifted, k) * rel_sigma(r, T_DAY))
        assert_mean(z, 0.0, 1.0)
        assert_std(z, 1.0)
    louder = dataclasses.replace(model, read_noise_scale=1.5)  # (rarely clamped at 0)
    z = (block(chip(impl, w, plan, louder, 3, T_DAY, read_seed=8), 0) - block(drifted, 0)) / (
        block(drifted, 0) * rel_sigma(1.0, T_DAY))
    assert_std(z, 1.5)


@pytest.mark.parametrize("impl", IMPLS)
def test_reram_wan2022_reads_around_the_target(impl: str) -> None:
    """A read at 1 day draws max(0, g + sigma_day(g) xi) around the target, whatever the
    programmed state; without read noise it is the target."""
    model = ac.ReRamWan2022NoiseModel()
    w, plan = levels([1.0, 0.5])
    torch.testing.assert_close(chip(impl, w, plan, model, 3, T_DAY), w, rtol=1e-6, atol=0.0)
    us = chip(impl, w, plan, model, 3, T_DAY, read_seed=4) * 25.0
    m0, s0 = clamped_moments(0.0, poly(WAN_DAY, 0.0))
    for k, level in enumerate([1.0, 0.5]):
        mp, sp = clamped_moments(25.0 * level, poly(WAN_DAY, level))
        sd = math.sqrt(sp * sp + s0 * s0)
        assert_mean(block(us, k), mp - m0, sd)
        assert_std(block(us, k), sd)


@pytest.mark.parametrize("impl", IMPLS)
def test_reram_cmo_relaxation_and_read_noise(impl: str) -> None:
    """Relaxation g_p + m ln t + (s0 ln t + s1) xi, and read noise K log10(g) sqrt(log((t +
    t_read) / (2 t_read))) xi, each on its own (scales 0 for the other)."""
    t, s = 3600.0, (88.199997 - 9.0) / 2.0
    w, plan = levels([-1.0, 1.0, 0.0])
    g_mid = 9.0 + s

    def mid(model: ac.ReRamCMONoiseModel, read: int | None) -> Tensor:
        return (block(chip(impl, w, plan, model, 3, t, read), 2) + 1.0) * s + 9.0

    relax = mid(ac.ReRamCMONoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0), 5)
    sd = 0.04201137 * math.log(t) + 0.41183342
    assert_mean(relax, g_mid - 0.08900206 * math.log(t), sd)
    assert_std(relax, sd)
    quiet = ac.ReRamCMONoiseModel(prog_noise_scale=0.0, drift_scale=0.0)
    assert torch.allclose(mid(quiet, None), torch.full((N,), g_mid, dtype=torch.float64),
                          rtol=1e-5)
    read = mid(quiet, 6)
    sd = 0.0277316483 * math.log10(g_mid) * log_factor(t, 1e-6)
    assert_mean(read, g_mid, sd)
    assert_std(read, sd)
    clipped = chip(impl, w, plan, ac.ReRamCMONoiseModel(), 3, t, 7)
    assert float(clipped.max()) <= 1.0 + 1e-6 and float(clipped.min()) >= -1.0 - 1e-6


@pytest.mark.parametrize("impl", IMPLS)
def test_n_pair_programming_noise(impl: str) -> None:
    """NPair (1, 3), g_max 25: a weight of half the tile's max|W| (50 of 100 uS) fills pair 0
    (25 uS) and a third of pair 1's range (25 / 3 uS); the four devices get state-independent
    noise 0.2 uS (the empty ones clamped at 0); W s = (G+_0 - G-_0) + 3 (G+_1 - G-_1)."""
    model = ac.StateIndependentNoiseModel(g_converter=ac.NPairConductanceConverter(f_lst=(1.0,
                                                                                          3.0)))
    w = torch.full((1, 1, N + 1), 0.5)
    w[0, 0, 0] = 1.0
    plan = TilePlan.build(N + 1, 1, 0, 0)
    us = chip(impl, w, plan, model, 3, 0.0).flatten()[1:].double() * 100.0
    m0, s0 = clamped_moments(0.0, 0.2)
    parts = [(1.0, 25.0), (3.0, 25.0 / 3.0)]
    mean = sum(f * (clamped_moments(g, 0.2)[0] - m0) for f, g in parts)
    sd = math.sqrt(sum(f * f * (clamped_moments(g, 0.2)[1] ** 2 + s0 * s0) for f, g in parts))
    assert_mean(us, mean, sd)
    assert_std(us, sd)


CONVERTERS = [ac.SinglePairConductanceConverter(g_min=2.0), ac.DualPairConductanceConverter(),
              ac.NPairConductanceConverter(g_min=1.0), ac.CustomPairConductanceConverter(),
              ac.SingleDeviceConductanceConverter()]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("conv", CONVERTERS, ids=lambda c: type(c).__name__)
def test_noise_off_chip_holds_the_targets(impl: str, conv: ac.ConductanceConverter) -> None:
    """Per-tile conversion and back: with every noise off, tiles of very different magnitude
    keep their weights."""
    model = ac.StateIndependentNoiseModel(prog_noise_scale=0.0, drift_scale=0.0,
                                          read_noise_scale=0.0, g_converter=conv)
    w = torch.randn(2, 70, 100, generator=torch.Generator().manual_seed(1))
    w[:, :48, :64] *= 100.0
    plan = TilePlan.build(100, 70, 64, 48, 2)
    out = chip(impl, w, plan, model, 3, T_DAY, read_seed=2)
    torch.testing.assert_close(out, w, rtol=1e-4, atol=1e-6 * float(w.abs().max()))


def two_sample_close(a: Tensor, b: Tensor) -> None:
    """Means and variances of two samples agree within Z standard errors (the variance's from
    the samples' fourth moments, so heavy tails widen it)."""
    a, b = a.flatten().double(), b.flatten().double()

    def stats(x: Tensor) -> tuple[float, float, float]:
        d = x - x.mean()
        var = float((d * d).mean())
        return float(x.mean()), var, float((d ** 4).mean()) - var * var

    (ma, va, qa), (mb, vb, qb) = stats(a), stats(b)
    assert abs(ma - mb) <= Z * math.sqrt(va / a.numel() + vb / b.numel()), (ma, mb)
    assert abs(va - vb) <= Z * math.sqrt(qa / a.numel() + qb / b.numel()), (va, vb)


CHIP_MODELS = [
    (ac.StateIndependentNoiseModel(), T_DAY), (ac.CustomDriftPCMLikeNoiseModel(), T_DAY),
    (ac.HermesNoiseModel(), T_DAY), (ac.HermesNoiseModel(num_devices=1), T_DAY),
    (ac.ReRamWan2022NoiseModel(), T_DAY), (ac.ReRamCMONoiseModel(), T_DAY),
    (ac.HermesNoiseModel(g_converter=ac.DualPairConductanceConverter()), T_DAY),
    (ac.CustomDriftPCMLikeNoiseModel(g_converter=ac.CustomPairConductanceConverter()), 60.0),
    (ac.StateIndependentNoiseModel(g_converter=ac.SingleDeviceConductanceConverter()), T_DAY),
]


@pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active")
@pytest.mark.parametrize("model,t", CHIP_MODELS, ids=lambda m: type(m).__name__)
def test_cpp_matches_the_reference_statistics(model: ac.NoiseModel, t: float) -> None:
    """Random weights over tiles of different magnitude: the C++ chip's error W_chip - W has the
    reference's mean and variance, programmed, drifted and read; so has its read noise."""
    w = torch.randn(1, 200, 300, generator=torch.Generator().manual_seed(2))
    w[:, :100, :150] *= 4.0
    plan = TilePlan.build(300, 200, 150, 100, 1)
    states = [(0.0, None), (t, 5)]
    if not isinstance(model, ac.ReRamWan2022NoiseModel):  # (read without noise: the targets)
        states.append((t, None))
    for time, read in states:
        errs = [chip(impl, w, plan, model, 7, time, read) - w for impl in ("cpp", "reference")]
        for part in (errs[0][:, :100, :150], errs[0][:, 100:, 150:]):
            assert float(part.abs().mean()) > 1e-4 * float(w.abs().mean())  # noisy everywhere
        two_sample_close(errs[0][:, :100, :150], errs[1][:, :100, :150])
        two_sample_close(errs[0][:, 100:, :], errs[1][:, 100:, :])
    # the read noise alone: the same chip read with and without it
    reads = [chip(impl, w, plan, model, 7, t, 5) - chip(impl, w, plan, model, 7, t)
             for impl in ("cpp", "reference")]
    two_sample_close(reads[0], reads[1])


@pytest.mark.parametrize("impl", IMPLS)
def test_chip_is_defined_by_weights_and_seed(impl: str) -> None:
    w = torch.randn(2, 37, 45) * 0.1
    plan = TilePlan(2, (20, 25), (17, 20))
    model = ac.HermesNoiseModel(g_converter=ac.DualPairConductanceConverter())
    a = chip(impl, w, plan, model, 4, T_DAY)
    assert torch.equal(a, chip(impl, w, plan, model, 4, T_DAY))
    assert not torch.equal(a, chip(impl, w, plan, model, 5, T_DAY))
    r1 = chip(impl, w, plan, model, 4, T_DAY, read_seed=1)
    assert torch.equal(r1, chip(impl, w, plan, model, 4, T_DAY, read_seed=1))
    assert not torch.equal(r1, chip(impl, w, plan, model, 4, T_DAY, read_seed=2))
    p0 = chip(impl, w, plan, model, 4, 0.0)
    torch.testing.assert_close(chip(impl, w, plan, model, 4, 1e-6), p0, rtol=1e-5, atol=1e-6)
    assert p0.dtype == w.dtype and p0.shape == w.shape


@pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active")
@pytest.mark.parametrize("model", [ac.ReRamCMONoiseModel(), ac.CustomDriftPCMLikeNoiseModel(
    g_converter=ac.NPairConductanceConverter())], ids=lambda m: type(m).__name__)
def test_cpp_is_independent_of_the_thread_count_and_layout(model: ac.NoiseModel) -> None:
    assert_thread_count_and_dtype_independent(
        lambda w, plan: chip("cpp", w, plan, model, 9, 3600.0, read_seed=2))


@pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active")
@pytest.mark.parametrize("model", [ac.ReRamCMONoiseModel(), ac.HermesNoiseModel(
    g_converter=ac.DualPairConductanceConverter())], ids=lambda m: type(m).__name__)
def test_cpp_values_depend_on_the_element_alone(model: ac.NoiseModel) -> None:
    """The random blocks (256 consecutive elements) fix each element's numbers: a chip's first
    group is the chip of that group alone (a partial last block either way; tiles cut blocks)."""
    torch.manual_seed(0)
    w = torch.randn(3, 131, 517) * 0.1
    full = chip("cpp", w, TilePlan(3, (256, 261), (64, 67)), model, 9, 3600.0, read_seed=2)
    first = chip("cpp", w[:1], TilePlan(1, (256, 261), (64, 67)), model, 9, 3600.0, read_seed=2)
    assert torch.equal(first, full[:1])


@pytest.mark.parametrize("model", [m for m, _ in CHIP_MODELS], ids=lambda m: type(m).__name__)
def test_decoded_model_makes_the_same_chip(model: ac.NoiseModel) -> None:
    """The encoding loses nothing a read needs: the reference chip of the decoded model equals
    the original model's bit for bit."""
    from analog_compiler.runtime.programming import DeviceChipSample

    w = torch.randn(1, 30, 50)
    plan = TilePlan.build(50, 30, 32, 16, 1)
    t = T_DAY
    kind, params, conv_kind, conv_params = chip_codec.encode(model, t)
    decoded = chip_codec.decode(kind, tuple(params), conv_kind, tuple(conv_params))
    a = DeviceChipSample(w, plan, model, 3).at(t, torch.Generator().manual_seed(1))
    b = DeviceChipSample(w, plan, decoded, 3).at(t, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_encoding_errors_name_the_op() -> None:
    with pytest.raises(ValueError, match="analog::device_chip: no encoding for the noise model"):
        chip_codec.encode(ac.PCMLikeNoiseModel(), 0.0)
    with pytest.raises(ValueError, match="analog::device_chip: model kind 0 parameters too"):
        chip_codec.decode(0, (25.0, 1.0), 0, (0.0, 25.0))
    with pytest.raises(ValueError, match="analog::device_chip: unknown converter kind 9"):
        chip_codec.decode(0, (), 9, (0.0, 25.0))
    if CPP_ACTIVE:
        w = torch.ones(1, 2, 2)
        with pytest.raises(RuntimeError, match="analog::device_chip: model parameters too"):
            torch.ops.analog.device_chip(w, [2], [2], torch.tensor(0), 0.0, False,
                                         torch.tensor(0), 0, [25.0], 0, [0.0, 25.0])


@pytest.mark.parametrize("read", [True, False])
def test_opcheck(read: bool) -> None:
    w = torch.randn(2, 9, 13) * 0.1
    enc = chip_codec.encode(ac.HermesNoiseModel(g_converter=ac.DualPairConductanceConverter()),
                            3600.0)
    args = (w, [6, 7], [4, 5], torch.tensor(3), 3600.0 if read else 0.0, read, torch.tensor(4),
            *enc)
    torch.library.opcheck(torch.ops.analog.device_chip.default, args)
