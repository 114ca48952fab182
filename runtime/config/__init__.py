"""Config dataclasses shared by the runtime and the compiler (re-exported by analog_compiler)."""

from .base import CONFIG_REGISTRY, ConfigBase
from .enums import BoundManagementType, NoiseManagementType, WeightNoiseType
from .io import IOParameters
from .mapping import MappingParameter
from .noise import GlobalDriftCompensation, PCMLikeNoiseModel, PerColumnDriftCompensation
from .rpu_config import RPU_CONFIG_TYPES, FloatingPointRPUConfig, InferenceRPUConfig, RPUConfig

__all__ = [
    "CONFIG_REGISTRY", "ConfigBase", "BoundManagementType", "NoiseManagementType",
    "WeightNoiseType", "IOParameters", "MappingParameter", "GlobalDriftCompensation",
    "PCMLikeNoiseModel", "PerColumnDriftCompensation", "RPU_CONFIG_TYPES",
    "FloatingPointRPUConfig", "InferenceRPUConfig", "RPUConfig",
]
