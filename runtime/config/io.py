"""IOParameters: the periphery of a tile (DAC, ADC, noise, noise and bound management)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ConfigBase, check_bool, check_number
from .enums import BoundManagementType, NoiseManagementType, WeightNoiseType, coerce_enum


def resolution_step(res: float, bound: float) -> float:
    """Quantizer step for a resolution field: ``0 < res < 1`` is a fraction of the full range
    ``2 * bound``, ``res >= 1`` a number of steps, ``res <= 0`` no quantization (returns 0)."""
    if res <= 0:
        return 0.0
    frac = 1.0 / res if res >= 1 else res
    return frac * 2.0 * bound


@dataclass
class IOParameters(ConfigBase):
    """Forward-pass periphery of an analog tile, with aihwkit's InferenceRPUConfig defaults."""

    is_perfect: bool = False
    """Ideal forward: ``y = W x`` with no quantization, noise or clipping."""
    inp_bound: float = 1.0
    """DAC input range is ``[-inp_bound, inp_bound]``; must be > 0."""
    inp_res: float = 1.0 / 126.0
    """DAC resolution: fraction of the range (< 1), number of steps (>= 1), or <= 0 for none."""
    inp_sto_round: bool = False
    """Stochastic rounding in the DAC."""
    inp_noise: float = 0.0
    """Std of Gaussian noise added to the DAC output (in DAC units)."""
    out_bound: float = 12.0
    """ADC output range ``[-out_bound, out_bound]``; <= 0 means no clipping."""
    out_res: float = 1.0 / 510.0
    """ADC resolution (same convention as ``inp_res``)."""
    out_sto_round: bool = False
    """Stochastic rounding in the ADC."""
    out_noise: float = 0.06
    """Std of additive Gaussian output noise, before the ADC."""
    w_noise: float = 0.0
    """Scale of the weight read noise (see ``w_noise_type``)."""
    w_noise_type: WeightNoiseType = WeightNoiseType.NONE
    """Kind of output-referred weight read noise."""
    bound_management: BoundManagementType = BoundManagementType.ITERATIVE
    """ITERATIVE: redo the vectors whose output clipped with the input halved."""
    max_bm_factor: float = 1000.0
    """Largest input reduction bound management may use."""
    max_bm_res: float = 0.25
    """Bound management stops once ``reduction * dac_step`` exceeds this."""
    noise_management: NoiseManagementType = NoiseManagementType.ABS_MAX
    """How each input vector is scaled into the DAC range."""
    nm_thres: float = 0.0
    """ABS_MAX: cap of the scale (0 = no cap); CONSTANT: the scale itself (must be > 0)."""

    def __post_init__(self) -> None:
        self.w_noise_type = coerce_enum(
            WeightNoiseType, self.w_noise_type, "IOParameters.w_noise_type")
        self.bound_management = coerce_enum(
            BoundManagementType, self.bound_management, "IOParameters.bound_management")
        self.noise_management = coerce_enum(
            NoiseManagementType, self.noise_management, "IOParameters.noise_management")
        for name in ("is_perfect", "inp_sto_round", "out_sto_round"):
            check_bool(self, name)
        check_number(self, "inp_bound", positive=True)
        check_number(self, "out_bound")
        for name in ("inp_res", "out_res"):
            check_number(self, name)
        for name in ("inp_noise", "out_noise", "w_noise", "nm_thres"):
            check_number(self, name, min_value=0.0)
        check_number(self, "max_bm_factor", min_value=1.0)
        check_number(self, "max_bm_res", positive=True)
        if self.noise_management is NoiseManagementType.MAX:
            # aihwkit's signed-max scaling has no kernel here; fail now, not deep in the forward.
            raise ValueError("IOParameters.noise_management=MAX is not supported; use ABS_MAX, "
                             "AVERAGE_ABS_MAX, CONSTANT or NONE")
        owner = self.__dict__.get("_perfect_owner")
        if owner and not self.is_perfect:
            raise ValueError(f"{owner}.is_perfect must stay True (ideal tiles); use "
                             "InferenceRPUConfig for a non-ideal periphery")
        if self.noise_management is NoiseManagementType.CONSTANT and self.nm_thres <= 0:
            raise ValueError("IOParameters.nm_thres must be > 0 with noise_management=CONSTANT "
                             f"(it is the constant input scale), got {self.nm_thres!r}")

    def require_perfect(self, owner: str) -> None:
        """From now on, refuse ``is_perfect = False`` with a ``ValueError`` naming ``owner`` (the
        config holding this periphery, e.g. ``FloatingPointRPUConfig.forward``)."""
        object.__setattr__(self, "_perfect_owner", owner)

    @property
    def inp_step(self) -> float:
        """DAC step in input units (0 = no quantization)."""
        return resolution_step(self.inp_res, self.inp_bound)

    @property
    def out_step(self) -> float:
        """ADC step in output units (0 = no quantization)."""
        return resolution_step(self.out_res, max(self.out_bound, 0.0) or 1.0)

    @property
    def max_bm_rounds(self) -> int:
        """How many times bound management may halve the input: ``red = 2**k`` is allowed while
        ``red <= max_bm_factor`` and ``red * inp_step <= max_bm_res``."""
        if self.bound_management is BoundManagementType.NONE or self.out_bound <= 0:
            return 0
        rounds, red = 0, 2.0
        step = self.inp_step
        while red <= self.max_bm_factor and (step <= 0 or red * step <= self.max_bm_res):
            rounds += 1
            red *= 2.0
        return rounds
