"""aihwkit 1.2.0's ReRAM inference noise models: ReRamWan2022NoiseModel and ReRamCMONoiseModel.

Their coefficient tables are keyed by a number (the read time for Wan 2022, the programming
acceptance range for CMO): here tuples of ``(key, coefficients)`` pairs, so they survive JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .base import check_config, check_number
from .converters import (
    ConductanceConverter,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from .noise_base import NoiseModel, check_scales, log_time_factor, polynomial

Table = tuple[tuple[float, tuple[float, ...]], ...]

#: Wan et al., Nature 2022 (48-core ReRAM CIM chip): conductance std polynomial in g / g_max
#: (lowest order first) at 1 s, 1 day and 2 days after programming.
WAN2022_COEFF: Table = (
    (1.0, (0.348, 16.030, -43.853, 45.393, -16.815)),
    (86400.0, (0.701, 22.086, -50.773, 47.095, -16.458)),
    (172800.0, (0.782, 20.274, -43.507, 37.062, -11.934)),
)
#: ReRAM CMO (Falcone et al., in review): programming-noise std polynomial in g (uS) per acceptance
#: range of the program-and-verify loop.
CMO_COEFF: Table = ((0.2, (0.00081107, 0.00106879)), (2.0, (0.0112185391, 0.01129027418)))


def _check_table(obj: Any, name: str) -> Table:
    where = f"{type(obj).__name__}.{name}"
    value = getattr(obj, name)
    if isinstance(value, dict):
        value = tuple(value.items())
    try:
        table = tuple((float(k), tuple(float(c) for c in coeff)) for k, coeff in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be (key, [coefficients]) pairs, got {value!r}") from None
    if not table or any(not c for _, c in table):
        raise ValueError(f"{where} needs at least one key with coefficients, got {value!r}")
    if len({k for k, _ in table}) != len(table):
        raise ValueError(f"{where} has a repeated key: {[k for k, _ in table]}")
    object.__setattr__(obj, name, table)
    return table


@dataclass
class ReRamWan2022NoiseModel(NoiseModel):
    """ReRAM of Wan et al. (Nature 2022): the conductance at read time ``t`` (one of the table's
    times) is the target plus Gaussian noise of std ``noise_scale * poly_t(g / g_max)``
    (``poly`` at the earliest time for programming); no deterministic drift. Reading at a time
    the table lacks raises ``ValueError``, as in aihwkit."""

    coeff_dic: Table = WAN2022_COEFF
    """``(t_inference, polynomial coefficients, lowest order first)`` pairs."""
    g_converter: ConductanceConverter | None = None
    """Conductance converter; None: ``SinglePairConductanceConverter(g_max)``."""
    g_max: float = 25.0
    """Largest conductance (uS) when ``g_converter`` is None."""
    noise_scale: float = 1.0
    """Multiplier of the noise."""
    coeff_g_max_reference: float | None = None
    """``g_max`` the polynomials were fitted at (std scales by ``g_max / reference``); None:
    ``g_max`` (scale 1). aihwkit 1.2.0 sets the fit's 40 uS on a misspelt attribute, so its
    default scale is 1 too; set 40.0 to apply the fit's scaling."""

    def __post_init__(self) -> None:
        _check_table(self, "coeff_dic")
        check_config(self, "g_converter", ConductanceConverter, optional=True)
        check_number(self, "g_max", positive=True)
        check_scales(self, "noise_scale")
        if self.coeff_g_max_reference is not None:
            check_number(self, "coeff_g_max_reference", positive=True)

    def converter(self) -> ConductanceConverter:
        """``g_converter`` or a single pair with ``g_max``."""
        conv = self.g_converter
        return conv if conv is not None else SinglePairConductanceConverter(g_max=self.g_max)

    def _sigma(self, g_target: Tensor, coeff: tuple[float, ...]) -> Tensor:
        g_max = self.g_max_value
        ref = self.coeff_g_max_reference or g_max
        return polynomial(g_target / g_max, coeff) * (g_max / ref) * self.noise_scale

    def check_time(self, t_inference: float) -> None:
        """Only ``0`` (programmed state) and the table's times can be read."""
        super().check_time(t_inference)
        times = [k for k, _ in self.coeff_dic]
        if t_inference > 0 and t_inference not in times:
            raise ValueError(f"ReRamWan2022NoiseModel: t_inference must be 0 or one of the "
                             f"times of coeff_dic {times}, got {t_inference!r}")

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``max(0, g + sigma_{t_min}(g) * xi)``."""
        coeff = min(self.coeff_dic)[1]
        return (g_target + self._sigma(g_target, coeff) * xi).clamp_min(0.0)

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """The target itself (the reads draw around it)."""
        return g_target

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """``max(0, g_target + sigma_t(g_target) * xi)`` at a table time; ``g_prog`` at 0."""
        self.check_time(t_inference)
        if t_inference <= 0:
            return g_prog
        if xi_read is None:
            return param.clamp_min(0.0)
        coeff = dict(self.coeff_dic)[t_inference]
        return (param + self._sigma(param, coeff) * xi_read).clamp_min(0.0)


@dataclass
class ReRamCMONoiseModel(NoiseModel):
    """ReRAM with a conductive-metal-oxide layer (Falcone et al., in review): one device per weight
    (``SingleDeviceConductanceConverter(g_max, g_min)``), programming noise a polynomial in
    ``g`` (uS) for the program-and-verify ``acceptance_range``, log-time relaxation
    ``g_p + mean ln t + (std_0 ln t + std_1) xi`` (times ``drift_scale``) and read noise
    ``K log10(g) sqrt(log((t + t_read) / (2 t_read)))``, clamped to ``[g_min, g_max]``."""

    coeff_dict: Table = CMO_COEFF
    """``(acceptance range, polynomial coefficients in g, lowest order first)`` pairs."""
    g_max: float = 88.199997
    """Largest conductance (uS)."""
    g_min: float = 9.0
    """Smallest conductance (uS)."""
    prog_noise_scale: float = 1.0
    """Multiplier of the programming noise."""
    read_noise_scale: float = 1.0
    """Multiplier of the read noise."""
    drift_scale: float = 1.0
    """Multiplier of the relaxation (mean and spread)."""
    decay_dict: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "mean": (-0.08900206,), "std": (0.04201137, 0.41183342)})
    """Relaxation: ``{"mean": [m], "std": [s_0, s_1]}`` (uS per ln s)."""
    read_dict: dict[str, float] = field(default_factory=lambda: {
        "K": 0.0277316483, "t_read": 1e-6})
    """Read noise: ``{"K": ..., "t_read": ...}``."""
    acceptance_range: float = 2e-2
    """Key of ``coeff_dict`` to program with; a key the table lacks falls back to its smallest
    (as in aihwkit, whose default 0.02 is not a key: 0.2 is used)."""

    def __post_init__(self) -> None:
        _check_table(self, "coeff_dict")
        check_number(self, "g_max", positive=True)
        check_number(self, "g_min", positive=True)
        if self.g_min >= self.g_max:
            raise ValueError(f"ReRamCMONoiseModel.g_min must be < g_max, got {self.g_min!r}")
        check_scales(self, "prog_noise_scale", "read_noise_scale", "drift_scale")
        check_number(self, "acceptance_range", positive=True)
        decay, read = self.decay_dict, self.read_dict
        try:
            decay = {"mean": tuple(float(v) for v in decay["mean"]),
                     "std": tuple(float(v) for v in decay["std"])}
            read = {"K": float(read["K"]), "t_read": float(read["t_read"])}
        except (TypeError, ValueError, KeyError):
            raise ValueError("ReRamCMONoiseModel.decay_dict needs 'mean' [m] and 'std' [s0, s1]"
                             ", read_dict needs 'K' and 't_read'") from None
        if len(decay["mean"]) < 1 or len(decay["std"]) < 2 or read["t_read"] <= 0:
            raise ValueError("ReRamCMONoiseModel.decay_dict needs 'mean' [m] and 'std' [s0, s1]"
                             "; read_dict['t_read'] must be > 0")
        object.__setattr__(self, "decay_dict", decay)
        object.__setattr__(self, "read_dict", read)

    def converter(self) -> ConductanceConverter:
        """``SingleDeviceConductanceConverter(g_max, g_min)``."""
        return SingleDeviceConductanceConverter(g_max=self.g_max, g_min=self.g_min)

    def program_coeff(self) -> tuple[float, ...]:
        """The coefficients programming uses (``acceptance_range`` or the smallest key)."""
        table = dict(self.coeff_dict)
        return table.get(self.acceptance_range, table[min(table)])

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``g + scale * poly(g) * xi`` (no clamp, as in aihwkit)."""
        return g_target + self.prog_noise_scale * polynomial(g_target, self.program_coeff()) * xi

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """The target (unused by the reads; kept for the interface)."""
        return g_target

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """Relaxation and read noise at ``t`` > 0 (``g_prog`` at 0), clamped to the range. The
        read-noise std takes ``log10`` of the relaxed conductance floored at ``g_min`` (aihwkit
        takes it unfloored and gives NaN for a non-positive one)."""
        if t_inference <= 0:
            return g_prog
        ln_t = math.log(t_inference)
        s0, s1 = self.decay_dict["std"][:2]
        g = g_prog + self.decay_dict["mean"][0] * ln_t * self.drift_scale
        if xi_drift is not None:
            g = g + xi_drift * (s0 * ln_t + s1) * self.drift_scale
        if xi_read is not None:
            k, t_read = self.read_dict["K"], self.read_dict["t_read"]
            sigma = k * torch.log10(g.clamp_min(self.g_min)) * log_time_factor(t_inference,
                                                                               t_read)
            g = g + sigma * xi_read * self.read_noise_scale
        return g.clamp(self.g_min, self.g_max)


RERAM_FAMILY: tuple[type[NoiseModel], ...] = (ReRamWan2022NoiseModel, ReRamCMONoiseModel)
