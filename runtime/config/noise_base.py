"""The interface of the inference noise models (one family, aihwkit 1.2.0's models).

A noise model acts on device conductances (uS) that its conductance converter
(``runtime/config/converters.py``) makes of one tile's weights. A chip is a function of the
target weights and a seed: programming draws two normals per device (programming noise and the
drift parameter), every read at ``t_inference`` draws two more (drift relaxation, where a model
has it, and read noise). ``runtime/programming.py`` drives the models; the formulas live in the
model classes (``noise.py``, ``noise_pcm.py``, ``noise_reram.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import ConfigBase, check_float_tuple, check_number
from .converters import ConductanceConverter


def polynomial(g_rel: Tensor, coeff: tuple[float, ...]) -> Tensor:
    """``c_0 + c_1 g + c_2 g^2 + ...`` (aihwkit's programming-noise polynomials)."""
    out = torch.full_like(g_rel, coeff[0])
    power = torch.ones_like(g_rel)
    for c in coeff[1:]:
        power = power * g_rel
        out = out + c * power
    return out


def log_time_factor(t: float, t_read: float) -> float:
    """``sqrt(log((t + t_read) / (2 t_read)))``: the 1/f read-noise integral up to ``t``."""
    return math.sqrt(math.log((t + t_read) / (2.0 * t_read)))


class NoiseModel(ConfigBase):
    """Interface of every inference noise model.

    ``program``, ``drift_parameter`` and ``read`` take standard-normal tensors ``xi`` of the
    conductance's shape (the chip draws them from its seeds), so a model is a pure function and
    its statistics can be tested against its formulas.
    """

    def converter(self) -> ConductanceConverter:
        """The conductance converter of this model (weights of one tile <-> uS)."""
        raise NotImplementedError

    @property
    def g_max_value(self) -> float:
        """The converter's largest conductance (uS)."""
        return float(self.converter().conductance_range[1])

    def program(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """Programmed conductance of a device with target ``g_target``."""
        raise NotImplementedError

    def drift_parameter(self, g_target: Tensor, xi: Tensor) -> Tensor:
        """The per-device quantity drawn once at programming that the reads need (the drift
        exponent ``nu`` of the PCM models; the target itself for the ReRAM models)."""
        raise NotImplementedError

    def read(self, g_prog: Tensor, param: Tensor, t_inference: float, xi_drift: Tensor | None,
             xi_read: Tensor | None) -> Tensor:
        """Conductance read ``t_inference`` s after programming. ``xi_drift`` / ``xi_read`` are
        the per-read normals (relaxation, read noise); ``None`` leaves that noise out."""
        raise NotImplementedError

    def check_time(self, t_inference: float) -> None:
        """Raise ``ValueError`` when the model cannot read at ``t_inference``."""
        if not math.isfinite(t_inference) or t_inference < 0:
            raise ValueError(f"{type(self).__name__}: t_inference must be a finite number >= 0, "
                             f"got {t_inference!r}")


def check_scales(obj: Any, *names: str) -> None:
    """The noise scales are numbers >= 0."""
    for name in names:
        check_number(obj, name, min_value=0.0)


def check_coeff(obj: Any, name: str, min_len: int = 1) -> None:
    """A tuple of polynomial coefficients (normalised to floats)."""
    check_float_tuple(obj, name, min_len=min_len)
