"""Analog LSTM vs ``nn.LSTM`` (issue 15's target: a 2-layer LSTM, hidden 512, sequence 100,
batch 32, default config, within 2x of ``nn.LSTM`` on CPU).

One process; the digital and the analog forward run interleaved, ``--reps`` times after
``--warmup`` runs (eval mode, no grad); the ratio is the median of the per-repetition ratios,
the times are medians. ``--profile`` also splits the analog forward into its parts (the tile
calls of the input matrices over the whole sequence, the hidden-matrix tile calls step by
step, and the rest: gate arithmetic and Python). Not a test:
``python benchmarks/bench_rnn.py [--reps 9] [--threads N] [--profile]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from bench_forward import paired  # the same interleaved timing (the script's folder)
from torch import nn

import analog_compiler as ac


def profile(analog: nn.Module, x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median ms per forward spent in the input-matrix tile calls, the hidden-matrix tile
    calls, and everything else."""
    spent: dict[str, float] = defaultdict(float)
    handles, starts = [], {}
    for name, layer in ac.analog_layers(analog):
        kind = "input matrices (whole sequence)" if name.endswith("weight_ih") else \
            "hidden matrices (per step)"

        def pre(_m, _a, key=name):
            starts[key] = time.perf_counter()

        def post(_m, _a, _o, key=name, kind=kind):
            spent[kind] += time.perf_counter() - starts[key]

        handles += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    totals = []
    per_kind: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for _ in range(reps):
            spent.clear()
            t0 = time.perf_counter()
            analog(x)
            totals.append(time.perf_counter() - t0)
            for k, v in spent.items():
                per_kind[k].append(v)
    for h in handles:
        h.remove()
    out = {k: statistics.median(v) * 1e3 for k, v in per_kind.items()}
    total = statistics.median(totals) * 1e3
    out["rest (gates, Python)"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), backend "
          f"{ac.runtime.backend()['tile_forward']}")
    cases = [("2-layer LSTM 512, T=100, batch 32", nn.LSTM(512, 512, 2), (100, 32, 512)),
             ("2-layer GRU 512, T=100, batch 32", nn.GRU(512, 512, 2), (100, 32, 512))]
    print("| case | digital ms | analog ms | ratio |")
    print("| --- | --- | --- | --- |")
    for title, digital, shape in cases:
        digital.eval()
        x = torch.randn(*shape)
        for label, cfg in (("default config", ac.InferenceRPUConfig()),
                           ("ideal tiles (is_perfect)", ac.InferenceRPUConfig())):
            cfg.forward.is_perfect = label.startswith("ideal")
            analog = ac.convert(digital, cfg).eval()
            with torch.no_grad():
                td, ta, ratio = paired(lambda d=digital, x=x: d(x), lambda a=analog, x=x: a(x),
                                       args.reps, args.warmup)
            print(f"| {title}, {label} | {td:.1f} | {ta:.1f} | {ratio:.2f}x |")
            if args.profile and label == "default config":
                for part, ms in profile(analog, x, args.reps).items():
                    print(f"|   {part} | | {ms:.1f} | |")


if __name__ == "__main__":
    main()
