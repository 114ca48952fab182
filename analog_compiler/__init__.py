"""analog-compiler: compile pretrained PyTorch models onto simulated analog crossbar tiles."""

from .runtime import (
    AnalogCompilerError,
    BoundManagementType,
    FloatingPointRPUConfig,
    GlobalDriftCompensation,
    InferenceRPUConfig,
    IOParameters,
    MappingParameter,
    ModuleError,
    NoiseManagementType,
    PCMLikeNoiseModel,
    PerColumnDriftCompensation,
    TilePlan,
    WeightNoiseType,
)
from .runtime import (  # hardware-aware training configs
    InputRangeParameter,
    PrePostProcessingParameter,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightRemapParameter,
    WeightRemapType,
)

from .chip import analog_layers, drift_analog_weights, program_analog_weights
from .nn.attention import AnalogMultiheadAttention
from .compiler import DEFAULT_LAYER_MAP, LayerPolicy, convert, convert_to_analog
from .nn import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLayerBase, AnalogLinear, AnalogTile
from .training import (
    StandardHWATrainingPreset,
    StandardIOParameters,
    attach_hwa_hooks,
    calibrate_input_ranges,
    post_update_step,
)
from .reporting import TileReport, report
from .export import export_onnx, to_digital

__version__ = "0.1.0"
