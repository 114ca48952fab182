"""``ac.sweep`` under ``torch.distributed``: 2 gloo processes over loopback split the chips and
return the same raw values as one process; a failure on one rank is an error on every rank
(no hang)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from dist_helpers import run_workers
from sweep_models import TIMES, analog_model, mse

import analog_compiler as ac

WORLD = 2
CHIPS = 5  # uneven: rank 0 measures chips 0, 2, 4 and rank 1 chips 1, 3


def _failing_on_rank_1(model):
    if dist.get_rank() == 1:
        raise ValueError("metric exploded")
    return 1.0


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank,
                            world_size=WORLD)
    try:
        res = ac.sweep(analog_model(), mse, TIMES, chips=CHIPS, seed=11, progress=False)
        Path(f"{tmp}/rank{rank}.json").write_text(res.to_json())
        lone = ac.sweep(analog_model(), mse, [0.0], chips=1, seed=11, progress=False)
        Path(f"{tmp}/lone{rank}.json").write_text(lone.to_json())  # rank 1 has no chip
        try:
            ac.sweep(analog_model(), _failing_on_rank_1, [0.0], chips=2, progress=False)
        except RuntimeError as exc:
            Path(f"{tmp}/error{rank}.txt").write_text(str(exc))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_one_process_values(tmp_path):
    run_workers(_worker, tmp_path, WORLD)
    single = ac.sweep(analog_model(), mse, TIMES, chips=CHIPS, seed=11, progress=False)
    for rank in range(WORLD):
        data = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert data["world_size"] == WORLD and single.world_size == 1
        data["world_size"] = 1
        assert data == json.loads(single.to_json())  # every raw value, bit for bit
        lone = ac.SweepResult.from_json((tmp_path / f"lone{rank}.json").read_text())
        for metric in ("mse", "max_err"):  # chip 0 at t = 0 is the same chip in every sweep
            assert lone.get(0.0, metric=metric).raw == single.get(0.0, metric=metric).raw[:1]
        message = (tmp_path / f"error{rank}.txt").read_text()
        assert message == "sweep failed on rank 1: ValueError: metric exploded"
