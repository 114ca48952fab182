"""IOParameters: the periphery of a tile (DAC, ADC, noise, noise and bound management)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import ConfigBase, check_bool, check_number
from .enums import BoundManagementType, NoiseManagementType, WeightNoiseType, coerce_enum


def resolution_step(res: float, bound: float) -> float:
    """Quantizer step for a resolution field: ``0 < res < 1`` is a fraction of the full range
    ``2 * bound``, ``res >= 1`` a number of steps, ``res <= 0`` (or ``bound <= 0``) no
    quantization (returns 0). Computed as aihwkit's C++ does, in float32: the fraction
    ``float(res)`` (or ``1 / float(res)``) times ``float(2 * bound)``; at 9 bits and ``out_bound``
    12 that step is an ulp above 24 / 510, so the top ADC level lies just above the bound."""
    if res <= 0 or bound <= 0:
        return 0.0
    r = np.float32(res)
    frac = np.float32(1.0) / r if res > 1 else r  # (branch on the float: torch.compile traces it)
    return float(np.float32(frac * np.float32(2.0 * bound)))


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
    out_noise_std: float = 0.0
    """Systematic output-to-output variation of ``out_noise``, as a fraction of it: output
    (tile row) ``i`` gets the noise std ``|out_noise * (1 + out_noise_std * xi_i)|``, ``xi_i``
    drawn once per chip: from the layer's chip seed (``program_seed``; a new programming draws
    a new chip), so the same chip always has the same noisy columns."""
    w_noise: float = 0.0
    """Scale of the weight read noise (see ``w_noise_type``)."""
    w_noise_type: WeightNoiseType = WeightNoiseType.NONE
    """Kind of output-referred weight read noise."""
    ir_drop: float = 0.0
    """Scale of aihwkit's first-order IR drop along the inputs of a tile (0 = none): with
    ``a_i = n / ir_drop_g_ratio * sum_j |w_ij| |x_j|`` (``n`` the tile's inputs) and
    ``c_i = a_i (a_i (0.05 a_i - 0.2) + 0.5)``, ``y_i -= ir_drop * c_i * sum_j w_ij x_j
    (1 - (1 - j / n)^2)``; deterministic, before the read and output noise."""
    ir_drop_g_ratio: float = 1.0 / 0.35 / 5e-6
    """Ratio of the wire conductance between two cells to a device's maximal conductance
    (aihwkit's default: 0.35 Ohm wires, 5 uS devices)."""
    bound_management: BoundManagementType = BoundManagementType.ITERATIVE
    """ITERATIVE: redo the vectors whose output clipped with the input halved."""
    max_bm_factor: float = 1000.0
    """Bound management stops after the round whose input reduction first exceeds this."""
    max_bm_res: float = 0.25
    """Bound management stops after the round whose ``reduction * dac_step`` first exceeds
    this."""
    bm_test_negative_bound: bool = True
    """Whether an output below ``-out_bound`` also triggers bound management (one above
    ``out_bound`` always does; an output exactly at the bound does not)."""
    noise_management: NoiseManagementType = NoiseManagementType.ABS_MAX
    """How each input vector is scaled into the DAC range."""
    nm_thres: float = 0.0
    """ABS_MAX, MAX, ABS_MAX_NP_SUM: cap of the (abs-)max (0 = no cap); CONSTANT: the scale
    itself (must be > 0)."""
    nm_assumed_wmax: float = 0.6
    """ABS_MAX_NP_SUM (and the second round of ITERATIVE_WORST_CASE): the assumed largest
    weight (aihwkit's C++ ``IOMetaParameter.nm_assumed_wmax``)."""

    def __post_init__(self) -> None:
        self.w_noise_type = coerce_enum(
            WeightNoiseType, self.w_noise_type, "IOParameters.w_noise_type")
        self.bound_management = coerce_enum(
            BoundManagementType, self.bound_management, "IOParameters.bound_management")
        self.noise_management = coerce_enum(
            NoiseManagementType, self.noise_management, "IOParameters.noise_management")
        for name in ("is_perfect", "inp_sto_round", "out_sto_round", "bm_test_negative_bound"):
            check_bool(self, name)
        check_number(self, "inp_bound", positive=True)
        check_number(self, "out_bound")
        for name in ("inp_res", "out_res"):
            check_number(self, name)
        for name in ("inp_noise", "out_noise", "out_noise_std", "w_noise", "nm_thres",
                     "ir_drop"):
            check_number(self, name, min_value=0.0)
        check_number(self, "max_bm_factor", min_value=1.0)
        for name in ("max_bm_res", "ir_drop_g_ratio", "nm_assumed_wmax"):
            check_number(self, name, positive=True)
        if self.bound_management is BoundManagementType.SHIFT and self.out_bound <= 0 \
                and not self.is_perfect:
            raise ValueError("IOParameters.bound_management=SHIFT shifts the largest output to "
                             f"out_bound: out_bound must be > 0, got {self.out_bound!r}")
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
        """ADC step in output units (0 = no quantization; as in aihwkit, also when
        ``out_bound <= 0``: the ADC has no range to divide)."""
        return resolution_step(self.out_res, self.out_bound)

    @property
    def max_bm_rounds(self) -> int:
        """How many times bound management may halve the input, as aihwkit's C++ loop counts:
        the round with reduction ``red`` (1, 2, 4, ...) is the last one when ``red`` exceeds
        ``max_bm_factor`` or ``max_bm_res / inp_step``; so the last reduction is the first power
        of two that *exceeds* a limit (7-bit DAC: 16; ``max_bm_factor=1000``: 1024)."""
        if self.bound_management in (BoundManagementType.NONE, BoundManagementType.SHIFT) \
                or self.out_bound <= 0:
            return 0
        step = self.inp_step
        # aihwkit compares in float32: (int)red > max_bm_factor || red > max_bm_res / inp_res.
        res_limit = float(np.float32(self.max_bm_res) / np.float32(step)) if step > 0 \
            else math.inf
        rounds, red = 0, 1.0
        while not (red > self.max_bm_factor or red > res_limit):
            rounds += 1
            red *= 2.0
        return rounds
