"""Analog forward vs the digital forward of the same shape (issue 4's target table).

One process; every case runs its digital and analog forward interleaved, ``--reps`` times after
``--warmup`` runs; the ratio is the median of the per-repetition ratios (robust to load changes
on a shared machine), the times are medians. Also program + drift time per million weights and
peak memory. Not a test: ``python benchmarks/bench_forward.py [--reps 25] [--threads N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import resource
import statistics
import time

import torch
from timing import paired
from torch import nn

import analog_compiler as ac


def rpu(is_perfect: bool = False, pcm: float = 0.0) -> ac.InferenceRPUConfig:
    rc = ac.InferenceRPUConfig()
    rc.forward.is_perfect = is_perfect
    if pcm > 0:
        rc.forward.w_noise = pcm
        rc.forward.w_noise_type = ac.WeightNoiseType.PCM_READ
    return rc


def weight_sized_tensors(layer: nn.Module) -> float:
    """State of an analog layer in units of its weight count (eval, programmed)."""
    arr = next(m for m in layer.modules() if isinstance(m, ac.runtime.TileArray))
    total = sum(t.numel() for t in [*arr.parameters(), *arr.buffers()])
    return total / arr.weight.numel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"backend: {ac.runtime.backend()}")
    lightning = importlib.util.find_spec("aihwkit_lightning") is not None
    print("aihwkit-lightning: " + ("installed (not benchmarked here)" if lightning
                                   else "not installed, no comparison"))

    rows: list[tuple[str, str, float, float, str]] = []
    lin = nn.Linear(1024, 1024).eval()
    x256, x1 = torch.randn(256, 1024), torch.randn(1, 1024)
    cases = [
        ("AnalogLinear 1024x1024 b256, ideal (is_perfect)", rpu(is_perfect=True), x256, 1.1),
        ("same, default InferenceRPUConfig", rpu(), x256, 1.5),
        ("same + w_noise 0.02 PCM_READ", rpu(pcm=0.02), x256, 2.5),
        ("AnalogLinear 1024x1024 batch 1 (latency), default", rpu(), x1, 3.0),
    ]
    with torch.no_grad():
        for name, rc, x, target in cases:
            layer = ac.AnalogLinear.from_digital(lin, rc).eval()
            d, a, r = paired(lambda x=x: lin(x), lambda x=x, m=layer: m(x), args.reps,
                             args.warmup)
            rows.append((name, f"<= {target}x", d, a, f"{r:.2f}x"))

        conv = nn.Conv2d(64, 64, 3, padding=1).eval()
        aconv = ac.AnalogConv2d.from_digital(conv, rpu()).eval()
        xc = torch.randn(32, 64, 32, 32)
        d, a, r = paired(lambda: conv(xc), lambda: aconv(xc), max(args.reps // 2, 10),
                         args.warmup)
        rows.append(("AnalogConv2d 64->64 3x3 32x32 b32, default", "<= 2x", d, a, f"{r:.2f}x"))

        layer = ac.AnalogLinear.from_digital(lin, rpu()).eval()
        tp, td = [], []
        for k in range(args.warmup + max(args.reps // 2, 10)):
            t0 = time.perf_counter()
            ac.program_analog_weights(layer)
            t1 = time.perf_counter()
            ac.drift_analog_weights(layer, t_inference=3600.0)
            t2 = time.perf_counter()
            if k >= args.warmup:
                tp.append(t1 - t0)
                td.append(t2 - t1)
        per_m = 1e6 / lin.weight.numel() * 1e3
        prog, drift = statistics.median(tp) * per_m, statistics.median(td) * per_m
        rows.append(("program + drift, per million weights", "<= 50 ms", prog, drift,
                     f"{prog + drift:.1f} ms"))
        state = weight_sized_tensors(layer)

    print()
    print("| case | target | digital ms | analog ms | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, target, d, a, r in rows:
        if name.startswith("program"):
            print(f"| {name} | {target} | program {d:.1f} ms | drift {a:.1f} ms | {r} |")
        else:
            print(f"| {name} | {target} | {d:.2f} | {a:.2f} | {r} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmemory: programmed analog layer in eval holds {state:.2f} weight-sized tensors "
          f"(target <= 3); process peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
