"""One in-memory training step vs the digital step (issue 12's speed rows).

A 512x512 layer, batch 64, MSE loss: forward + backward + optimizer step. The digital step is
``nn.Linear`` + ``torch.optim.SGD``; the analog steps are ``AnalogLinear`` with a
``SingleRPUConfig`` (or ``build_config("c-ttv2", SoftBoundsDevice())``: c-TTv2, two device arrays
per weight, 64 transfers per batch) + ``AnalogSGD`` (default periphery, pulsed update). One
process; every case runs interleaved with the digital step, ``--reps`` times after ``--warmup``
runs; the ratio is the median of the per-repetition ratios, the times are medians.

``python benchmarks/bench_training.py [--reps 21] [--threads N]``; with ``--aihwkit`` the same
measurement runs on aihwkit's own layers (only aihwkit and torch are imported, so it runs in an
aihwkit environment: ``<aihwkit venv>/bin/python benchmarks/bench_training.py --aihwkit``).
The README's rows run both in the same minutes, ``--threads 1``, and give the machine's load.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import paired
from torch import nn


def step_fn(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
            y: torch.Tensor) -> Callable[[], None]:
    """One forward + backward + optimizer step."""
    def step() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return step


def cases_analog_compiler(size: int) -> dict[str, tuple[nn.Module, type]]:
    import analog_compiler as ac

    def layer(rc: ac.SingleRPUConfig) -> nn.Module:
        return ac.AnalogLinear(size, size, rpu_config=rc)

    return {
        "ConstantStep SGD": (layer(ac.SingleRPUConfig(device=ac.ConstantStepDevice())),
                             ac.AnalogSGD),
        "SoftBounds SGD": (layer(ac.SingleRPUConfig(device=ac.SoftBoundsDevice())),
                           ac.AnalogSGD),
        "c-TTv2 SoftBounds": (layer(ac.build_config("c-ttv2", ac.SoftBoundsDevice())),
                              ac.AnalogSGD),
        "AGAD SoftBounds": (layer(ac.build_config("agad", ac.SoftBoundsDevice())), ac.AnalogSGD),
    }


def cases_aihwkit(size: int) -> dict[str, tuple[nn.Module, type]]:
    from aihwkit.nn import AnalogLinear
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.configs import ConstantStepDevice, SingleRPUConfig, SoftBoundsDevice

    def layer(rc: SingleRPUConfig) -> nn.Module:
        return AnalogLinear(size, size, rpu_config=rc)

    out = {
        "ConstantStep SGD": (layer(SingleRPUConfig(device=ConstantStepDevice())), AnalogSGD),
        "SoftBounds SGD": (layer(SingleRPUConfig(device=SoftBoundsDevice())), AnalogSGD),
    }
    try:  # c-TTv2 with soft bounds, as in issue 12's aihwkit row
        from aihwkit.simulator.configs import build_config
        from aihwkit.simulator.configs.devices import SoftBoundsReferenceDevice

        out["c-TTv2 SoftBounds"] = (layer(build_config("c-ttv2", SoftBoundsReferenceDevice())),
                                    AnalogSGD)
        out["AGAD SoftBounds"] = (layer(build_config("agad", SoftBoundsReferenceDevice())),
                                  AnalogSGD)
    except Exception as exc:  # pragma: no cover - depends on the aihwkit build
        print(f"(c-TTv2 skipped: {exc})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--aihwkit", action="store_true", help="measure aihwkit's layers")
    parser.add_argument("--case", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, args.size), torch.randn(args.batch, args.size)
    digital = nn.Linear(args.size, args.size)
    d_step = step_fn(digital, torch.optim.SGD(digital.parameters(), lr=0.01), x, y)
    cases = cases_aihwkit(args.size) if args.aihwkit else cases_analog_compiler(args.size)
    who = "aihwkit" if args.aihwkit else "analog-compiler"
    print(f"{who}: {args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} "
          f"threads, {args.reps} interleaved reps (medians)")
    print(f"{'case':<22}{'digital ms':>12}{'analog ms':>12}{'ratio':>8}")
    for name, (model, opt_cls) in cases.items():
        if args.case not in name:
            continue
        a_step = step_fn(model, opt_cls(model.parameters(), lr=0.01), x, y)
        td, ta, ratio = paired(d_step, a_step, args.reps, args.warmup)
        print(f"{name:<22}{td:>12.2f}{ta:>12.2f}{ratio:>7.2f}x")


if __name__ == "__main__":
    main()
