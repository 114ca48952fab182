"""Running a test's worker in several spawned gloo processes, with a time limit."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


def run_workers(worker: Callable[[int, str], None], tmp_path: Path, world: int = 2,
                timeout_s: float = 120.0) -> None:
    """Run ``worker(rank, str(tmp_path))`` in ``world`` spawned processes (the worker sets up
    its process group, e.g. gloo with ``file://{tmp}/store``); fail the test when they do not
    finish within ``timeout_s`` or one of them fails. Skips without ``torch.distributed``."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.start_processes(worker, args=(str(tmp_path),), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} workers did not finish within {timeout_s} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
