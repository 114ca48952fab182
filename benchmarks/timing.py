"""Interleaved timing of a digital and an analog callable, shared by the benchmark scripts (no
analog_compiler import: bench_training.py's aihwkit mode runs where it is not installed)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def paired(digital: Callable[[], object], analog: Callable[[], object], reps: int,
           warmup: int) -> tuple[float, float, float]:
    """Median digital time, median analog time (ms), median of the per-run ratios."""
    for _ in range(warmup):
        digital()
        analog()
    td, ta = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        digital()
        t1 = time.perf_counter()
        analog()
        t2 = time.perf_counter()
        td.append(t1 - t0)
        ta.append(t2 - t1)
    ratio = statistics.median(a / d for a, d in zip(ta, td))
    return statistics.median(td) * 1e3, statistics.median(ta) * 1e3, ratio
