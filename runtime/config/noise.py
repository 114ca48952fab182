"""PCM-like statistical noise model (aihwkit's PCMLikeNoiseModel) and drift compensation.

The formulas act on conductances in micro-siemens; ``runtime.programming`` maps weights to
conductances (single pair, ``g_min = 0``) and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import ConfigBase, check_number
from .converters import ConductanceConverter, SinglePairConductanceConverter
from .noise_base import NoiseModel


@dataclass
class PCMLikeNoiseModel(NoiseModel):
    """Programming noise, drift and 1/f read noise of phase-change memory (Nandakumar et al.);
    one ``G+``/``G-`` pair per weight (``SinglePairConductanceConverter(g_max)``)."""

    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    """Polynomial of the programming-noise std in ``g/g_max`` (uS at ``g_max = 25``)."""
    g_max: float = 25.0
    """Largest conductance (uS); max|W| of a tile maps to it."""
    t_read: float = 250.0e-9
    """Duration of one read (s), for the 1/f noise integral."""
    t_0: float = 20.0
    """Time of the first read after programming (s); drift is relative to it."""
    prog_noise_scale: float = 1.0
    """Multiplier of the programming noise."""
    read_noise_scale: float = 1.0
    """Multiplier of the read noise."""
    drift_scale: float = 1.0
    """Multiplier of the drift exponent."""

    def __post_init__(self) -> None:
        self.prog_coeff = tuple(float(c) for c in self.prog_coeff)  # type: ignore[assignment]
        if len(self.prog_coeff) != 3:
            raise ValueError("PCMLikeNoiseModel.prog_coeff must have 3 values, "
                             f"got {self.prog_coeff!r}")
        for name in ("g_max", "t_read", "t_0"):
            check_number(self, name, positive=True)
        for name in ("prog_noise_scale", "read_noise_scale", "drift_scale"):
            check_number(self, name, min_value=0.0)

    def programming_std(self, g_target: Tensor) -> Tensor:
        """Std (uS) of the programming noise at target conductance ``g_target``."""
        r = g_target / self.g_max
        c0, c1, c2 = self.prog_coeff
        return (c0 + c1 * r + c2 * r * r) * (self.g_max / 25.0)

    def apply_programming_noise(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """Programmed conductance: ``max(0, g + scale * sigma_p(g) * xi)``."""
        sigma = self.programming_std(g_target)
        return (g_target + self.prog_noise_scale * sigma * xi).clamp_min(0.0)

    def drift_exponent(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """Drift exponent ``nu`` per device, drawn once at programming."""
        g_r = (g_target / self.g_max).abs().clamp_min(1e-7)
        log_g = torch.log(g_r)
        mu = (-0.0155 * log_g + 0.0244).clamp(0.049, 0.1)
        sd = (-0.0125 * log_g - 0.0059).clamp(0.008, 0.045)
        return self.drift_scale * (mu + sd * xi).abs()

    def apply_drift(self, g_prog: Tensor, nu: Tensor, t_inference: float) -> Tensor:
        """Conductance after ``t_inference`` seconds: ``g_p ((t + t_0) / t_0)^-nu``."""
        if t_inference <= 0:
            return g_prog
        return g_prog * torch.exp(-nu * math.log((t_inference + self.t_0) / self.t_0))

    def read_noise_std(self, g_prog: Tensor, t_inference: float) -> Tensor:
        """Relative std of the 1/f read noise accumulated up to ``t_inference``."""
        q = (0.0088 / ((g_prog.abs() / self.g_max) ** 0.65).clamp_min(1e-3)).clamp_max(0.2)
        span = math.log((t_inference + self.t_0 + self.t_read) / (2.0 * self.t_read))
        return q * math.sqrt(span)

    def apply_read_noise(self, g_drift: Tensor, g_prog: Tensor, t_inference: float,
                         xi: Tensor) -> Tensor:
        """``max(0, g_d + |g_d| * scale * sigma_r * xi)``."""
        sigma = self.read_noise_std(g_prog, t_inference)
        return (g_drift + g_drift.abs() * self.read_noise_scale * sigma * xi).clamp_min(0.0)

    # The NoiseModel interface (runtime/config/noise_base.py).
    def converter(self) -> ConductanceConverter:
        """``SinglePairConductanceConverter(g_max)``."""
        return SinglePairConductanceConverter(g_max=self.g_max)

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``apply_programming_noise``."""
        return self.apply_programming_noise(g_target, xi)

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``drift_exponent``."""
        return self.drift_exponent(g_target, xi)

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """``apply_drift``, then ``apply_read_noise`` (when ``xi_read`` is given)."""
        g_d = self.apply_drift(g_prog, param, t_inference)
        if xi_read is None:
            return g_d
        return self.apply_read_noise(g_d, g_prog, t_inference, xi_read)


@dataclass
class GlobalDriftCompensation(ConfigBase):
    """One output scale per tile: the mean |output| of an identity readout at programming time
    divided by the same readout after drift."""

    def reduce(self, col_means: Tensor, out_index: Tensor, n_out: int) -> Tensor:
        """Per-tile readout statistic expanded over the tile's output rows.

        ``col_means[..., o]`` is the mean |readout| of output row ``o`` within one input split;
        rows of one output split (``out_index[o] == j``) share the mean of their values."""
        shape = col_means.shape
        flat = col_means.reshape(-1, shape[-1])
        sums = flat.new_zeros(flat.shape[0], n_out).index_add_(1, out_index, flat)
        counts = torch.bincount(out_index, minlength=n_out).to(flat.dtype)
        return (sums / counts)[:, out_index].reshape(shape)


@dataclass
class PerColumnDriftCompensation(ConfigBase):
    """One output scale per output column of each tile."""

    def reduce(self, col_means: Tensor, out_index: Tensor, n_out: int) -> Tensor:
        """Per-column readout statistic (see ``GlobalDriftCompensation.reduce``)."""
        return col_means


DriftCompensation = GlobalDriftCompensation | PerColumnDriftCompensation
