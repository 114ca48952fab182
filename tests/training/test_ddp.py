"""DistributedDataParallel: 2 gloo processes on the CPU train an HWA model for a few steps.

Each rank seeds torch differently (``torch.manual_seed(100 + rank)``) so its analog noise is
independent; DDP keeps parameters and buffers equal; the input-range initialisation from data is
averaged over the ranks; a checkpoint saved on rank 0 loads in a fresh, non-distributed process.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from dist_helpers import run_workers

import analog_compiler as ac

WORLD = 2
TIMEOUT_S = 120.0


def _config() -> ac.InferenceRPUConfig:
    ir = ac.InputRangeParameter(enable=True, init_from_data=2)
    return ac.StandardHWATrainingPreset(
        modifier=ac.WeightModifierParameter(type="ADD_NORMAL", std_dev=0.02),
        pre_post=ac.PrePostProcessingParameter(input_range=ir))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)  # identical initial weights on every rank
    return torch.nn.Sequential(ac.AnalogLinear(10, 8, rpu_config=_config()), torch.nn.ReLU(),
                               ac.AnalogLinear(8, 3, rpu_config=_config()))


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank,
                            world_size=WORLD)
    try:
        model = _model()
        torch.manual_seed(100 + rank)  # independent analog noise per rank
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.Adam(ddp.parameters(), lr=0.01)
        ac.attach_hwa_hooks(opt, ddp)
        for _ in range(3):
            x, y = 2 * torch.randn(16, 10), torch.randint(0, 3, (16,))  # rank-specific data
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()
                 if isinstance(v, torch.Tensor)}
        probe = torch.ones(4, 10)
        noisy = model(probe).detach()  # training mode: modifier + read/output noise
        torch.save({"state": state, "noisy": noisy}, f"{tmp}/rank{rank}.pt")
        if rank == 0:
            torch.save(model.state_dict(), f"{tmp}/checkpoint.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes(tmp_path: Path) -> None:
    run_workers(_worker, tmp_path, WORLD, TIMEOUT_S)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        torch.testing.assert_close(r1["state"][key], value, rtol=0, atol=0, msg=key)
    assert int(r0["state"]["0.analog_module.input_range_update_idx"]) == 2
    start = _model().state_dict()
    assert not torch.equal(r0["state"]["0.analog_module.weight"], start["0.analog_module.weight"])
    assert not torch.equal(r0["state"]["0.analog_module.input_range"],
                           start["0.analog_module.input_range"])
    assert not torch.allclose(r0["noisy"], r1["noisy"])  # each rank draws its own noise
    fresh = torch.nn.Sequential(ac.AnalogLinear(10, 8), torch.nn.ReLU(), ac.AnalogLinear(8, 3))
    fresh.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    for key, value in r0["state"].items():
        torch.testing.assert_close(fresh.state_dict()[key], value, msg=key)
    assert fresh[0].rpu_config == _config()
