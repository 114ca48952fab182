"""aihwkit 1.2.0's other PCM-style inference noise models: StateIndependentNoiseModel,
CustomDriftPCMLikeNoiseModel and HermesNoiseModel (IBM's 64-core PCM chip).

All three: programming noise ``g_p = max(0, g + scale * sigma_p(g) * xi)``; a drift exponent
``nu`` per device, drawn once at programming; at ``t`` seconds ``g_d = g_p ((t + t_0) / t_0)^-nu``
plus read noise ``|g_d| * read_noise_scale * sigma_r * xi`` (fresh per read), clamped at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import check_config, check_number
from .converters import ConductanceConverter, SinglePairConductanceConverter
from .noise_base import NoiseModel, check_coeff, check_scales, log_time_factor, polynomial

_ZERO_CLIP = 1e-7
PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)


def drift_power_law(g_prog: Tensor, nu: Tensor, t_inference: float, t_0: float) -> Tensor:
    """``g_p ((t + t_0) / t_0)^-nu`` (no drift at ``t = 0``)."""
    if t_inference <= 0:
        return g_prog
    return g_prog * torch.exp(-nu * math.log((t_inference + t_0) / t_0))


def add_read_noise(g_drift: Tensor, rel_sigma: Tensor | float, xi: Tensor | None,
                   scale: float) -> Tensor:
    """``max(0, g_d + |g_d| * scale * rel_sigma * xi)``."""
    if xi is None:
        return g_drift.clamp_min(0.0)
    return (g_drift + g_drift.abs() * scale * rel_sigma * xi).clamp_min(0.0)


def _converter(obj: Any, g_max: float) -> ConductanceConverter:
    conv = obj.g_converter
    return conv if conv is not None else SinglePairConductanceConverter(g_max=g_max)


def _check_converter(obj: Any) -> None:
    check_config(obj, "g_converter", ConductanceConverter, optional=True)


@dataclass
class StateIndependentNoiseModel(NoiseModel):
    """Conductance-independent drift and read noise; programming noise a polynomial in
    ``g / g_max`` (constant 0.2 uS by default). ``nu = drift_scale * |nu_mean + nu_std xi|``;
    read noise std ``read_noise_scale * |g_d| / g_max * sqrt(log((t + t_0 + t_read) /
    (2 t_read)))`` uS."""

    g_converter: ConductanceConverter | None = None
    """Conductance converter; None: ``SinglePairConductanceConverter(g_max)``."""
    g_max: float = 25.0
    """Largest conductance (uS) when ``g_converter`` is None."""
    prog_coeff: tuple[float, ...] = (0.2, 0.0, 0.0)
    """Programming-noise std polynomial in ``g / g_max`` (uS)."""
    prog_noise_scale: float = 1.0
    """Multiplier of the programming noise."""
    drift_nu_mean: float = 0.1
    """Mean of the drift exponent (before ``drift_scale``)."""
    drift_nu_std: float = 0.05
    """Device-to-device std of the drift exponent (before ``drift_scale``)."""
    drift_scale: float = 1.0
    """Multiplier of the drift exponent."""
    t_0: float = 20.0
    """Time of the first read after programming (s)."""
    read_noise_scale: float = 1.0
    """Multiplier of the read noise."""
    t_read: float = 250.0e-9
    """Duration of one read (s), for the 1/f noise integral."""

    def __post_init__(self) -> None:
        _check_converter(self)
        check_coeff(self, "prog_coeff")
        for name in ("g_max", "t_0", "t_read"):
            check_number(self, name, positive=True)
        check_number(self, "drift_nu_mean")
        check_scales(self, "prog_noise_scale", "drift_nu_std", "drift_scale", "read_noise_scale")

    def converter(self) -> ConductanceConverter:
        """``g_converter`` or a single pair with ``g_max``."""
        return _converter(self, self.g_max)

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``max(0, g + scale * poly(g / g_max) * xi)``."""
        sigma = polynomial(g_target / self.g_max_value, self.prog_coeff)
        return (g_target + self.prog_noise_scale * sigma * xi).clamp_min(0.0)

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``nu = drift_scale * |nu_mean + nu_std * xi|``."""
        return self.drift_scale * (self.drift_nu_mean + self.drift_nu_std * xi).abs()

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """Power-law drift, then read noise of std ``rho |g_d| / g_max * log factor``."""
        g_d = drift_power_law(g_prog, param, t_inference, self.t_0)
        sigma = log_time_factor(t_inference + self.t_0, self.t_read) / self.g_max_value
        return add_read_noise(g_d, sigma, xi_read, self.read_noise_scale)


@dataclass
class CustomDriftPCMLikeNoiseModel(NoiseModel):
    """PCMLikeNoiseModel with a measured drift model: ``nu``'s mean and std are interpolated
    linearly in the target conductance from ``custom_drift_model`` (N. Li et al., AEM 2023);
    programming and read noise as PCMLikeNoiseModel."""

    custom_drift_model: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "g_lst": (0.0, 10.0, 25.0), "nu_mean_lst": (0.08, 0.05, 0.03),
        "nu_std_lst": (0.03, 0.02, 0.01)})
    """``{"g_lst": ascending conductances (uS), "nu_mean_lst": ..., "nu_std_lst": ...}`` (at
    least two points each). aihwkit requires it; the default is the example of its tests."""
    prog_coeff: tuple[float, ...] = PCM_PROG_COEFF
    """Programming-noise std polynomial in ``g / g_max``."""
    g_converter: ConductanceConverter | None = None
    """Conductance converter; None: ``SinglePairConductanceConverter(g_max)``."""
    g_max: float = 25.0
    """Largest conductance (uS) when ``g_converter`` is None."""
    t_read: float = 250.0e-9
    """Duration of one read (s)."""
    t_0: float = 20.0
    """Time of the first read after programming (s)."""
    prog_noise_scale: float = 1.0
    """Multiplier of the programming noise."""
    read_noise_scale: float = 1.0
    """Multiplier of the read noise."""
    drift_scale: float = 1.0
    """Multiplier of the drift exponent."""
    prog_coeff_g_max_reference: float | None = None
    """``g_max`` the polynomial was fitted at (its output scales by ``g_max / reference``);
    None: 25 for the default coefficients, else ``g_max``."""

    def __post_init__(self) -> None:
        _check_converter(self)
        check_coeff(self, "prog_coeff")
        model = self.custom_drift_model
        where = "CustomDriftPCMLikeNoiseModel.custom_drift_model"
        keys = ("g_lst", "nu_mean_lst", "nu_std_lst")
        if not isinstance(model, dict) or set(model) != set(keys):
            raise ValueError(f"{where} must be a dict with the keys {', '.join(keys)}, "
                             f"got {model!r}")
        try:
            table = {k: tuple(float(v) for v in model[k]) for k in keys}
        except (TypeError, ValueError):
            raise ValueError(f"{where} values must be lists of numbers") from None
        if len({len(v) for v in table.values()}) != 1 or len(table["g_lst"]) < 2:
            raise ValueError(f"{where} lists must have the same length (>= 2)")
        if list(table["g_lst"]) != sorted(table["g_lst"]) or min(table["g_lst"]) < 0:
            raise ValueError(f"{where}['g_lst'] must be ascending and >= 0")
        if min(table["nu_std_lst"]) < 0:
            raise ValueError(f"{where}['nu_std_lst'] must be >= 0")
        object.__setattr__(self, "custom_drift_model", table)
        for name in ("g_max", "t_read", "t_0"):
            check_number(self, name, positive=True)
        check_scales(self, "prog_noise_scale", "read_noise_scale", "drift_scale")
        if self.prog_coeff_g_max_reference is not None:
            check_number(self, "prog_coeff_g_max_reference", positive=True)
        lo, hi = self.converter().conductance_range
        if lo < table["g_lst"][0] or hi > table["g_lst"][-1]:
            raise ValueError(f"{where}: the converter's conductances [{lo}, {hi}] uS lie outside "
                             f"the drift model's [{table['g_lst'][0]}, {table['g_lst'][-1]}] uS")

    def converter(self) -> ConductanceConverter:
        """``g_converter`` or a single pair with ``g_max``."""
        return _converter(self, self.g_max)

    def _reference(self) -> float:
        if self.prog_coeff_g_max_reference is not None:
            return float(self.prog_coeff_g_max_reference)
        return 25.0 if self.prog_coeff == PCM_PROG_COEFF else self.g_max_value

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``max(0, g + scale * poly(g / g_max) * g_max / reference * xi)``."""
        g_max = self.g_max_value
        sigma = polynomial(g_target / g_max, self.prog_coeff) * (g_max / self._reference())
        return (g_target + self.prog_noise_scale * sigma * xi).clamp_min(0.0)

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``nu = drift_scale * |mean(g) + std(g) * xi|``, mean/std interpolated in the table at
        the target clipped to the table's range."""
        t = self.custom_drift_model
        g = g_target.detach().clamp(t["g_lst"][0], t["g_lst"][-1]).cpu().double().numpy()
        mean = torch.from_numpy(np.interp(g, t["g_lst"], t["nu_mean_lst"])).to(g_target)
        std = torch.from_numpy(np.interp(g, t["g_lst"], t["nu_std_lst"])).to(g_target)
        return self.drift_scale * (mean + std * xi).abs()

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """Power-law drift, then PCMLikeNoiseModel's read noise."""
        g_d = drift_power_law(g_prog, param, t_inference, self.t_0)
        q = (0.0088 / ((g_prog.abs() / self.g_max_value) ** 0.65).clamp_min(1e-3)).clamp_max(0.2)
        sigma = q * log_time_factor(t_inference + self.t_0, self.t_read)
        return add_read_noise(g_d, sigma, xi_read, self.read_noise_scale)


#: HERMES fits per unit cell (1 or 2 devices): g_max, t_0, programming polynomial.
HERMES_DEFAULTS = {1: (10.35, 200.0, (0.15781817, 2.32443916, -2.16310839, 0.68841818)),
                   2: (20.7, 300.0, (0.16603222, 4.71806468, -8.48101252, 4.68961419))}


def _piecewise(g: Tensor, split: float, low: Tensor, high: Tensor) -> Tensor:
    return torch.where(g < split, low, high)


@dataclass
class HermesNoiseModel(NoiseModel):
    """IBM HERMES 64-core PCM chip (Le Gallo et al., Nature Electronics 2023; fits of
    aihwkit 1.2.0): programming noise a cubic in ``g / g_max``; drift-exponent mean and std and
    read-noise ``Q`` piecewise in the relative conductance; ``num_devices`` 1 or 2 per unit
    cell (g_max 10.35 / 20.7 uS, t_0 200 / 300 s)."""

    prog_coeff: tuple[float, ...] | None = None
    """Programming-noise polynomial; None: the fit for ``num_devices``."""
    g_converter: ConductanceConverter | None = None
    """Conductance converter; None: ``SinglePairConductanceConverter(g_max)``."""
    num_devices: int = 2
    """Devices per unit cell whose fits are used (1 or 2)."""
    g_max: float | None = None
    """Largest conductance (uS); None: 10.35 (1 device) or 20.7 (2 devices), the most
    characterised."""
    t_read: float = 512.0e-9
    """Duration of one read (s)."""
    t_0: float | None = None
    """First read after programming (s); None: 200 (1 device) or 300 (2 devices)."""
    prog_noise_scale: float = 1.0
    """Multiplier of the programming noise."""
    read_noise_scale: float = 1.0
    """Multiplier of the read noise."""
    drift_scale: float = 1.0
    """Multiplier of the drift exponent."""
    prog_coeff_g_max_reference: float | None = None
    """``g_max`` the polynomial was fitted at; None: the fit's (default coefficients) or
    ``g_max``."""

    def __post_init__(self) -> None:
        if self.num_devices not in (1, 2) or isinstance(self.num_devices, bool):
            raise ValueError(f"HermesNoiseModel.num_devices must be 1 or 2, "
                             f"got {self.num_devices!r}")
        _check_converter(self)
        if self.prog_coeff is not None:
            check_coeff(self, "prog_coeff")
        limit = HERMES_DEFAULTS[self.num_devices][0]
        if self.g_max is not None:
            check_number(self, "g_max", positive=True)
            if self.g_max > limit:
                raise ValueError(f"HermesNoiseModel.g_max: at most {limit} uS is characterised "
                                 f"for num_devices={self.num_devices}, got {self.g_max!r}")
        for name in ("t_0", "prog_coeff_g_max_reference"):
            if getattr(self, name) is not None:
                check_number(self, name, positive=True)
        check_number(self, "t_read", positive=True)
        check_scales(self, "prog_noise_scale", "read_noise_scale", "drift_scale")

    def converter(self) -> ConductanceConverter:
        """``g_converter`` or a single pair with the effective ``g_max``."""
        g_max = self.g_max if self.g_max is not None else HERMES_DEFAULTS[self.num_devices][0]
        return _converter(self, g_max)

    @property
    def effective_t_0(self) -> float:
        """``t_0``, or the fit's for ``num_devices``."""
        return self.t_0 if self.t_0 is not None else HERMES_DEFAULTS[self.num_devices][1]

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``max(0, g + scale * poly(g / g_max) * g_max / reference * xi)``."""
        g_max = self.g_max_value
        fit_g_max, _, fit_coeff = HERMES_DEFAULTS[self.num_devices]
        coeff = self.prog_coeff if self.prog_coeff is not None else fit_coeff
        ref = self.prog_coeff_g_max_reference
        if ref is None:
            ref = fit_g_max if self.prog_coeff is None else g_max
        sigma = polynomial(g_target / g_max, coeff) * (g_max / ref)
        return (g_target + self.prog_noise_scale * sigma * xi).clamp_min(0.0)

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """``nu = drift_scale * |mu(g) + sigma(g) * xi|`` with the piecewise HERMES fits."""
        g = (g_target / self.g_max_value).abs().clamp_min(_ZERO_CLIP)
        lg = torch.log(g)
        mu = _piecewise(g, 0.0945, (-0.0387 * lg - 0.0182).clamp(0.0720, 0.13),
                        -0.0436 * g * g - 0.0126 * g + 0.0736)
        if self.num_devices == 1:
            sd = _piecewise(g, 0.3039, (-0.0120 * lg - 0.0023).clamp(0.0124, 0.04),
                            -0.0165 * g * g + 0.0116 * g + 0.0104)
        else:
            sd = _piecewise(g, 0.3055, (-0.0117 * lg - 0.0057).clamp(0.0091, 0.04),
                            -0.0118 * g * g + 0.0093 * g + 0.0073)
        return self.drift_scale * (mu + sd * xi).abs()

    def read_q(self, g_prog: Tensor) -> Tensor:
        """The piecewise read-noise ``Q`` of the programmed conductance."""
        g = g_prog.abs() / self.g_max_value
        lg = torch.log(g.clamp_min(1e-30))
        if self.num_devices == 1:
            return _piecewise(g, 0.1591, (-0.0078 * lg + 0.0038).clamp(0.0179, 0.04),
                              0.0664 * g ** 3 - 0.1352 * g ** 2 + 0.0768 * g + 0.0088)
        return _piecewise(g, 0.16, (-0.0117 * lg - 0.0069).clamp(0.015, 0.04),
                          0.0069 * g ** 3 - 0.0280 * g ** 2 + 0.0211 * g + 0.0123)

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """Power-law drift, then read noise ``|g_d| Q(g_p) sqrt(log((t + t_0 + t_read) /
        (2 t_read)))``."""
        t_0 = self.effective_t_0
        g_d = drift_power_law(g_prog, param, t_inference, t_0)
        sigma = self.read_q(g_prog) * log_time_factor(t_inference + t_0, self.t_read)
        return add_read_noise(g_d, sigma, xi_read, self.read_noise_scale)


PCM_FAMILY: tuple[type[NoiseModel], ...] = (StateIndependentNoiseModel,
                                            CustomDriftPCMLikeNoiseModel, HermesNoiseModel)
