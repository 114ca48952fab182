"""Hardware-aware (HWA) training knobs, with aihwkit's names and defaults.

- ``WeightModifierParameter``: noise / quantization applied to the weights in the training
  forward (the clean weights get the update).
- ``WeightClipParameter`` and ``WeightRemapParameter``: applied to the tile weights after every
  optimizer step (see ``analog_compiler.training.attach_hwa_hooks``).
- ``PrePostProcessingParameter.input_range``: a learned, static input range per tile that
  replaces dynamic noise management (``InputRangeParameter``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from .base import CONFIG_REGISTRY, ConfigBase, check_bool, check_config, check_int, check_number
from .enums import coerce_enum


class _KindConfig(ConfigBase):
    """Configs with aihwkit's field name ``type``: that name is the class tag of ``to_dict``, so
    the field is stored under the JSON key ``"kind"``."""

    json_keys: ClassVar[dict[str, str]] = {"type": "kind"}


CONFIG_REGISTRY.pop(_KindConfig.__name__, None)  # a mixin, not a config


class WeightModifierType(enum.Enum):
    """How the training forward modifies the weights (``amax`` = max|W| of the tile, or
    ``assumed_wmax``; ``xi`` standard normal, fresh at every forward)."""

    NONE = "none"
    DISCRETIZE = "discretize"  # w = amax * round(w / amax / res) * res
    ADD_NORMAL = "add_normal"  # w += std_dev * amax * xi
    MULT_NORMAL = "mult_normal"  # w += w * std_dev * amax * xi
    DISCRETIZE_ADD_NORMAL = "discretize_add_normal"  # DISCRETIZE, then ADD_NORMAL
    POLY = "poly"  # w += amax * std_dev * (c0 + c1 |w|/amax + c2 (|w|/amax)^2) * xi
    PROG_NOISE = "prog_noise"  # w = sign(w) |w + amax * std_dev / g_max * poly(|w|/amax) * xi|
    DOREFA = "dorefa"  # w = round(tanh(w) * dorefa_clip / tanh(amax) / res) * res
    PCM_NOISE = "pcm_noise"  # PCM programming, drift variation and 1/f read noise (modifiers.py)
    DROP_CONNECT = "drop_connect"  # only the drop connect of ``pdrop``
    COPY = "copy"  # aihwkit's legacy name of DROP_CONNECT: no modification but ``pdrop``


class WeightClipType(enum.Enum):
    """How the tile weights are clipped after each optimizer step."""

    NONE = "none"
    FIXED_VALUE = "fixed_value"  # to +-fixed_value
    LAYER_GAUSSIAN = "layer_gaussian"  # to +-sigma * std(W) (capped at fixed_value if > 0)
    AVERAGE_CHANNEL_MAX = "average_channel_max"  # to +-mean over rows of max|W_row|


class WeightRemapType(enum.Enum):
    """How the tile weights are re-scaled after each optimizer step (the digital output scales
    take the inverse factor, so the layer's function is unchanged)."""

    NONE = "none"
    LAYERWISE_SYMMETRIC = "layerwise_symmetric"  # max|W| of each tile -> remapped_wmax
    CHANNELWISE_SYMMETRIC = "channelwise_symmetric"  # max|W| of each tile row -> remapped_wmax


@dataclass
class WeightModifierParameter(_KindConfig):
    """Weight noise injection / quantization of the training forward (aihwkit's fields)."""

    type: WeightModifierType = WeightModifierType.NONE
    """Kind of modification; NONE switches the modifier (and drop connect) off."""
    std_dev: float = 0.0
    """Noise std, relative to ``amax`` (ADD_NORMAL, MULT_NORMAL, DISCRETIZE_ADD_NORMAL, POLY,
    PROG_NOISE); PCM_NOISE: the scale of its programming and 1/f noise (1: the PCM model's)."""
    per_batch_sample: bool = False
    """Draw a different modified weight for every sample of the batch (the leading dimension of
    the layer's input; a sequence or the patches of an image share their sample's weights)."""
    res: float = 0.0
    """Discretization resolution (DISCRETIZE, DISCRETIZE_ADD_NORMAL, DOREFA): a step (< 1) or a
    number of steps (>= 1); the step is a fraction of ``amax`` (DOREFA: an absolute step)."""
    sto_round: bool = False
    """Stochastic rounding in the discretization."""
    dorefa_clip: float = 0.6
    """DOREFA: the largest weight magnitude after the ``tanh`` mapping (``amax`` maps to it)."""
    pdrop: float = 0.0
    """Drop-connect probability (weights set to 0), combined with any type but NONE."""
    enable_during_test: bool = False
    """Also modify the weights in eval mode (only while the layer is not programmed)."""
    rel_to_actual_wmax: bool = True
    """``amax`` is the actual max|W| of each tile (True) or ``assumed_wmax`` (False)."""
    assumed_wmax: float = 1.0
    """``amax`` when ``rel_to_actual_wmax`` is False."""
    coeffs: tuple[float, ...] = (0.0105392, 0.0768, -0.046925)
    """Polynomial coefficients in ``|w|/amax`` of POLY and PROG_NOISE (for PROG_NOISE use the
    PCM programming polynomial, e.g. ``PCMLikeNoiseModel().prog_coeff``, and ``std_dev=1``)."""
    g_max: float = 25.0
    """PROG_NOISE and PCM_NOISE: conductance (uS) that ``amax`` maps to; the noise is in uS."""
    pcm_zero_thres: float = 0.0
    """PCM_NOISE: conductances below ``pcm_zero_thres * std_dev * 0.26348`` uS (the programming
    noise at zero) are not programmed (weight 0)."""
    pcm_t_inference: float = 0.0
    """PCM_NOISE: seconds after programming for the drift variation (mean drift excluded)."""
    pcm_prob_at_reset: float = 0.0
    """PCM_NOISE: probability that a device is stuck at reset (weight 0)."""
    pcm_prob_at_gmax: float = 0.0
    """PCM_NOISE: probability that a device of the pair is stuck at ``g_max``."""
    pcm_prob_at_random: float = 0.0
    """PCM_NOISE: probability that a device is at a random conductance in ``[0, g_max]``."""
    pcm_t0: float = 20.0
    """PCM_NOISE: programming time constant ``t0`` (seconds) of the drift and the 1/f noise."""

    def __post_init__(self) -> None:
        self.type = coerce_enum(WeightModifierType, self.type, "WeightModifierParameter.type")
        if isinstance(self.coeffs, list):
            self.coeffs = tuple(self.coeffs)
        if not isinstance(self.coeffs, tuple) or not self.coeffs:
            raise ValueError("WeightModifierParameter.coeffs must be a non-empty sequence of "
                             f"numbers, got {self.coeffs!r}")
        for name in ("sto_round", "enable_during_test", "rel_to_actual_wmax"):
            check_bool(self, name)
        for name in ("std_dev", "res"):
            check_number(self, name, min_value=0.0)
        check_bool(self, "per_batch_sample")
        for name in ("pdrop", "pcm_prob_at_reset", "pcm_prob_at_gmax", "pcm_prob_at_random"):
            check_number(self, name, min_value=0.0)
            if getattr(self, name) > 1.0 or (name == "pdrop" and self.pdrop >= 1.0):
                bound = "< 1" if name == "pdrop" else "<= 1"
                raise ValueError(f"WeightModifierParameter.{name} must be {bound}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("pcm_zero_thres", "pcm_t_inference"):
            check_number(self, name, min_value=0.0)
        for name in ("assumed_wmax", "g_max", "dorefa_clip", "pcm_t0"):
            check_number(self, name, positive=True)
        for c in self.coeffs:
            if isinstance(c, bool) or not isinstance(c, (int, float)):
                raise ValueError(f"WeightModifierParameter.coeffs must be numbers, got {c!r}")

    @property
    def enabled(self) -> bool:
        """Whether the modifier changes the weights at all (COPY only with ``pdrop``)."""
        if self.type is WeightModifierType.COPY:
            return self.pdrop > 0
        return self.type is not WeightModifierType.NONE


@dataclass
class WeightClipParameter(_KindConfig):
    """Clipping of the tile weights after each optimizer step (aihwkit's fields)."""

    type: WeightClipType = WeightClipType.NONE
    """Kind of clipping; NONE switches it off."""
    fixed_value: float = -1.0
    """FIXED_VALUE: the clip value (must be > 0); other types: an upper cap when > 0."""
    sigma: float = 2.5
    """LAYER_GAUSSIAN: clip at ``sigma * std(W)``."""

    def __post_init__(self) -> None:
        self.type = coerce_enum(WeightClipType, self.type, "WeightClipParameter.type")
        check_number(self, "fixed_value")
        check_number(self, "sigma", positive=True)
        if self.type is WeightClipType.FIXED_VALUE and self.fixed_value <= 0:
            raise ValueError("WeightClipParameter.fixed_value must be > 0 with type=FIXED_VALUE, "
                             f"got {self.fixed_value!r}")


@dataclass
class WeightRemapParameter(_KindConfig):
    """Re-scaling of the tile weights after each optimizer step (aihwkit's fields)."""

    type: WeightRemapType = WeightRemapType.NONE
    """Kind of remapping; NONE switches it off."""
    remapped_wmax: float = 1.0
    """The max|W| (per tile or per tile row) after remapping."""
    max_scale_range: float = 0.0
    """CHANNELWISE_SYMMETRIC: the largest ratio of a row's scale to the smallest scale of its
    tile before the remap (rows above keep weights above ``remapped_wmax``); 0: no bound.
    Needs ``remapped_wmax=1`` (as aihwkit's remapper)."""
    max_scale_ref: float = 0.0
    """With ``max_scale_range``: a floor of the reference (smallest) scale; 0: none."""

    def __post_init__(self) -> None:
        self.type = coerce_enum(WeightRemapType, self.type, "WeightRemapParameter.type")
        check_number(self, "remapped_wmax", positive=True)
        check_number(self, "max_scale_range", min_value=0.0)
        check_number(self, "max_scale_ref", min_value=0.0)
        if self.max_scale_range > 0 and self.remapped_wmax != 1.0:
            raise ValueError("WeightRemapParameter.max_scale_range > 0 needs remapped_wmax=1 "
                             f"(aihwkit's remapper), got remapped_wmax={self.remapped_wmax!r}")


@dataclass
class InputRangeParameter(ConfigBase):
    """A static input range per tile: inputs are clipped to ``[-r, r]`` and divided by ``r``
    into the DAC; outputs are multiplied by ``r`` (aihwkit's fields and defaults)."""

    enable: bool = False
    """Use input ranges (a learnable ``input_range`` parameter per tile input split)."""
    learn_input_range: bool = True
    """Train the ranges (else they are fixed, e.g. set by ``calibrate_input_ranges``)."""
    init_value: float = 3.0
    """Initial range."""
    init_from_data: int = 100
    """Training batches whose inputs initialise the range (running mean of
    ``init_std_alpha * std(x)``); 0: keep ``init_value``."""
    init_std_alpha: float = 3.0
    """Multiple of the input std used by ``init_from_data``."""
    decay: float = 0.001
    """Range decay: ``grad += decay * r`` while enough inputs are inside the range."""
    input_min_percentage: float = 0.95
    """The decay applies only while this fraction of the inputs is not clipped."""
    manage_output_clipping: bool = False
    """Grow the range while outputs clip: ``grad -= (1 - p) * r`` while the fraction ``p`` of
    the outputs of the split's tiles that are not at ``forward.out_bound`` is below
    ``output_min_percentage``. Needs an ``out_bound`` and noise and bound management NONE."""
    output_min_percentage: float = 0.95
    """``manage_output_clipping`` acts only while fewer outputs than this fraction are
    unclipped."""
    gradient_scale: float = 1.0
    """Multiplier of the range's clipping gradient."""
    gradient_relative: bool = True
    """Multiply the range's clipping gradient by the range itself."""
    calibration_info: str | None = None
    """Set by ``calibrate_input_ranges`` (how the ranges were calibrated)."""

    def __post_init__(self) -> None:
        for name in ("enable", "learn_input_range", "manage_output_clipping",
                     "gradient_relative"):
            check_bool(self, name)
        check_number(self, "init_value", positive=True)
        check_int(self, "init_from_data", min_value=0)
        check_number(self, "init_std_alpha", positive=True)
        check_number(self, "decay", min_value=0.0)
        check_number(self, "gradient_scale", min_value=0.0)
        for name in ("input_min_percentage", "output_min_percentage"):
            check_number(self, name, min_value=0.0)
            if getattr(self, name) > 1.0:
                raise ValueError(f"InputRangeParameter.{name} must be in [0, 1], "
                                 f"got {getattr(self, name)!r}")
        if self.calibration_info is not None and not isinstance(self.calibration_info, str):
            raise ValueError("InputRangeParameter.calibration_info must be a string or None, "
                             f"got {self.calibration_info!r}")


@dataclass
class PrePostProcessingParameter(ConfigBase):
    """Digital processing before and after the tiles."""

    input_range: InputRangeParameter = field(default_factory=InputRangeParameter)
    """Learned input ranges."""

    def __post_init__(self) -> None:
        check_config(self, "input_range", InputRangeParameter)
