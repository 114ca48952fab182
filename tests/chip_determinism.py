"""The determinism check both chip kernels (``pcm_chip``, ``device_chip``) must pass: the same
chip whatever the thread count, on a layout whose sizes are not multiples of the kernels'
blocks, and float64 weights computed in float32 and returned in their own dtype."""

from __future__ import annotations

from collections.abc import Callable

import torch
from analog_compiler.runtime.tiling import TilePlan
from torch import Tensor


def assert_thread_count_and_dtype_independent(run: Callable[[Tensor, TilePlan], Tensor]) -> None:
    """``run(w, plan)`` programs and drifts one chip with fixed seeds and returns it."""
    w = torch.randn(3, 131, 517) * 0.1
    plan = TilePlan(3, (256, 261), (64, 67))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(w, plan)
        torch.set_num_threads(max(2, threads))
        many = run(w, plan)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    d = run(w.double(), plan)
    assert d.dtype == torch.float64
    torch.testing.assert_close(d.float(), one, rtol=1e-6, atol=1e-6)
