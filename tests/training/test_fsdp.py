"""FSDP2 (``fully_shard``) on converted models: 2 gloo processes on the CPU train an HWA model
for a few steps; the result equals one process training on both ranks' data (gradients are
averaged either way); tile weights, biases, learned output scales and input ranges are sharded;
clip/remap run after every step; a full checkpoint gathered on rank 0 loads in a plain process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from dist_helpers import run_workers

import analog_compiler as ac

WORLD = 2
STEPS = 3
pytest.importorskip("torch.distributed.fsdp")


def _config() -> ac.InferenceRPUConfig:
    """HWA preset (clip at 1.0, channel-wise remap, learned output scales and input ranges)
    with the noise off, so that two ranks and one process can be compared exactly."""
    rc = ac.StandardHWATrainingPreset(
        modifier=ac.WeightModifierParameter(type="NONE"),
        pre_post=ac.PrePostProcessingParameter(
            input_range=ac.InputRangeParameter(enable=True, init_value=2.0, init_from_data=0)))
    rc.forward.is_perfect = True
    return rc


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    digital = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(),
                                  torch.nn.Linear(8, 3))
    with torch.no_grad():
        digital[0].weight.mul_(4.0)  # beyond the clip value: clip/remap must act
    return ac.convert(digital, _config())


def _batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * step + rank)
    return 2 * torch.randn(16, 10, generator=gen), torch.randint(0, 3, (16,), generator=gen)


def _train(model: torch.nn.Module, ranks: list[int]) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ac.attach_hwa_hooks(opt, model)
    for step in range(STEPS):
        batches = [_batch(step, r) for r in ranks]
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _worker(rank: int, tmp: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank,
                            world_size=WORLD)
    try:
        model = ac.fully_shard_analog(_model())
        local = {n: (type(p).__name__, tuple(p.to_local().shape))
                 for n, p in model.named_parameters() if isinstance(p, DTensor)}
        _train(model, [rank])
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                    cpu_offload=True))
        if rank == 0:
            torch.save(full, f"{tmp}/checkpoint.pt")
        torch.save(local, f"{tmp}/shards{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_fsdp2_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    run_workers(_worker, tmp_path, WORLD)
    shards = [torch.load(tmp_path / f"shards{r}.pt") for r in range(WORLD)]
    # every parameter is sharded; tile weights [1, out, in] along their output rows, or their
    # inputs when the rows do not split evenly (3 rows on 2 ranks)
    assert shards[0]["0.analog_module.weight"] == ("DTensor", (1, 4, 10))
    assert shards[1]["2.analog_module.weight"] == ("DTensor", (1, 3, 4))
    assert shards[1]["0.analog_module.out_scaling_alpha"] == ("DTensor", (4,))
    assert {"0.analog_module.bias", "0.analog_module.input_range"} <= shards[0].keys()

    reference = _model()
    _train(reference, list(range(WORLD)))  # one process, both ranks' batches
    start = _model().state_dict()
    fresh = ac.convert(torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(),
                                           torch.nn.Linear(8, 3)), _config())
    fresh.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    trained = fresh.state_dict()
    for key, value in reference.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(trained[key], value, rtol=1e-5, atol=1e-6, msg=key)
    for key in ("0.analog_module.weight", "0.analog_module.out_scaling_alpha",
                "0.analog_module.input_range", "2.analog_module.bias"):
        assert not torch.equal(trained[key], start[key]), key  # they trained
    # channel-wise remap after every step: each tile row's max |w| is remapped_wmax = 1
    rows = trained["0.analog_module.weight"].abs().amax(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))
    x = _batch(0, 0)[0]
    torch.testing.assert_close(fresh.eval()(x), reference.eval()(x), rtol=1e-5, atol=1e-5)
