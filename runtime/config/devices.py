"""Resistive device models of the pulsed (in-memory) update, with aihwkit 1.2.0's names and
defaults.

A device config says how one cross-point's conductance (weight) answers one update pulse. The
per-device parameters are drawn once per tile (device-to-device variation, ``*_dtod``) and every
pulse is scaled by cycle-to-cycle noise (``dw_min_std``). With ``d = +1`` (up) or ``-1`` (down),
``xi`` standard normal:

- step sizes ``dw^d_ij = dw_min * (1 + d * beta_ij + dw_min_dtod * xi)``,
  ``beta_ij = up_down + up_down_dtod * xi``;
- bounds ``b^max_ij = w_max * (1 + w_max_dtod * xi)``, ``b^min_ij = w_min * (1 + w_min_dtod * xi)``;
- one pulse: ``w <- clip(w + d * dw^d_ij * f^d(w) * (1 + dw_min_std * xi), b^min_ij, b^max_ij)``
  where ``f^d`` is the device's response (1 for ``ConstantStepDevice``; see each class).

Features of aihwkit's devices that this simulator does not model (diffusion, lifetime/decay,
corrupt devices, write noise, reverse modes, pulse counters, log-normal spreads) keep their fields
for compatibility, but only their default (off) values validate, so a config never silently
means something else than in aihwkit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .base import CONFIG_REGISTRY, ConfigBase, check_bool, check_int, check_number


def _off(obj: Any, name: str, off: Any = 0.0) -> None:
    """Fields of aihwkit features not modelled here: only the 'off' value is accepted."""
    value = getattr(obj, name)
    if value != off:
        raise ValueError(f"{type(obj).__name__}.{name}={value!r} is not supported by the pulsed "
                         f"update simulator (only {off!r})")


@dataclass
class IdealDevice(ConfigBase):
    """Ideal update: the floating-point ``W -= lr * d x^T`` (no pulses, no bounds), while the
    forward and backward still use the periphery of the config."""

    construction_seed: int = 0
    """Seed of the device-to-device sample (0: drawn from torch's default generator)."""
    diffusion: float = 0.0
    """Not modelled (must be 0)."""
    lifetime: float = 0.0
    """Not modelled (must be 0)."""
    reset_std: float = 0.01
    """Std of the reset value (used by compounds that reset their devices)."""

    def __post_init__(self) -> None:
        check_int(self, "construction_seed", min_value=0)
        _off(self, "diffusion")
        _off(self, "lifetime")
        check_number(self, "reset_std", min_value=0.0)

    @property
    def dw_min(self) -> float:
        """The weight granularity of BL management (an ideal device has none: 0)."""
        return 0.0

    @property
    def weight_granularity(self) -> float:
        """aihwkit's ``calcWeightGranularity``: none for an ideal device (0)."""
        return 0.0


@dataclass
class PulsedDevice(ConfigBase):
    """Fields of every pulsed device (aihwkit's ``PulsedDevice``); the response ``f^d(w) = 1``
    of this base class is the constant step."""

    construction_seed: int = 0
    """Seed of the device-to-device sample (0: drawn from torch's default generator)."""
    corrupt_devices_prob: float = 0.0
    """Not modelled (must be 0)."""
    corrupt_devices_range: float = 0.1
    """Not modelled (kept for aihwkit compatibility)."""
    diffusion: float = 0.0
    """Not modelled (must be 0)."""
    diffusion_dtod: float = 0.0
    """Not modelled (must be 0)."""
    dw_min: float = 0.001
    """Mean weight change of one pulse (the weight granularity); > 0."""
    dw_min_dtod: float = 0.3
    """Device-to-device std of the step size, relative to ``dw_min``."""
    dw_min_dtod_log_normal: bool = False
    """Not modelled (must be False)."""
    dw_min_std: float = 0.3
    """Cycle-to-cycle std of each step, relative to the step."""
    enforce_consistency: bool = True
    """Make the sampled step sizes positive (``|dw|``) and swap bounds with ``b^min > b^max``."""
    lifetime: float = 0.0
    """Not modelled (must be 0)."""
    lifetime_dtod: float = 0.0
    """Not modelled (must be 0)."""
    perfect_bias: bool = False
    """Kept for aihwkit compatibility (the bias is digital here)."""
    reset: float = 0.0
    """Mean value a device is reset to (compounds that reset their devices)."""
    reset_dtod: float = 0.0
    """Device-to-device std of the reset value."""
    reset_std: float = 0.01
    """Cycle-to-cycle std of the reset value."""
    up_down: float = 0.0
    """Systematic up/down asymmetry ``beta``: up steps ``1 + beta``, down steps ``1 - beta``."""
    up_down_dtod: float = 0.01
    """Device-to-device std of the asymmetry (relative to ``dw_min``)."""
    w_max: float = 0.6
    """Mean upper bound of the weight."""
    w_max_dtod: float = 0.3
    """Device-to-device std of the upper bound, relative to ``w_max``."""
    w_min: float = -0.6
    """Mean lower bound of the weight."""
    w_min_dtod: float = 0.3
    """Device-to-device std of the lower bound, relative to ``|w_min|``."""
    count_pulses: bool = False
    """Not modelled (must be False)."""

    def __post_init__(self) -> None:
        check_int(self, "construction_seed", min_value=0)
        for name in ("corrupt_devices_prob", "diffusion", "diffusion_dtod", "lifetime",
                     "lifetime_dtod"):
            check_number(self, name, min_value=0.0)
            _off(self, name)
        check_number(self, "corrupt_devices_range")
        check_number(self, "dw_min", positive=True)
        for name in ("dw_min_dtod", "dw_min_std", "up_down_dtod", "w_max_dtod", "w_min_dtod",
                     "reset_dtod", "reset_std"):
            check_number(self, name, min_value=0.0)
        for name in ("up_down", "reset", "w_max", "w_min"):
            check_number(self, name)
        for name in ("dw_min_dtod_log_normal", "enforce_consistency", "perfect_bias",
                     "count_pulses"):
            check_bool(self, name)
        _off(self, "dw_min_dtod_log_normal", False)
        _off(self, "count_pulses", False)
        if self.w_min > self.w_max:
            raise ValueError(f"{type(self).__name__}: w_min ({self.w_min}) must be <= w_max "
                             f"({self.w_max})")
        self._check_model()

    def _check_model(self) -> None:
        """Validation of the subclass's own fields."""

    @property
    def weight_granularity(self) -> float:
        """The weight change one pulse stands for in BL and update management, mixed precision
        and the transfer compounds (aihwkit's ``calcWeightGranularity``): ``dw_min`` unless the
        model's step at the middle of the range differs (``ExpStepDevice``, ``PowStepDevice``,
        ``PiecewiseStepDevice``)."""
        return self.dw_min


@dataclass
class ConstantStepDevice(PulsedDevice):
    """Constant step up to hard bounds: ``f^d(w) = 1``."""


@dataclass
class _WriteNoiseDevice(PulsedDevice):
    """The write-noise fields of aihwkit's device models (write noise is not modelled)."""

    write_noise_std: float = 0.0
    """Not modelled (must be 0)."""
    apply_write_noise_on_set: bool = True
    """Kept for aihwkit compatibility (write noise is not modelled)."""

    def _check_model(self) -> None:
        check_number(self, "write_noise_std", min_value=0.0)
        check_bool(self, "apply_write_noise_on_set")
        _off(self, "write_noise_std")
        if self.w_max <= self.w_min:
            raise ValueError(f"{type(self).__name__}: needs w_min < w_max, got w_min="
                             f"{self.w_min}, w_max={self.w_max}")


CONFIG_REGISTRY.pop(_WriteNoiseDevice.__name__, None)  # a shared base, not a device


@dataclass
class _SlopedDevice(_WriteNoiseDevice):
    """Fields shared by the devices whose step is linear in the weight (aihwkit's
    ``LinearStepDevice`` and ``SoftBoundsDevice``)."""

    mult_noise: bool = True
    """Multiplicative cycle-to-cycle noise (else additive, in units of the step size)."""
    reverse_up: bool = False
    """Not modelled (must be False)."""
    reverse_down: bool = False
    """Not modelled (must be False)."""
    reverse_offset: float = 0.01
    """Kept for aihwkit compatibility (reverse modes are not modelled)."""

    def _check_model(self) -> None:
        super()._check_model()
        check_number(self, "reverse_offset")
        for name in ("mult_noise", "reverse_up", "reverse_down"):
            check_bool(self, name)
        _off(self, "reverse_up", False)
        _off(self, "reverse_down", False)


CONFIG_REGISTRY.pop(_SlopedDevice.__name__, None)  # a shared base, not a device


@dataclass
class LinearStepDevice(_SlopedDevice):
    """Step linear in the weight: ``f^d(w) = 1 + gamma^d_ij * w`` with
    ``gamma^+_ij = -|gamma_up + gamma_up_dtod * xi| / b^max`` and
    ``gamma^-_ij = -|gamma_down + gamma_down_dtod * xi| / b^min`` (``b`` the device's bounds, or
    the mean bounds with ``mean_bound_reference``). Noise multiplies the whole step
    (``mult_noise``) or adds ``dw^d * dw_min_std * xi``."""

    gamma_up: float = 0.0
    """Slope of the up step (relative to the upper bound)."""
    gamma_down: float = 0.0
    """Slope of the down step (relative to the lower bound)."""
    gamma_up_dtod: float = 0.05
    """Device-to-device std of ``gamma_up``."""
    gamma_down_dtod: float = 0.05
    """Device-to-device std of ``gamma_down``."""
    allow_increasing: bool = False
    """Allow steps that grow towards the bound (signed instead of ``-|gamma|``)."""
    mean_bound_reference: bool = True
    """Slopes relative to the mean bounds ``w_max``/``w_min`` (else each device's own)."""

    def _check_model(self) -> None:
        super()._check_model()
        for name in ("gamma_up", "gamma_down"):
            check_number(self, name)
        for name in ("gamma_up_dtod", "gamma_down_dtod"):
            check_number(self, name, min_value=0.0)
        for name in ("allow_increasing", "mean_bound_reference"):
            check_bool(self, name)
        if self.w_max == 0 or self.w_min == 0:
            raise ValueError("LinearStepDevice: the slopes are relative to the bounds; needs "
                             f"w_min != 0 and w_max != 0, got w_min={self.w_min}, "
                             f"w_max={self.w_max}")


@dataclass
class SoftBoundsDevice(_SlopedDevice):
    """Soft bounds: the step shrinks linearly to 0 at the device's own bound,
    ``f^+(w) = 1 - w / b^max_ij``, ``f^-(w) = 1 - w / b^min_ij``; multiplicative noise."""

    def _check_model(self) -> None:
        super()._check_model()
        if self.w_max <= 0 or self.w_min >= 0:
            raise ValueError(f"SoftBoundsDevice: needs w_min < 0 < w_max, got w_min={self.w_min}"
                             f", w_max={self.w_max}")


@dataclass
class ExpStepDevice(_WriteNoiseDevice):
    """Exponential (CMOS-like) step: ``z = 2 a w / (b^max - b^min) + b``,
    ``f^d(w) = max(0, 1 - A^d exp(d gamma^d z))``; the cycle-to-cycle std of one step is
    ``dw_min_std * (dw_min_std_add + |dw| + dw_min_std_slope * |w|)``."""

    A_up: float = 0.00081  # noqa: N815 (aihwkit's name)
    """Amplitude of the up response."""
    A_down: float = 0.36833  # noqa: N815 (aihwkit's name)
    """Amplitude of the down response."""
    gamma_up: float = 12.44625
    """Exponent of the up response."""
    gamma_down: float = 12.78785
    """Exponent of the down response."""
    a: float = 0.244
    """Weight scale of ``z``."""
    b: float = 0.2425
    """Offset of ``z``."""
    dw_min_std_add: float = 0.0
    """Additive part of the cycle-to-cycle std (weight units, times ``dw_min_std``)."""
    dw_min_std_slope: float = 0.0
    """Weight-proportional part of the cycle-to-cycle std (times ``dw_min_std``)."""

    def _check_model(self) -> None:
        for name in ("A_up", "A_down", "gamma_up", "gamma_down", "a", "b"):
            check_number(self, name)
        super()._check_model()
        for name in ("dw_min_std_add", "dw_min_std_slope"):
            check_number(self, name, min_value=0.0)

    @property
    def weight_granularity(self) -> float:
        """aihwkit's granularity of the exponential step: the down step at ``w = 0`` (aihwkit
        averages the down step with itself, not with the up step), ``dw_min`` if that is 0."""
        down_bias = -self.up_down if self.up_down > 0 else 0.0
        z = self.b  # z at w = 0
        dw_down = (1.0 + down_bias) * self.dw_min * max(
            1.0 - self.A_down * math.exp(-self.gamma_down * z), 0.0)
        return dw_down if dw_down > 0 else self.dw_min


@dataclass
class PowStepDevice(_WriteNoiseDevice):
    """Power-law step (Fusi & Abbott): with ``omega = (b^max - w) / (b^max - b^min)``,
    ``f^+(w) = omega^gamma^+_ij`` and ``f^-(w) = (1 - omega)^gamma^-_ij``,
    ``gamma^d_ij = pow_gamma * (1 + d beta_ij + pow_gamma_dtod * xi)``,
    ``beta_ij = pow_up_down + pow_up_down_dtod * xi``."""

    pow_gamma: float = 1.0
    """Mean exponent."""
    pow_gamma_dtod: float = 0.1
    """Device-to-device std of the exponent (relative to ``pow_gamma``)."""
    pow_up_down: float = 0.0
    """Up/down asymmetry of the exponent."""
    pow_up_down_dtod: float = 0.0
    """Device-to-device std of the exponent's asymmetry."""

    def _check_model(self) -> None:
        check_number(self, "pow_gamma", positive=True)
        check_number(self, "pow_up_down")
        super()._check_model()
        for name in ("pow_gamma_dtod", "pow_up_down_dtod"):
            check_number(self, name, min_value=0.0)

    @property
    def weight_granularity(self) -> float:
        """aihwkit's granularity of the power step: the step at the middle of the range,
        ``dw_min * 0.5 ** pow_gamma``."""
        return self.dw_min * 0.5 ** self.pow_gamma


@dataclass
class PiecewiseStepDevice(_WriteNoiseDevice):
    """Step interpolated linearly between nodes equally spaced over each device's
    ``[b^min, b^max]``: ``f^d(w) = (1 - q) v^d[k] + q v^d[k + 1]``."""

    piecewise_up: list[float] = field(default_factory=lambda: [1.0])
    """Node values of the up response (at least one; equal length to ``piecewise_down``)."""
    piecewise_down: list[float] = field(default_factory=lambda: [1.0])
    """Node values of the down response."""

    def _check_model(self) -> None:
        for name in ("piecewise_up", "piecewise_down"):
            nodes = getattr(self, name)
            if isinstance(nodes, tuple):
                nodes = list(nodes)
                object.__setattr__(self, name, nodes)
            if (not isinstance(nodes, list) or not nodes or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                    for v in nodes)):
                raise ValueError(f"PiecewiseStepDevice.{name} must be a non-empty list of "
                                 f"numbers >= 0, got {nodes!r}")
        if len(self.piecewise_up) != len(self.piecewise_down):
            raise ValueError("PiecewiseStepDevice: piecewise_up and piecewise_down must have "
                             f"the same length ({len(self.piecewise_up)} != "
                             f"{len(self.piecewise_down)})")
        super()._check_model()

    @property
    def weight_granularity(self) -> float:
        """aihwkit's granularity of the piecewise step: ``dw_min`` times the up node at index
        ``len(piecewise_up) // 2`` (``dw_min`` where that node is 0: aihwkit divides by 0)."""
        node = self.piecewise_up[len(self.piecewise_up) // 2]
        return self.dw_min * node if node > 0 else self.dw_min


PULSED_DEVICE_TYPES = (IdealDevice, PulsedDevice, ConstantStepDevice, LinearStepDevice,
                       SoftBoundsDevice, ExpStepDevice, PowStepDevice, PiecewiseStepDevice)
"""The device configs a ``SingleRPUConfig`` accepts."""
