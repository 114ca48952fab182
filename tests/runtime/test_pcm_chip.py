"""``analog::pcm_chip``: the C++ kernel and the reference kernel against the PCM formulas.

Both implementations draw their own random streams (Philox keyed by seed and element in C++,
torch generators in the reference), so they are compared through statistics with tolerances
from the sample size; determinism (per seed, across calls, across thread counts) is exact.
"""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import _ext, chip_ops, ops
from analog_compiler.runtime.tiling import TilePlan
from chip_determinism import assert_thread_count_and_dtype_independent
from pcm_formulas import (
    assert_mean,
    assert_std,
    drift_mu_sd,
    folded_normal_moments,
    read_sigma,
    sigma_prog,
)
from torch import Tensor

import analog_compiler as ac

CPP_ACTIVE = ac.runtime.backend()["pcm_chip"]["cpu"] == "cpp"
IMPLS = [pytest.param("cpp", marks=pytest.mark.skipif(
    not CPP_ACTIVE, reason=f"C++ kernels not active: {_ext.load_error()}")), "reference"]
T_DAY = 86400.0


def chip(impl: str, w: Tensor, plan: TilePlan, model: ac.PCMLikeNoiseModel, seed: int,
         t: float, read_seed: int | None = None) -> Tensor:
    args = (w, list(plan.in_sizes), list(plan.out_sizes), torch.tensor(seed), float(t),
            read_seed is not None, torch.tensor(read_seed or 0))
    fn = torch.ops.analog.pcm_chip if impl == "cpp" else chip_ops.pcm_chip_reference
    return fn(*args, **chip_ops.model_args(model))


def levels(values: list[float], n: int) -> tuple[Tensor, TilePlan]:
    """One tile row of ``n`` copies of each level (level 1.0 sets the scale: 25 uS)."""
    w = torch.tensor(values, dtype=torch.float32).repeat_interleave(n).view(1, 1, -1)
    return w, TilePlan.build(w.shape[2], 1, 0, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_programming_noise_per_level(impl: str) -> None:
    n = 20000
    w, plan = levels([1.0, 0.4, 0.05], n)
    g = chip(impl, w, plan, ac.PCMLikeNoiseModel(), 3, 0.0).flatten() * 25.0  # G+ - G- (uS)
    # G- (target 0) is max(0, sigma_p(0) xi): mean s/sqrt(2 pi), variance s^2 (1/2 - 1/(2 pi))
    s0 = sigma_prog(0.0)
    m0, v0 = s0 / math.sqrt(2 * math.pi), s0 * s0 * (0.5 - 0.5 / math.pi)
    for k, level in enumerate([25.0, 10.0]):
        block = g[k * n:(k + 1) * n]
        sd = math.sqrt(sigma_prog(level) ** 2 + v0)
        assert_mean(block, level - m0, sd)
        assert_std(block, sd)
    # the lowest level is clamped at 0 now and then: E[max(0, X)], X ~ N(mu, s^2)
    mu, s = 1.25, sigma_prog(1.25)
    a = mu / s
    clamped = mu * 0.5 * (1 + math.erf(a / math.sqrt(2))) + s * math.exp(-a * a / 2) / math.sqrt(
        2 * math.pi)
    assert_mean(g[2 * n:], clamped - m0, math.sqrt(s * s + v0))


@pytest.mark.parametrize("impl", IMPLS)
def test_drift_exponent_and_drift_factor(impl: str) -> None:
    n, t = 20000, T_DAY
    w, plan = levels([1.0, 0.4, 0.05], n)
    model = ac.PCMLikeNoiseModel(prog_noise_scale=0.0)  # G+ = target, G- = 0 exactly
    assert torch.equal(chip(impl, w, plan, model, 3, 0.0), w)
    ratio = chip(impl, w, plan, model, 3, t).flatten() / w.flatten()
    nu = -torch.log(ratio.double()) / math.log((t + 20.0) / 20.0)
    for k, level in enumerate([25.0, 10.0, 1.25]):
        mean_nu, std_nu = folded_normal_moments(*drift_mu_sd(level))
        assert_mean(nu[k * n:(k + 1) * n], mean_nu, std_nu)
        assert_std(nu[k * n:(k + 1) * n], std_nu)
    mean_nu, _ = folded_normal_moments(*drift_mu_sd(10.0))
    factor = ratio[n:2 * n].double().mean().item()
    assert factor == pytest.approx(((t + 20.0) / 20.0) ** (-mean_nu), rel=0.01)
    scaled = chip(impl, w, plan, ac.PCMLikeNoiseModel(prog_noise_scale=0.0, drift_scale=0.5), 3,
                  t).flatten() / w.flatten()
    nu_half = -torch.log(scaled.double()) / math.log((t + 20.0) / 20.0)
    assert_mean(nu_half[n:2 * n], 0.5 * mean_nu, 0.5 * folded_normal_moments(
        *drift_mu_sd(10.0))[1])


@pytest.mark.parametrize("impl", IMPLS)
def test_read_noise_std(impl: str) -> None:
    n, t = 20000, T_DAY
    w, plan = levels([1.0, 0.4], n)
    model = ac.PCMLikeNoiseModel(prog_noise_scale=0.0)
    drifted = chip(impl, w, plan, model, 3, t).flatten()  # same chip, no read noise
    read = chip(impl, w, plan, model, 3, t, read_seed=8).flatten()
    for k, level in enumerate([25.0, 10.0]):
        sl = slice(k * n, (k + 1) * n)
        z = (read[sl] - drifted[sl]) / (drifted[sl] * read_sigma(level, t))
        assert_mean(z, 0.0, 1.0)
        assert_std(z, 1.0)
    louder = chip(impl, w, plan, ac.PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=2.0),
                  3, t, read_seed=8).flatten()
    assert_std((louder[:n] - drifted[:n]) / (drifted[:n] * read_sigma(25.0, t)), 2.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_read_normals_are_normal_and_uncorrelated(impl: str) -> None:
    """Without programming noise (G- = 0) the read noise of G+ gives back its normals exactly:
    their distribution (Kolmogorov-Smirnov at the 0.1 % level) and their correlation between
    neighbours, the same lane of the next group of 8, and the same place in the next block of
    256 (each within 4 standard errors)."""
    n, t = 65536, T_DAY
    w = torch.full((1, 1, n), 0.5)
    w[0, 0, 0] = 1.0  # sets the scale: all others at 12.5 uS
    plan = TilePlan.build(n, 1, 0, 0)
    model = ac.PCMLikeNoiseModel(prog_noise_scale=0.0)
    drifted = chip(impl, w, plan, model, 3, t).flatten()[1:].double()
    read = chip(impl, w, plan, model, 3, t, read_seed=11).flatten()[1:].double()
    z = (read - drifted) / (drifted * read_sigma(12.5, t))
    z = (z - z.mean()) / z.std()
    cdf = torch.special.ndtr(z.sort().values)
    k = torch.arange(1, z.numel() + 1, dtype=torch.float64) / z.numel()
    ks = max(float((k - cdf).max()), float((cdf - k + 1.0 / z.numel()).max()))
    assert ks < 1.95 / math.sqrt(z.numel())
    for lag in (1, 8, 256):
        r = float((z[:-lag] * z[lag:]).mean())
        assert abs(r) < 4.0 / math.sqrt(z.numel() - lag), (lag, r)


@pytest.mark.parametrize("impl", IMPLS)
def test_chip_is_defined_by_weights_and_seed(impl: str) -> None:
    w = torch.randn(2, 37, 45) * 0.1
    plan = TilePlan(2, (20, 25), (17, 20))
    model = ac.PCMLikeNoiseModel()
    a = chip(impl, w, plan, model, 4, T_DAY)
    assert torch.equal(a, chip(impl, w, plan, model, 4, T_DAY))  # same chip at every call
    assert not torch.equal(a, chip(impl, w, plan, model, 5, T_DAY))  # new seed, new chip
    r1 = chip(impl, w, plan, model, 4, T_DAY, read_seed=1)
    assert torch.equal(r1, chip(impl, w, plan, model, 4, T_DAY, read_seed=1))
    assert not torch.equal(r1, chip(impl, w, plan, model, 4, T_DAY, read_seed=2))
    # the programmed chip (t = 0) is the drifted one at t -> 0
    p0 = chip(impl, w, plan, model, 4, 0.0)
    torch.testing.assert_close(chip(impl, w, plan, model, 4, 1e-6), p0, rtol=1e-5, atol=1e-6)
    assert p0.dtype == w.dtype and p0.shape == w.shape


@pytest.mark.parametrize("impl", IMPLS)
def test_per_tile_conductance_scale(impl: str) -> None:
    """Each tile maps its own max|W| to g_max: with only drift, a tile of 0.25s drifts as a
    tile of 1s (same conductances, same exponent statistics)."""
    w = torch.ones(1, 2, 4000)
    w[:, :, 2000:] = 0.25
    plan = TilePlan.build(4000, 2, 2000, 0)
    model = ac.PCMLikeNoiseModel(prog_noise_scale=0.0)
    ratio = chip(impl, w, plan, model, 0, T_DAY) / w
    a, b = ratio[..., :2000], ratio[..., 2000:]
    mean_nu, std_nu = folded_normal_moments(*drift_mu_sd(25.0))
    span = math.log((T_DAY + 20.0) / 20.0)
    for part in (a, b):
        assert_mean(-torch.log(part.double()) / span, mean_nu, std_nu)


@pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active")
def test_cpp_is_independent_of_the_thread_count_and_layout() -> None:
    model = ac.PCMLikeNoiseModel()
    assert_thread_count_and_dtype_independent(
        lambda w, plan: chip("cpp", w, plan, model, 9, 3600.0, read_seed=2))


@pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active")
def test_cpp_values_depend_on_the_element_alone() -> None:
    """The random blocks (256 consecutive elements) fix each element's numbers: a chip's first
    group is the chip of that group alone (a partial last block either way; 131 x 517 elements
    and tiles of 64 / 67 rows x 256 / 261 columns cut blocks), and thread counts that chunk the
    blocks differently give the same chip, in float32 and bfloat16."""
    torch.manual_seed(0)
    w = torch.randn(3, 131, 517) * 0.1
    model = ac.PCMLikeNoiseModel()
    threads = torch.get_num_threads()
    try:
        for dtype in (torch.float32, torch.bfloat16):
            wd = w.to(dtype)
            for t, rs in ((0.0, None), (3600.0, 2)):
                torch.set_num_threads(1)
                full = chip("cpp", wd, TilePlan(3, (256, 261), (64, 67)), model, 9, t, rs)
                first = chip("cpp", wd[:1], TilePlan(1, (256, 261), (64, 67)), model, 9, t, rs)
                assert torch.equal(first, full[:1])
                for n in (2, 3):
                    torch.set_num_threads(n)
                    assert torch.equal(
                        chip("cpp", wd, TilePlan(3, (256, 261), (64, 67)), model, 9, t, rs), full)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_tile_and_no_noise(impl: str) -> None:
    w = torch.zeros(1, 4, 6)
    w[0, :, 3:] = torch.tensor([0.5, -1.0, 0.25])
    plan = TilePlan(1, (3, 3), (4,))
    quiet = ac.PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    out = chip(impl, w, plan, quiet, 1, T_DAY, read_seed=3)
    torch.testing.assert_close(out, w, rtol=1e-6, atol=1e-7)
    assert bool(torch.isfinite(chip(impl, w, plan, ac.PCMLikeNoiseModel(), 1, T_DAY, 3)).all())


def test_opcheck() -> None:
    w = torch.randn(2, 9, 13) * 0.1
    args = (w, [6, 7], [4, 5], torch.tensor(3), 3600.0, True, torch.tensor(4))
    kw = chip_ops.model_args(ac.PCMLikeNoiseModel())
    torch.library.opcheck(torch.ops.analog.pcm_chip.default, args, kw)
    torch.library.opcheck(torch.ops.analog.pcm_chip.default,
                          (w, [13], [9], torch.tensor(3), 0.0, False, torch.tensor(0)), kw)


def test_tile_array_routes_through_the_op() -> None:
    from analog_compiler.runtime import TileArray

    rc = ac.InferenceRPUConfig()
    arr = TileArray(20, 30, rc).eval()
    arr.set_logical_weights(torch.randn(1, 20, 30) * 0.1)
    arr.program(seed=5)
    expected = ops.pcm_chip(arr.weight, arr.plan, rc.noise_model, 5, 0.0)
    assert torch.equal(arr.chip_weight, expected)
    arr.drift(T_DAY)
    quiet = ops.pcm_chip(arr.weight, arr.plan, rc.noise_model, 5, T_DAY)
    # read noise only: within a few read sigmas of the drifted chip
    assert float((arr.chip_weight - quiet).abs().max()) < 0.2 * float(quiet.abs().max())
