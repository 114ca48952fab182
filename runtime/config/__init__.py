"""Config dataclasses shared by the runtime and the compiler (re-exported by analog_compiler)."""

from .base import CONFIG_REGISTRY, ConfigBase
from .compounds import DigitalRankUpdateRPUConfig, MixedPrecisionCompound
from .converters import (
    ConductanceConverter,
    CustomPairConductanceConverter,
    DualPairConductanceConverter,
    NPairConductanceConverter,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from .devices import (
    PULSED_DEVICE_TYPES,
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PiecewiseStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
)
from .enums import BoundManagementType, NoiseManagementType, WeightNoiseType
from .io import IOParameters
from .mapping import MappingParameter
from .noise import GlobalDriftCompensation, PCMLikeNoiseModel, PerColumnDriftCompensation
from .noise_base import NoiseModel
from .noise_pcm import CustomDriftPCMLikeNoiseModel, HermesNoiseModel, StateIndependentNoiseModel
from .noise_reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel
from .presets import (
    PRESET_DEVICES,
    CapacitorPresetDevice,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    GokmenVlasovPresetDevice,
    IdealizedPresetDevice,
    PCMPresetDevice,
    ReRamSBPresetDevice,
    build_config,
)
from .rpu_config import RPU_CONFIG_TYPES, FloatingPointRPUConfig, InferenceRPUConfig, RPUConfig
from .training import (
    InputRangeParameter,
    PrePostProcessingParameter,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightRemapParameter,
    WeightRemapType,
)
from .transfer import (
    UNIT_CELL_TYPES,
    ChoppedTransferCompound,
    DynamicTransferCompound,
    OneSidedUnitCell,
    TransferCompound,
    UnitCellRPUConfig,
)
from .update import PulseType, SingleRPUConfig, UpdateParameters

__all__ = [
    "CONFIG_REGISTRY", "ConfigBase", "BoundManagementType", "NoiseManagementType",
    "WeightNoiseType", "IOParameters", "MappingParameter", "GlobalDriftCompensation",
    "PCMLikeNoiseModel", "PerColumnDriftCompensation", "RPU_CONFIG_TYPES",
    "FloatingPointRPUConfig", "InferenceRPUConfig", "RPUConfig",
    # hardware-aware training
    "InputRangeParameter", "PrePostProcessingParameter", "WeightClipParameter", "WeightClipType",
    "WeightModifierParameter", "WeightModifierType", "WeightRemapParameter", "WeightRemapType",
    # the noise-model family and the conductance converters (issue 11)
    "NoiseModel", "StateIndependentNoiseModel", "CustomDriftPCMLikeNoiseModel",
    "HermesNoiseModel", "ReRamWan2022NoiseModel", "ReRamCMONoiseModel", "ConductanceConverter",
    "SinglePairConductanceConverter", "DualPairConductanceConverter",
    "NPairConductanceConverter", "CustomPairConductanceConverter",
    "SingleDeviceConductanceConverter",
    # in-memory training (pulsed update)
    "PULSED_DEVICE_TYPES", "PulsedDevice", "IdealDevice", "ConstantStepDevice",
    "LinearStepDevice", "SoftBoundsDevice", "ExpStepDevice", "PowStepDevice",
    "PiecewiseStepDevice", "PulseType", "UpdateParameters", "SingleRPUConfig",
    "MixedPrecisionCompound", "DigitalRankUpdateRPUConfig",
    # unit cells, transfer compounds, presets (issue 12)
    "UNIT_CELL_TYPES", "UnitCellRPUConfig", "TransferCompound", "ChoppedTransferCompound",
    "DynamicTransferCompound", "OneSidedUnitCell", "build_config", "PRESET_DEVICES",
    "ReRamSBPresetDevice", "CapacitorPresetDevice", "EcRamPresetDevice", "EcRamMOPresetDevice",
    "IdealizedPresetDevice", "GokmenVlasovPresetDevice", "PCMPresetDevice",
]
