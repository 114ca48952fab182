"""analog-compiler: compile pretrained PyTorch models onto simulated analog crossbar tiles.

Everything a user needs is importable from here: the configs (dataclasses with aihwkit's names),
the analog layers, the one-call ``convert``, ``report``, the chip verbs (program / drift),
hardware-aware training helpers, and the way back out (``to_digital``, ``export_onnx``).
Importing the package also registers the ``torch.compile`` backend ``"analog"``.
"""

from .chip import analog_layers, drift_analog_weights, program_analog_weights
from .compiler import DEFAULT_LAYER_MAP, LayerPolicy, convert, convert_to_analog
from .export import export_onnx, to_digital
from .fsdp import analog_shard_placement, fully_shard_analog
from .nn import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogElmanRNN,
    AnalogExperts,
    AnalogGRU,
    AnalogGRUCell,
    AnalogLayerBase,
    AnalogLinear,
    AnalogLSTM,
    AnalogLSTMCell,
    AnalogLSTMCellCombinedWeight,
    AnalogRNN,
    AnalogSequential,
    AnalogTile,
    AnalogVanillaRNNCell,
    AnalogWrapper,
)
from .nn.attention import AnalogMultiheadAttention
from .optim import AnalogSGD
from .reporting import HardwareModel, TileReport, report
from .runtime import (
    AnalogCompilerError,
    BoundManagementType,
    CapacitorPresetDevice,
    ChoppedTransferCompound,
    ConductanceConverter,
    ConstantStepDevice,
    CustomDriftPCMLikeNoiseModel,
    CustomPairConductanceConverter,
    DigitalRankUpdateRPUConfig,
    DualPairConductanceConverter,
    DynamicTransferCompound,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    ExpStepDevice,
    FloatingPointRPUConfig,
    GlobalDriftCompensation,
    GokmenVlasovPresetDevice,
    HermesNoiseModel,
    IdealDevice,
    IdealizedPresetDevice,
    InferenceRPUConfig,
    InputRangeParameter,
    IOParameters,
    LinearStepDevice,
    MappingParameter,
    MixedPrecisionCompound,
    ModuleError,
    NoiseManagementType,
    NoiseModel,
    NPairConductanceConverter,
    OneSidedUnitCell,
    PCMLikeNoiseModel,
    PCMPresetDevice,
    PerColumnDriftCompensation,
    PiecewiseStepDevice,
    PowStepDevice,
    PrePostProcessingParameter,
    PulsedDevice,
    PulseType,
    ReRamCMONoiseModel,
    ReRamSBPresetDevice,
    ReRamWan2022NoiseModel,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
    SingleRPUConfig,
    SoftBoundsDevice,
    StateIndependentNoiseModel,
    TilePlan,
    TransferCompound,
    UnitCellRPUConfig,
    UpdateParameters,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightNoiseType,
    WeightRemapParameter,
    WeightRemapType,
    build_config,
)
from .studies import SweepResult, SweepStats, sweep
from .training import (
    StandardHWATrainingPreset,
    StandardIOParameters,
    attach_hwa_hooks,
    calibrate_input_ranges,
    post_update_step,
)

__version__ = "0.1.0"

__all__ = [
    # configs
    "InferenceRPUConfig", "FloatingPointRPUConfig", "IOParameters", "MappingParameter",
    "PCMLikeNoiseModel", "GlobalDriftCompensation", "PerColumnDriftCompensation",
    "WeightNoiseType", "BoundManagementType", "NoiseManagementType", "TilePlan",
    "WeightModifierParameter", "WeightModifierType", "WeightClipParameter", "WeightClipType",
    "WeightRemapParameter", "WeightRemapType", "PrePostProcessingParameter",
    "InputRangeParameter",
    # noise models and conductance converters (issue 11)
    "NoiseModel", "StateIndependentNoiseModel", "CustomDriftPCMLikeNoiseModel",
    "HermesNoiseModel", "ReRamWan2022NoiseModel", "ReRamCMONoiseModel", "ConductanceConverter",
    "SinglePairConductanceConverter", "DualPairConductanceConverter",
    "NPairConductanceConverter", "CustomPairConductanceConverter",
    "SingleDeviceConductanceConverter",
    # errors
    "AnalogCompilerError", "ModuleError",
    # layers
    "AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d",
    "AnalogMultiheadAttention", "AnalogTile", "AnalogExperts",
    # containers and recurrent layers
    "AnalogSequential", "AnalogWrapper", "AnalogRNN", "AnalogLSTMCell",
    "AnalogLSTMCellCombinedWeight", "AnalogGRUCell", "AnalogVanillaRNNCell", "AnalogLSTM",
    "AnalogGRU", "AnalogElmanRNN",
    # verbs
    "convert", "convert_to_analog", "DEFAULT_LAYER_MAP", "LayerPolicy", "report", "TileReport",
    "HardwareModel",
    "analog_layers", "program_analog_weights", "drift_analog_weights", "to_digital",
    "export_onnx",
    # studies
    "sweep", "SweepResult", "SweepStats",
    # hardware-aware training
    "StandardHWATrainingPreset", "StandardIOParameters", "attach_hwa_hooks",
    "calibrate_input_ranges", "post_update_step", "fully_shard_analog", "analog_shard_placement",
    # in-memory training (pulsed update on resistive devices)
    "SingleRPUConfig", "UpdateParameters", "PulseType", "PulsedDevice", "IdealDevice",
    "ConstantStepDevice", "LinearStepDevice", "SoftBoundsDevice", "ExpStepDevice",
    "PowStepDevice", "PiecewiseStepDevice", "MixedPrecisionCompound",
    "DigitalRankUpdateRPUConfig", "AnalogSGD",
    # unit cells, transfer compounds (Tiki-Taka, c-TTv2, AGAD), presets, build_config
    "UnitCellRPUConfig", "TransferCompound", "ChoppedTransferCompound",
    "DynamicTransferCompound", "OneSidedUnitCell", "build_config", "ReRamSBPresetDevice",
    "CapacitorPresetDevice", "EcRamPresetDevice", "EcRamMOPresetDevice",
    "IdealizedPresetDevice", "GokmenVlasovPresetDevice", "PCMPresetDevice",
]
