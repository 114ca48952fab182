"""Conductance converters: how one tile's weights become device conductances (uS) and back.

aihwkit 1.2.0's converters with its names and defaults. A converter acts on the weights of one
tile (its scale comes from that tile's weights only); ``to_conductances`` returns the target
conductances of every device of a unit cell (a list of weight-shaped tensors) and the parameters
``from_conductances`` needs to map (noisy, drifted) conductances back to weights.

=================================  =====================================================
``SinglePairConductanceConverter``  ``G+``/``G-`` pair, ``s = (g_max - g_min) / max|W|``
``NPairConductanceConverter``       ``n`` pairs of significance ``f_lst``, filled in order
``DualPairConductanceConverter``    the two-pair case of ``NPairConductanceConverter``
``CustomPairConductanceConverter``  conductances interpolated from measured ``g_lst`` tables
``SingleDeviceConductanceConverter``one device, ``W`` mapped linearly onto ``[g_min, g_max]``
=================================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import ConfigBase, check_bool, check_float_tuple, check_number

_ZERO_CLIP = 1e-7  # aihwkit's floor of max|W| (an all-zero tile keeps a finite scale)


def _check_range(obj: Any) -> None:
    check_number(obj, "g_max", positive=True)
    check_number(obj, "g_min", min_value=0.0)
    if obj.g_min >= obj.g_max:
        raise ValueError(f"{type(obj).__name__}.g_min must be < g_max, got g_min={obj.g_min!r}, "
                         f"g_max={obj.g_max!r}")


def _pairs_to_weights(conductances: list[Tensor], f_lst: tuple[float, ...],
                      scale: Tensor) -> Tensor:
    """``sum_k f_k (G+_k - G-_k) / s``."""
    w = torch.zeros_like(conductances[0])
    for k, f in enumerate(f_lst):
        w = w + f * (conductances[2 * k] - conductances[2 * k + 1])
    return w / scale


class ConductanceConverter(ConfigBase):
    """Interface of the converters (one tile's weights <-> device conductances in uS)."""

    def to_conductances(self, weight: Tensor) -> tuple[list[Tensor], dict[str, Any]]:
        """Target conductances of each device of the unit cell, and the mapping parameters."""
        raise NotImplementedError

    def from_conductances(self, conductances: list[Tensor], params: dict[str, Any]) -> Tensor:
        """Weights of (programmed, drifted, read) conductances."""
        raise NotImplementedError

    @property
    def conductance_range(self) -> tuple[float, float]:
        """Smallest and largest conductance the converter produces (uS)."""
        return float(self.g_min), float(self.g_max)  # type: ignore[attr-defined]


@dataclass
class SinglePairConductanceConverter(ConductanceConverter):
    """One pair of devices per weight: ``G+ = clamp(s W, 0, g_max) + g_min``,
    ``G- = clamp(-s W, 0, g_max) + g_min`` with ``s = (g_max - g_min) / max|W|``;
    ``W = (G+ - G-) / s``."""

    g_max: float = 25.0
    """Conductance (uS) the largest weight magnitude maps to (above ``g_min``)."""
    g_min: float = 0.0
    """Conductance (uS) of a device that holds nothing."""

    def __post_init__(self) -> None:
        _check_range(self)

    def to_conductances(self, weight: Tensor) -> tuple[list[Tensor], dict[str, Any]]:
        """``[G+, G-]`` and ``{"scale_ratio": s}``."""
        s = (self.g_max - self.g_min) / weight.abs().max().clamp_min(_ZERO_CLIP)
        sw = weight * s
        return ([sw.clamp(0.0, self.g_max) + self.g_min, (-sw).clamp(0.0, self.g_max) + self.g_min],
                {"scale_ratio": s})

    def from_conductances(self, conductances: list[Tensor], params: dict[str, Any]) -> Tensor:
        """``(G+ - G-) / s``."""
        g_plus, g_minus = conductances
        return ((g_plus - self.g_min) - (g_minus - self.g_min)) / params["scale_ratio"]


@dataclass
class NPairConductanceConverter(ConductanceConverter):
    """``n`` pairs of devices per weight, pair ``k`` weighted by ``f_lst[k]``: the weight (in uS,
    ``max|W|`` maps to ``sum(f) (g_max - g_min)``) fills pair 0 first, then pair 1, ... (pair
    ``k`` takes ``f_k (g_max - g_min)`` of it); ``W = sum_k f_k (G+_k - G-_k) / s``."""

    f_lst: tuple[float, ...] = (1.0, 2.0, 3.0)
    """Significance factor of each pair, in filling order. aihwkit has no default; this one is
    the example of aihwkit's own tests."""
    g_max: float = 25.0
    """Largest device conductance (uS)."""
    g_min: float = 0.0
    """Smallest device conductance (uS)."""

    def __post_init__(self) -> None:
        check_float_tuple(self, "f_lst", positive=True)
        _check_range(self)

    def to_conductances(self, weight: Tensor) -> tuple[list[Tensor], dict[str, Any]]:
        """``[G+_0, G-_0, G+_1, G-_1, ...]`` and ``{"scale_ratio": s}``."""
        span = self.g_max - self.g_min
        s = sum(f * span for f in self.f_lst) / weight.abs().max().clamp_min(_ZERO_CLIP)
        w_us = weight * s
        out, lower = [], 0.0
        for f in self.f_lst:
            for part in (w_us.clamp_min(0.0), (-w_us).clamp_min(0.0)):
                out.append(((part - lower) / f + self.g_min).clamp(self.g_min, self.g_max))
            lower += f * span
        return out, {"scale_ratio": s}

    def from_conductances(self, conductances: list[Tensor], params: dict[str, Any]) -> Tensor:
        """``sum_k f_k (G+_k - G-_k) / s``."""
        return _pairs_to_weights(conductances, self.f_lst, params["scale_ratio"])


@dataclass
class DualPairConductanceConverter(NPairConductanceConverter):
    """Two pairs per weight (an MSB and an LSB pair of significance ``f_lst``)."""

    f_lst: tuple[float, ...] = (1.0, 3.0)
    """Significance factors of the two pairs, in filling order (aihwkit has no default; the
    example of aihwkit's tests)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.f_lst) != 2:
            raise ValueError("DualPairConductanceConverter.f_lst must have two values, "
                             f"got {self.f_lst!r}")


@dataclass
class CustomPairConductanceConverter(ConductanceConverter):
    """Measured unit-cell tables: for ``m`` weight levels evenly spaced over
    ``[-max|W|, max|W|]``, ``g_lst`` gives the conductance of every device (``G+_k``, ``G-_k``
    per pair ``k`` of significance ``f_lst[k]``); weights in between are interpolated linearly.
    The tables must map back to the weights (``invertibility_test``)."""

    f_lst: tuple[float, ...] = (1.0,)
    """Significance factor of each pair."""
    g_lst: tuple[tuple[float, ...], ...] = ((0.0, 0.0, 0.0, 12.5, 25.0),
                                            (25.0, 12.5, 0.0, 0.0, 0.0))
    """Conductance table per device (``2 * len(f_lst)`` rows of ``m >= 2`` levels, uS). aihwkit
    has no defaults; these (one linear pair) are the example of aihwkit's tests."""
    g_max: float = 25.0
    """Largest conductance (uS)."""
    g_min: float = 0.0
    """Smallest conductance (uS)."""
    invertibility_test: bool = True
    """Check at construction that the tables map weights back to themselves."""

    def __post_init__(self) -> None:
        check_float_tuple(self, "f_lst", positive=True)
        rows = self.g_lst
        if isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__"):
            raise ValueError(f"CustomPairConductanceConverter.g_lst must be a list of lists, "
                             f"got {rows!r}")
        try:
            table = tuple(tuple(float(v) for v in row) for row in rows)
        except (TypeError, ValueError):
            raise ValueError("CustomPairConductanceConverter.g_lst must be a list of lists of "
                             f"numbers, got {rows!r}") from None
        if len(table) != 2 * len(self.f_lst):
            raise ValueError("CustomPairConductanceConverter.g_lst needs two rows (G+, G-) per "
                             f"value of f_lst ({2 * len(self.f_lst)}), got {len(table)}")
        if len({len(r) for r in table}) != 1 or len(table[0]) < 2:
            raise ValueError("CustomPairConductanceConverter.g_lst rows must all have the same "
                             "number (>= 2) of levels")
        object.__setattr__(self, "g_lst", table)
        _check_range(self)
        check_bool(self, "invertibility_test")
        if self.invertibility_test:
            w = torch.linspace(-1, 1, 5)
            gs, params = self.to_conductances(w)
            if not torch.allclose(self.from_conductances(gs, params), w, atol=1e-4):
                raise ValueError("CustomPairConductanceConverter.g_lst does not map weights back "
                                 "to themselves (invertibility_test)")

    def _weights_us(self) -> Tensor:
        w = torch.zeros(len(self.g_lst[0]), dtype=torch.float64)
        for k, f in enumerate(self.f_lst):
            w += f * (torch.tensor(self.g_lst[2 * k], dtype=torch.float64)
                      - torch.tensor(self.g_lst[2 * k + 1], dtype=torch.float64))
        return w

    def to_conductances(self, weight: Tensor) -> tuple[list[Tensor], dict[str, Any]]:
        """Each device's conductance interpolated at the weight, and ``{"scale_ratio": s}``."""
        max_us = float(self._weights_us().abs().max())
        s = max_us / weight.abs().max().clamp_min(_ZERO_CLIP)
        levels = np.linspace(-max_us, max_us, len(self.g_lst[0])) / float(s)
        w = weight.detach().cpu().double().numpy()
        out = [torch.from_numpy(np.interp(w, levels, np.asarray(row))).to(weight)
               for row in self.g_lst]
        return out, {"scale_ratio": s}

    def from_conductances(self, conductances: list[Tensor], params: dict[str, Any]) -> Tensor:
        """``sum_k f_k (G+_k - G-_k) / s``."""
        return _pairs_to_weights(conductances, self.f_lst, params["scale_ratio"])

    @property
    def conductance_range(self) -> tuple[float, float]:
        """Smallest and largest conductance of the tables (uS)."""
        return min(min(r) for r in self.g_lst), max(max(r) for r in self.g_lst)


@dataclass
class SingleDeviceConductanceConverter(ConductanceConverter):
    """One device per weight: ``G = g_min + (W - min W) (g_max - g_min) / (max W - min W)``
    (aihwkit's ReRAM CMO default range)."""

    g_max: float = 88.199997
    """Conductance (uS) of the largest weight."""
    g_min: float = 9.0
    """Conductance (uS) of the smallest weight."""

    def __post_init__(self) -> None:
        _check_range(self)

    def to_conductances(self, weight: Tensor) -> tuple[list[Tensor], dict[str, Any]]:
        """``[G]`` and ``{"scale_ratio": s, "min": min W}``."""
        w_min, w_max = weight.min(), weight.max()
        s = (self.g_max - self.g_min) / (w_max - w_min).clamp_min(_ZERO_CLIP)
        return [(weight - w_min) * s + self.g_min], {"scale_ratio": s, "min": w_min}

    def from_conductances(self, conductances: list[Tensor], params: dict[str, Any]) -> Tensor:
        """``min W + (G - g_min) / s``."""
        return params["min"] + (conductances[0] - self.g_min) / params["scale_ratio"]


CONVERTER_TYPES = (SinglePairConductanceConverter, NPairConductanceConverter,
                   CustomPairConductanceConverter, SingleDeviceConductanceConverter)
