"""RPU configs: everything that describes one kind of analog tile."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ConfigBase, check_config
from .compounds import DigitalRankUpdateRPUConfig
from .io import IOParameters
from .mapping import MappingParameter
from .noise import GlobalDriftCompensation, PCMLikeNoiseModel, PerColumnDriftCompensation
from .noise_base import NoiseModel
from .training import (
    PrePostProcessingParameter,
    WeightClipParameter,
    WeightModifierParameter,
    WeightRemapParameter,
)
from .transfer import UnitCellRPUConfig
from .update import SingleRPUConfig


@dataclass
class InferenceRPUConfig(ConfigBase):
    """Analog inference tiles: noisy, quantized periphery, PCM-like programming and drift."""

    forward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the forward pass."""
    mapping: MappingParameter = field(default_factory=MappingParameter)
    """Tile sizes and weight scaling."""
    noise_model: NoiseModel | None = field(default_factory=PCMLikeNoiseModel)
    """Programming noise, drift and read noise (any model of the family:
    ``PCMLikeNoiseModel``, ``HermesNoiseModel``, ``ReRamWan2022NoiseModel``, ...); None:
    programming is exact."""
    drift_compensation: GlobalDriftCompensation | PerColumnDriftCompensation | None = field(
        default_factory=GlobalDriftCompensation)
    """How outputs are rescaled after drift; None: no compensation."""
    # --- hardware-aware training (runtime/config/training.py); defaults change nothing
    modifier: WeightModifierParameter = field(default_factory=WeightModifierParameter)
    """Weight noise / quantization of the training forward (HWA training)."""
    clip: WeightClipParameter = field(default_factory=WeightClipParameter)
    """Weight clipping after each optimizer step (``attach_hwa_hooks``)."""
    remap: WeightRemapParameter = field(default_factory=WeightRemapParameter)
    """Weight remapping after each optimizer step (``attach_hwa_hooks``)."""
    pre_post: PrePostProcessingParameter = field(default_factory=PrePostProcessingParameter)
    """Digital pre/post processing: learned input ranges."""

    def __post_init__(self) -> None:
        check_config(self, "forward", IOParameters)
        check_config(self, "mapping", MappingParameter)
        check_config(self, "noise_model", NoiseModel, optional=True)
        check_config(self, "drift_compensation",
                     (GlobalDriftCompensation, PerColumnDriftCompensation), optional=True)
        check_config(self, "modifier", WeightModifierParameter)
        check_config(self, "clip", WeightClipParameter)
        check_config(self, "remap", WeightRemapParameter)
        check_config(self, "pre_post", PrePostProcessingParameter)


def perfect_io() -> IOParameters:
    """A perfect periphery (``is_perfect=True``): the forward of ideal tiles."""
    return IOParameters(is_perfect=True)


@dataclass
class FloatingPointRPUConfig(ConfigBase):
    """Ideal tiles: exact floating-point matrix products, still split into tiles by ``mapping``."""

    mapping: MappingParameter = field(default_factory=MappingParameter)
    """Tile sizes and weight scaling."""
    forward: IOParameters = field(default_factory=perfect_io)
    """Periphery of the forward pass: always perfect (``is_perfect=True``, so its other fields
    have no effect). One object, kept across accesses and JSON round trips; setting its
    ``is_perfect`` to False is a ``ValueError`` (use ``InferenceRPUConfig`` for a non-ideal
    periphery)."""

    def __post_init__(self) -> None:
        check_config(self, "mapping", MappingParameter)
        check_config(self, "forward", IOParameters)
        if not self.forward.is_perfect:
            raise ValueError("FloatingPointRPUConfig.forward must be perfect (is_perfect=True); "
                             "use InferenceRPUConfig for a non-ideal periphery")
        self.forward.require_perfect("FloatingPointRPUConfig.forward")

    @property
    def noise_model(self) -> None:
        """Ideal tiles are programmed exactly."""
        return None

    @property
    def drift_compensation(self) -> None:
        """Ideal tiles do not drift."""
        return None


#: Type of an RPU config argument (annotations).
RPUConfig = (InferenceRPUConfig | FloatingPointRPUConfig | SingleRPUConfig
             | DigitalRankUpdateRPUConfig | UnitCellRPUConfig)
#: The RPU config classes, for ``isinstance`` checks (the one definition; import it from here).
#: The last three are training tiles (``runtime.training_tile.TrainingTileArray``).
RPU_CONFIG_TYPES = (InferenceRPUConfig, FloatingPointRPUConfig, SingleRPUConfig,
                    DigitalRankUpdateRPUConfig, UnitCellRPUConfig)
