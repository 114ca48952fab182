"""The pulsed update of training tiles: ``PulseType``, ``UpdateParameters`` and
``SingleRPUConfig`` (aihwkit 1.2.0's names and defaults).

The update of ``W -= lr * d x^T`` is done by stochastic pulse trains: per input vector, every
input ``x_i`` fires a train of ``BL`` pulses with probability ``p_i = min(1, A |x_i|)`` each, every
error ``d_j`` one with ``q_j = min(1, B |d_j|)``; a coincidence of the two trains at cross-point
``(j, i)`` is one device pulse in direction ``-sign(x_i d_j)``. The expected change is
``dw_min * BL * A * B * |x_i d_j| = lr * |x_i d_j|`` with ``A = B = sqrt(lr / (dw_min * BL))``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .base import CONFIG_REGISTRY, ConfigBase, check_bool, check_config, check_int, check_number
from .devices import PULSED_DEVICE_TYPES, ConstantStepDevice, IdealDevice, PulsedDevice
from .enums import coerce_enum
from .io import IOParameters
from .mapping import MappingParameter


class PulseType(enum.Enum):
    """How the coincidences of the update are generated (aihwkit's names and values)."""

    NONE = "None"  # the floating-point update W -= lr d x^T, no pulses, no device
    STOCHASTIC_COMPRESSED = "StochasticCompressed"  # Bernoulli pulse trains, both signs at once
    STOCHASTIC = "Stochastic"  # the same statistics (aihwkit: two passes, CPU only)
    NONE_WITH_DEVICE = "NoneWithDevice"  # floating-point update, then the device's bounds
    MEAN_COUNT = "MeanCount"  # the expected (fractional) coincidence count BL p_i q_j
    DETERMINISTIC_IMPLICIT = "DeterministicImplicit"  # round(BL p_i q_j), p, q quantized


@dataclass
class UpdateParameters(ConfigBase):
    """Pulse-train generation of the update (aihwkit's ``UpdateParameters``)."""

    desired_bl: int = 31
    """Length ``BL`` of the pulse trains (the largest, with ``update_bl_management``)."""
    fixed_bl: bool = True
    """Keep ``BL = desired_bl``; False: when ``dw_min * desired_bl < lr`` use ``A = B = 1`` and
    ``BL = ceil(lr / dw_min)`` (longer trains for large learning rates)."""
    pulse_type: PulseType = PulseType.STOCHASTIC_COMPRESSED
    """How coincidences are generated (see ``PulseType``)."""
    res: float = 0.0
    """Resolution of the pulse probabilities: a bin width (< 1) or a number of steps (>= 1);
    0 or negative: none."""
    x_res_implicit: float = 0.0
    """DETERMINISTIC_IMPLICIT: resolution of the quantized ``p_i`` (0: none)."""
    d_res_implicit: float = 0.0
    """DETERMINISTIC_IMPLICIT: resolution of the quantized ``q_j`` (0: none)."""
    d_sparsity: bool = False
    """Kept for aihwkit compatibility (a statistic, not computed here)."""
    sto_round: bool = False
    """Stochastic rounding of the probability quantization (``res``)."""
    update_bl_management: bool = True
    """Per input vector: ``BL = min(ceil(lr * max|x| * max|d| / dw_min), desired_bl)`` and
    ``A = B = sqrt(lr / (dw_min * BL))``."""
    update_management: bool = True
    """Per input vector: ``A *= sqrt(gamma)``, ``B /= sqrt(gamma)`` with ``gamma = max|d| *
    um_grad_scale / max|x|``, so that the largest ``p`` and ``q`` are equal."""
    um_grad_scale: float = 1.0
    """The gradient scale ``alpha`` of ``update_management``."""

    def __post_init__(self) -> None:
        self.pulse_type = coerce_enum(PulseType, self.pulse_type, "UpdateParameters.pulse_type")
        check_int(self, "desired_bl", min_value=1)
        for name in ("fixed_bl", "d_sparsity", "sto_round", "update_bl_management",
                     "update_management"):
            check_bool(self, name)
        check_number(self, "res")
        for name in ("x_res_implicit", "d_res_implicit"):
            check_number(self, name, min_value=0.0)
        check_number(self, "um_grad_scale", positive=True)


@dataclass
class TrainingRPUConfigBase(ConfigBase):
    """The periphery, update and mapping fields every training-tile config shares."""

    forward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the forward pass."""
    backward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the backward pass (the forward of the transposed tile)."""
    update: UpdateParameters = field(default_factory=UpdateParameters)
    """Pulse trains of the update."""
    mapping: MappingParameter = field(default_factory=MappingParameter)
    """Tile sizes, weight scaling and learned output scales."""

    def _check_training_fields(self) -> None:
        check_config(self, "forward", IOParameters)
        check_config(self, "backward", IOParameters)
        check_config(self, "update", UpdateParameters)
        check_config(self, "mapping", MappingParameter)

    @property
    def noise_model(self) -> None:
        """Training tiles are not programmed with a noise model (the devices are the state)."""
        return None

    @property
    def drift_compensation(self) -> None:
        """Training tiles do not drift."""
        return None


CONFIG_REGISTRY.pop(TrainingRPUConfigBase.__name__, None)  # a shared base, not a config


@dataclass
class SingleRPUConfig(TrainingRPUConfigBase):
    """A training tile of one resistive device per cross-point: the forward and the backward
    run through their own periphery, the update is pulsed (aihwkit's ``SingleRPUConfig``).

    With weight scaling (``mapping.weight_scaling_omega > 0``) the devices hold the layer's
    weights divided by digital mapping scales, as in aihwkit (``runtime/training_tile.py``)."""

    device: IdealDevice | PulsedDevice = field(default_factory=ConstantStepDevice)
    """The resistive device (one of ``PULSED_DEVICE_TYPES``)."""

    def __post_init__(self) -> None:
        check_config(self, "device", PULSED_DEVICE_TYPES)
        self._check_training_fields()
