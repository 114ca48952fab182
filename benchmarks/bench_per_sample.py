"""The cost of ``WeightModifierParameter.per_batch_sample`` (issue 11): one HWA training step
(forward + backward) of a 512x512 layer with an ``ADD_NORMAL`` modifier (std 0.02), one draw
per batch vs one draw per sample, for inputs ``[32, 512]``, ``[8, 32, 512]`` (8 samples of 32
rows) and ``[128, 512]``. One process; the two cases run interleaved (``timing.paired``), the
times are medians, the ratio the median of the per-repetition ratios.

``python benchmarks/bench_per_sample.py [--reps 15] [--threads 1]``; with ``--aihwkit`` the same
measurement runs on aihwkit's torch tile (``TorchInferenceRPUConfig``, the only aihwkit tile
with ``per_batch_sample``), in an aihwkit environment:
``/work/aihwkit-venv/bin/python benchmarks/bench_per_sample.py --aihwkit``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import paired
from torch import nn

SHAPES = [(32, 512), (8, 32, 512), (128, 512)]


def ours(per_sample: bool) -> nn.Module:
    import analog_compiler as ac

    mod = ac.WeightModifierParameter(type="add_normal", std_dev=0.02,
                                     per_batch_sample=per_sample)
    return ac.AnalogLinear(512, 512, rpu_config=ac.InferenceRPUConfig(modifier=mod))


def aihwkit(per_sample: bool) -> nn.Module:
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import WeightModifierType

    rc = TorchInferenceRPUConfig()
    rc.modifier.type = WeightModifierType.ADD_NORMAL
    rc.modifier.std_dev = 0.02
    rc.modifier.per_batch_sample = per_sample
    return AnalogLinear(512, 512, rpu_config=rc)


def step_fn(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--aihwkit", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build = aihwkit if args.aihwkit else ours
    name = "aihwkit torch tile" if args.aihwkit else "analog-compiler"
    for shape in SHAPES:
        torch.manual_seed(0)
        x = torch.randn(*shape)
        one, per = build(False).train(), build(True).train()
        t1, ts, ratio = paired(step_fn(one, x), step_fn(per, x), args.reps, warmup=3)
        print(f"{name} x {list(shape)}: one draw {t1:.1f} ms, per sample {ts:.1f} ms, "
              f"ratio {ratio:.1f}")


if __name__ == "__main__":
    main()
