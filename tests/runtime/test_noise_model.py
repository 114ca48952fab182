"""Noise statistics: output noise, weight read noise, PCM programming noise, drift exponent,
drift and 1/f read noise, checked against the formulas written out in ``tests/pcm_formulas.py``,
with tolerances from the sample size.
"""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import TilePlan, kernel_io, ops
from analog_compiler.runtime.programming import ChipSample
from pcm_formulas import (
    assert_mean,
    assert_std,
    drift_mu_sd,
    folded_normal_moments,
    read_sigma,
    sigma_prog,
)

import analog_compiler as ac


def kernel(x, w, io, in_sizes, out_sizes, seed=0):
    y, _ = ops.tile_forward(x, w, None, None, torch.tensor(seed), in_sizes, out_sizes,
                            kernel_io(io), False)
    return y


# ---------------------------------------------------------------------------- periphery noise
CLEAN = {"inp_res": -1.0, "out_res": -1.0, "out_bound": 0.0}  # no quantization, no clipping


@pytest.mark.parametrize(("out_noise", "nm", "scale", "n_in"), [
    (0.06, "NONE", 1.0, 1), (0.2, "ABS_MAX", 3.0, 1), (0.1, "NONE", 1.0, 3)])
def test_output_noise_std(out_noise: float, nm: str, scale: float, n_in: int) -> None:
    gen = torch.Generator().manual_seed(0)
    in_g = 4 * n_in
    w = torch.rand(1, 8, in_g, generator=gen, dtype=torch.float64) - 0.5
    x = torch.rand(4000, in_g, generator=gen, dtype=torch.float64) * 2 - 1
    x[:, 0] = 1.0  # abs max 1 per vector (and per tile)
    x[:, 4 * (n_in - 1)] = 1.0
    x = x * scale
    in_sizes = [4] * n_in
    noisy = kernel(x, w, ac.IOParameters(out_noise=out_noise, noise_management=nm, **CLEAN),
                   in_sizes, [8])
    clean = kernel(x, w, ac.IOParameters(out_noise=0.0, noise_management=nm, **CLEAN),
                   in_sizes, [8])
    torch.testing.assert_close(clean, x @ w[0].T)
    # out_noise is added per tile in tile units: scaled back by alpha, summed over input splits.
    assert_std(noisy - clean, out_noise * scale * math.sqrt(n_in))
    assert_mean(noisy - clean, 0.0, out_noise * scale * math.sqrt(n_in))


def test_output_noise_std_through_layer() -> None:
    torch.manual_seed(0)
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(out_noise=0.1, noise_management="NONE",
                                                       **CLEAN))
    layer = ac.AnalogLinear(6, 10, bias=False, rpu_config=rc)
    x = torch.rand(3000, 6) * 2 - 1
    w, _ = layer.get_weights()
    with torch.no_grad():
        assert_std(layer(x) - x @ w.T, 0.1)


@pytest.mark.parametrize("kind", ["ADDITIVE_CONSTANT", "PCM_READ"])
def test_weight_read_noise_std(kind: str) -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(1, 3, 5, generator=gen, dtype=torch.float64) * 2 - 1
    xv = torch.tensor([0.9, -0.3, 0.5, 0.0, -1.0], dtype=torch.float64)
    x = xv.expand(20000, 5).contiguous()
    io = ac.IOParameters(out_noise=0.0, w_noise=0.05, w_noise_type=kind, noise_management="NONE",
                         **CLEAN)
    diff = kernel(x, w, io, [5], [3]) - xv @ w[0].T
    for row in range(3):
        if kind == "ADDITIVE_CONSTANT":
            std = 0.05 * xv.norm().item()
        else:
            std = 0.05 * math.sqrt(float((w[0, row].abs() * xv**2).sum()))
        assert_std(diff[:, row], std)
        assert_mean(diff[:, row], 0.0, std)


# ---------------------------------------------------------------------------- PCM formulas
def test_model_methods_follow_the_formulas() -> None:
    m = ac.PCMLikeNoiseModel()
    g = torch.tensor([0.0, 1.0, 5.0, 12.5, 25.0], dtype=torch.float64)
    expected = torch.tensor([sigma_prog(v) for v in g.tolist()], dtype=torch.float64)
    torch.testing.assert_close(m.programming_std(g), expected)
    xi = torch.tensor([0.5, -1.0, 2.0, -3.0, 1.0], dtype=torch.float64)
    expected = torch.tensor([max(0.0, v + sigma_prog(v) * e) for v, e in zip(g.tolist(),
                                                                             xi.tolist())])
    torch.testing.assert_close(m.apply_programming_noise(g, xi), expected.double())
    nu = m.drift_exponent(g, xi)
    expected = [abs(drift_mu_sd(v)[0] + drift_mu_sd(v)[1] * e) for v, e in zip(g.tolist(),
                                                                               xi.tolist())]
    torch.testing.assert_close(nu, torch.tensor(expected, dtype=torch.float64))
    gp = torch.tensor([2.0, 20.0], dtype=torch.float64)
    nu2 = torch.tensor([0.05, 0.1], dtype=torch.float64)
    torch.testing.assert_close(m.apply_drift(gp, nu2, 0.0), gp)
    torch.testing.assert_close(m.apply_drift(gp, nu2, 3600.0),
                               gp * ((3600.0 + 20.0) / 20.0) ** (-nu2))
    std = m.read_noise_std(gp, 86400.0)
    torch.testing.assert_close(std, torch.tensor([read_sigma(2.0, 86400.0),
                                                  read_sigma(20.0, 86400.0)], dtype=torch.float64))
    xi2 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    gd = m.apply_drift(gp, nu2, 86400.0)
    torch.testing.assert_close(m.apply_read_noise(gd, gp, 86400.0, xi2),
                               (gd + gd.abs() * std * xi2).clamp_min(0))
    scaled = ac.PCMLikeNoiseModel(prog_noise_scale=2.0, drift_scale=0.5, read_noise_scale=3.0)
    torch.testing.assert_close(scaled.apply_programming_noise(g, xi) - g,
                               2.0 * (m.programming_std(g) * xi))
    torch.testing.assert_close(scaled.drift_exponent(g, xi), 0.5 * m.drift_exponent(g, xi))


def chip_for(levels: list[float], n: int, model: ac.PCMLikeNoiseModel, seed: int = 0):
    """A one-tile chip whose weights are ``n`` copies of each level (max level 1 -> g_max)."""
    w = torch.tensor(levels, dtype=torch.float32).repeat_interleave(n).view(1, 1, -1)
    plan = TilePlan.build(w.shape[2], 1, 0, 0)
    return w, ChipSample(w, plan, model, seed)


def test_chip_programming_noise_and_drift_exponent_statistics() -> None:
    n = 20000
    model = ac.PCMLikeNoiseModel()
    # weight 1.0 -> 25 uS (sets the scale), 0.4 -> 10 uS, 0.05 -> 1.25 uS
    _, chip = chip_for([1.0, 0.4, 0.05], n, model)
    g_plus = chip.g_prog[0].flatten()
    assert chip.scale.flatten()[0].item() == pytest.approx(25.0)
    for k, g in enumerate([25.0, 10.0, 1.25]):
        block = g_plus[k * n:(k + 1) * n]
        if g >= 10.0:  # far from the clamp at 0: plain Gaussian
            assert_mean(block, g, sigma_prog(g))
            assert_std(block, sigma_prog(g))
        mean_nu, std_nu = folded_normal_moments(*drift_mu_sd(g))
        nu = chip.nu[0].flatten()[k * n:(k + 1) * n]
        assert_mean(nu, mean_nu, std_nu)
        assert_std(nu, std_nu)
    # the unused device of the pair (target 0 uS) is programmed with noise, clamped at 0
    g_minus = chip.g_prog[1].flatten()
    assert bool((g_minus >= 0).all()) and 0.4 < float((g_minus > 0).float().mean()) < 0.6
    # programmed weights are (G+ - G-) / scale
    torch.testing.assert_close(chip.programmed(), (chip.g_prog[0] - chip.g_prog[1]) / chip.scale)


def test_chip_drift_and_read_noise_statistics() -> None:
    n, t = 20000, 86400.0
    model = ac.PCMLikeNoiseModel(prog_noise_scale=0.0)  # G- stays exactly 0
    w, chip = chip_for([1.0, 0.4], n, model)
    assert torch.equal(chip.programmed(), w)
    read = chip.at(t, torch.Generator().manual_seed(2)) * chip.scale  # G+ at t (uS)
    g_target = torch.tensor([25.0, 10.0]).repeat_interleave(n)
    g_drift = g_target * ((t + 20.0) / 20.0) ** (-chip.nu[0].flatten())
    for k, g in enumerate([25.0, 10.0]):
        sl = slice(k * n, (k + 1) * n)
        z = (read.flatten()[sl] - g_drift[sl]) / (g_drift[sl] * read_sigma(g, t))
        assert_mean(z, 0.0, 1.0)
        assert_std(z, 1.0)
    # drift shrinks the conductance by the expected mean factor
    mean_nu, _ = folded_normal_moments(*drift_mu_sd(10.0))
    ratio = (g_drift[n:] / 10.0).mean().item()
    assert ratio == pytest.approx(((t + 20.0) / 20.0) ** (-mean_nu), rel=0.01)


def test_chip_is_defined_by_weights_and_seed() -> None:
    model = ac.PCMLikeNoiseModel()
    _, a = chip_for([1.0, -0.3], 50, model, seed=4)
    _, b = chip_for([1.0, -0.3], 50, model, seed=4)
    _, c = chip_for([1.0, -0.3], 50, model, seed=5)
    assert torch.equal(a.programmed(), b.programmed())
    assert torch.equal(a.nu[0], b.nu[0])
    assert not torch.equal(a.programmed(), c.programmed())
    # read noise is fresh per read; drift alone (no read noise) is deterministic
    r1, r2 = a.at(3600.0), a.at(3600.0)
    assert not torch.equal(r1, r2)
    quiet = ac.PCMLikeNoiseModel(read_noise_scale=0.0)
    _, d = chip_for([1.0, -0.3], 50, quiet, seed=4)
    assert torch.equal(d.at(3600.0), d.at(3600.0))
    assert torch.equal(d.at(0.0), d.programmed())


def test_per_tile_conductance_scale() -> None:
    """Each tile maps its own max|W| to g_max."""
    w = torch.ones(1, 2, 4)
    w[:, :, 2:] = 0.25  # second input split has a smaller max
    plan = TilePlan.build(4, 2, 2, 0)
    chip = ChipSample(w, plan, ac.PCMLikeNoiseModel(prog_noise_scale=0.0), 0)
    torch.testing.assert_close(chip.scale[0, 0], torch.tensor([25.0, 25.0, 100.0, 100.0]))
    torch.testing.assert_close(chip.g_prog[0], torch.full((1, 2, 4), 25.0))
