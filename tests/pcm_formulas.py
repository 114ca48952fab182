"""The PCM noise formulas written out independently of the package (programming noise, drift
exponent, 1/f read noise, aihwkit's PCMLikeNoiseModel defaults), and sample-statistics checks
with tolerances from the sample size: the std of a sample mean is sigma / sqrt(n), that of a
sample std about sigma / sqrt(2 n); every check allows ``Z`` of those."""

from __future__ import annotations

import math

from torch import Tensor

Z = 5.0  # sigmas of the estimator allowed


def assert_std(samples: Tensor, expected: float) -> None:
    n = samples.numel()
    got = samples.double().std().item()
    assert abs(got - expected) <= Z * expected / math.sqrt(2 * n), (got, expected, n)


def assert_mean(samples: Tensor, expected: float, sigma: float) -> None:
    n = samples.numel()
    got = samples.double().mean().item()
    assert abs(got - expected) <= Z * sigma / math.sqrt(n), (got, expected, n)


def sigma_prog(g: float, g_max: float = 25.0) -> float:
    """Std of the programming noise of a device with target conductance ``g``."""
    r = g / g_max
    return (0.26348 + 1.9650 * r - 1.1731 * r * r) * g_max / 25.0


def drift_mu_sd(g: float, g_max: float = 25.0) -> tuple[float, float]:
    """Mean and std of the drift exponent's normal (before the absolute value)."""
    lg = math.log(max(abs(g / g_max), 1e-7))
    return (min(max(-0.0155 * lg + 0.0244, 0.049), 0.1),
            min(max(-0.0125 * lg - 0.0059, 0.008), 0.045))


def folded_normal_moments(mu: float, sd: float) -> tuple[float, float]:
    """Mean and std of |N(mu, sd^2)|."""
    phi = 0.5 * (1 + math.erf(-mu / (sd * math.sqrt(2))))
    mean = sd * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sd * sd)) + mu * (1 - 2 * phi)
    return mean, math.sqrt(mu * mu + sd * sd - mean * mean)


def read_sigma(g_prog: float, t: float, g_max: float = 25.0, t_0: float = 20.0,
               t_read: float = 250e-9) -> float:
    """Relative std of the 1/f read noise of a device programmed to ``g_prog``, read at ``t``."""
    q = min(0.0088 / max((abs(g_prog) / g_max) ** 0.65, 1e-3), 0.2)
    return q * math.sqrt(math.log((t + t_0 + t_read) / (2 * t_read)))
