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


class NoiseManagementType(enum.Enum):
    """How the input vector is scaled into the DAC range (one alpha per vector and tile)."""

    NONE = "none"
    ABS_MAX = "abs_max"
    MAX = "max"
    CONSTANT = "constant"
    AVERAGE_ABS_MAX = "average_abs_max"


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
