"""RPU configs: everything that describes one kind of analog tile."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ConfigBase, check_config
from .io import IOParameters
from .mapping import MappingParameter
from .noise import GlobalDriftCompensation, PCMLikeNoiseModel, PerColumnDriftCompensation


@dataclass
class InferenceRPUConfig(ConfigBase):
    """Analog inference tiles: noisy, quantized periphery, PCM-like programming and drift."""

    forward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the forward pass."""
    mapping: MappingParameter = field(default_factory=MappingParameter)
    """Tile sizes and weight scaling."""
    noise_model: PCMLikeNoiseModel | None = field(default_factory=PCMLikeNoiseModel)
    """Programming noise, drift and read noise; None: programming is exact."""
    drift_compensation: GlobalDriftCompensation | PerColumnDriftCompensation | None = field(
        default_factory=GlobalDriftCompensation)
    """How outputs are rescaled after drift; None: no compensation."""

    def __post_init__(self) -> None:
        check_config(self, "forward", IOParameters)
        check_config(self, "mapping", MappingParameter)
        check_config(self, "noise_model", PCMLikeNoiseModel, optional=True)
        check_config(self, "drift_compensation",
                     (GlobalDriftCompensation, PerColumnDriftCompensation), optional=True)


@dataclass
class FloatingPointRPUConfig(ConfigBase):
    """Ideal tiles: exact floating-point matrix products, still split into tiles by ``mapping``."""

    mapping: MappingParameter = field(default_factory=MappingParameter)
    """Tile sizes and weight scaling."""

    def __post_init__(self) -> None:
        check_config(self, "mapping", MappingParameter)

    @property
    def forward(self) -> IOParameters:
        """Ideal periphery (``is_perfect=True``)."""
        return IOParameters(is_perfect=True)

    @property
    def noise_model(self) -> None:
        """Ideal tiles are programmed exactly."""
        return None

    @property
    def drift_compensation(self) -> None:
        """Ideal tiles do not drift."""
        return None


RPUConfig = InferenceRPUConfig | FloatingPointRPUConfig
RPU_CONFIG_TYPES = (InferenceRPUConfig, FloatingPointRPUConfig)
