"""Compound training tiles (aihwkit 1.2.0's names and defaults): the mixed-precision update.

``DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=...))``: the outer product of
the update is accumulated digitally in a floating-point matrix ``chi`` (Nandakumar et al.,
Front. Neurosci. 2020); every ``transfer_every`` updates, rows of ``chi`` are written to the
analog devices as ``n = round(transfer_lr * chi / eps)`` pulses (``eps`` = ``granularity``, or
the device's ``weight_granularity``), and ``chi -= n * eps / transfer_lr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ConfigBase, check_bool, check_config, check_int, check_number
from .devices import ConstantStepDevice, PulsedDevice
from .update import TrainingRPUConfigBase


@dataclass
class MixedPrecisionCompound(ConfigBase):
    """One analog device per cross-point with a digital rank-update matrix ``chi``."""

    device: PulsedDevice = field(default_factory=ConstantStepDevice)
    """The analog device that ``chi`` is transferred to (a pulsed device)."""
    construction_seed: int = 0
    """Kept for aihwkit compatibility (the device's own ``construction_seed`` seeds it)."""
    transfer_every: int = 1
    """Transfer after every ``transfer_every`` update calls (batches)."""
    n_rows_per_transfer: int = -1
    """Consecutive rows of ``chi`` written per transfer (cycling through the rows); -1: all."""
    random_row: bool = False
    """Start each transfer at a random row instead of the next one."""
    granularity: float = 0.0
    """The step ``eps`` that one pulse stands for; 0: the device's ``weight_granularity``
    (``dw_min`` for most models, as aihwkit's ``getWeightGranularity``)."""
    transfer_lr: float = 1.0
    """Scale of the transfer onto the devices."""
    n_x_bins: int = 0
    """Quantize each input vector to this many levels per sign of its max|x| (0: none)."""
    n_d_bins: int = 0
    """Quantize each error vector likewise (0: none)."""
    stoc_round_x: bool = True
    """Stochastic rounding of the input quantization."""
    stoc_round_d: bool = True
    """Stochastic rounding of the error quantization."""

    def __post_init__(self) -> None:
        check_config(self, "device", PulsedDevice)
        check_int(self, "construction_seed", min_value=0)
        check_int(self, "transfer_every", min_value=1)
        check_int(self, "n_rows_per_transfer", min_value=-1)
        if self.n_rows_per_transfer == 0:
            raise ValueError("MixedPrecisionCompound.n_rows_per_transfer must be -1 (all rows) "
                             "or >= 1, got 0")
        check_number(self, "granularity", min_value=0.0)
        check_number(self, "transfer_lr", positive=True)
        check_int(self, "n_x_bins", min_value=0)
        check_int(self, "n_d_bins", min_value=0)
        for name in ("random_row", "stoc_round_x", "stoc_round_d"):
            check_bool(self, name)

    @property
    def eps(self) -> float:
        """The granularity in use: ``granularity`` or the device's ``weight_granularity``."""
        return self.granularity if self.granularity > 0 else self.device.weight_granularity


@dataclass
class DigitalRankUpdateRPUConfig(TrainingRPUConfigBase):
    """A training tile whose update is a digital rank update transferred to analog devices
    (aihwkit's ``DigitalRankUpdateRPUConfig``); ``update`` is kept for aihwkit compatibility
    (the transfer pulses are deterministic counts)."""

    device: MixedPrecisionCompound = field(default_factory=MixedPrecisionCompound)
    """The compound (``MixedPrecisionCompound``)."""

    def __post_init__(self) -> None:
        check_config(self, "device", MixedPrecisionCompound)
        self._check_training_fields()
