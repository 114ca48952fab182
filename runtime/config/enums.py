"""Enumerations of the analog configuration (aihwkit names).

Every enum accepts its member name (case-insensitive) wherever a config field takes it, so JSON
configs and aihwkit-style code (``NoiseManagementType.ABS_MAX``) both work.
"""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


class WeightNoiseType(enum.Enum):
    """Output-referred weight read noise, fresh at every MVM."""

    NONE = "none"
    ADDITIVE_CONSTANT = "additive_constant"  # y_i += w_noise * ||x||_2 * xi
    PCM_READ = "pcm_read"  # y_i += w_noise * sqrt(sum_j |w_ij| x_j^2) * xi


class BoundManagementType(enum.Enum):
    """What to do when an output saturates the ADC."""

    NONE = "none"
    ITERATIVE = "iterative"  # redo the clipped vector with the input halved, per vector
    # 2nd round: the input scale of ABS_MAX_NP_SUM, reduction 1; then halved as ITERATIVE
    ITERATIVE_WORST_CASE = "iterative_worst_case"
    # no redo: every output shifted by out_bound - max_i y_i before the ADC (for a softmax)
    SHIFT = "shift"


class NoiseManagementType(enum.Enum):
    """How the input vector is scaled into the DAC range (one alpha per vector and tile)."""

    NONE = "none"
    ABS_MAX = "abs_max"
    MAX = "max"  # the signed maximum (a vector with no positive input gives 0)
    CONSTANT = "constant"
    AVERAGE_ABS_MAX = "average_abs_max"
    # max(abs-max, min(sum * nm_assumed_wmax / out_bound, abs-max * max_bm_res / dac_step)),
    # sum = max(sum of the positive, -sum of the negative inputs)
    ABS_MAX_NP_SUM = "abs_max_np_sum"


def coerce_enum(cls: type[E], value: object, field: str) -> E:
    """Return ``value`` as a member of ``cls``; a name or value string is accepted.

    Raises ``ValueError`` naming ``field`` and the allowed names for anything else.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        key = value.strip()
        for member in cls:
            if key.upper() == member.name or key.lower() == str(member.value).lower():
                return member
    if isinstance(value, enum.Enum) and value.name in cls.__members__:
        # An enum of the same name from another library (e.g. aihwkit's).
        return cls[value.name]
    names = ", ".join(m.name for m in cls)
    raise ValueError(f"{field}: {value!r} is not a {cls.__name__}; expected one of {names}")
