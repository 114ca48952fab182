"""Studies over many chips: ``sweep`` (a metric per chip, drift time and config, on one process
or across ``torch.distributed`` ranks) and its ``SweepResult``."""

from .result import SweepResult, SweepStats, time_label
from .sweep import derive_seed, sweep

__all__ = ["SweepResult", "SweepStats", "derive_seed", "sweep", "time_label"]
