"""Program + drift time of the chip kernels per million weights, C++ against the reference,
for every noise model (``PCMLikeNoiseModel``: ``analog::pcm_chip``; the others:
``analog::device_chip``).

One 1024 x 1024 layer in 512 x 512 tiles; "program" is the chip read at t = 0 without read noise
(what ``program_analog_weights`` asks of the op), "drift" the chip at t (one day; ReRamWan2022
has only its table times) with read noise (``drift_analog_weights``). The two kernels run
interleaved (``timing.paired``), the times are medians, the ratio the median of the per-run
reference / C++ ratios.

    python benchmarks/bench_device_chip.py [--reps 15] [--threads N]
"""

from __future__ import annotations

import argparse
import os

import torch
from analog_compiler.runtime import chip_codec, chip_ops
from analog_compiler.runtime.tiling import TilePlan
from timing import paired

import analog_compiler as ac

T_DAY = 86400.0
MODELS = [
    ("PCMLikeNoiseModel", ac.PCMLikeNoiseModel()),
    ("StateIndependentNoiseModel", ac.StateIndependentNoiseModel()),
    ("CustomDriftPCMLikeNoiseModel", ac.CustomDriftPCMLikeNoiseModel()),
    ("HermesNoiseModel", ac.HermesNoiseModel()),
    ("ReRamWan2022NoiseModel", ac.ReRamWan2022NoiseModel()),
    ("ReRamCMONoiseModel (single device)", ac.ReRamCMONoiseModel()),
    ("HermesNoiseModel + DualPair", ac.HermesNoiseModel(
        g_converter=ac.DualPairConductanceConverter())),
    ("StateIndependent + CustomPair", ac.StateIndependentNoiseModel(
        g_converter=ac.CustomPairConductanceConverter())),
]


def kernels(model: ac.NoiseModel, w: torch.Tensor, plan: TilePlan):
    """(reference, C++) callables that program and then drift the chip once."""
    sizes = (list(plan.in_sizes), list(plan.out_sizes))
    seed, rs, zero = torch.tensor(3), torch.tensor(4), torch.tensor(0)

    if type(model) is ac.PCMLikeNoiseModel:
        kw = chip_ops.model_args(model)

        def run(fn):
            return lambda: (fn(w, *sizes, seed, 0.0, False, zero, **kw),
                            fn(w, *sizes, seed, T_DAY, True, rs, **kw))

        return run(chip_ops.pcm_chip_reference), run(torch.ops.analog.pcm_chip)
    enc0, enc_t = chip_codec.encode(model, 0.0), chip_codec.encode(model, T_DAY)

    def run(fn):
        return lambda: (fn(w, *sizes, seed, 0.0, False, zero, *enc0),
                        fn(w, *sizes, seed, T_DAY, True, rs, *enc_t))

    return run(chip_ops.device_chip_reference), run(torch.ops.analog.device_chip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    assert ac.runtime.backend()["device_chip"]["cpu"] == "cpp", "C++ kernels not active"
    w = torch.randn(1, 1024, 1024) * 0.1
    plan = TilePlan.build(1024, 1024, 512, 512, 1)
    per_m = 1e6 / w.numel()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("\n| model | reference ms / M weights | C++ ms / M weights | speed-up |")
    print("| --- | --- | --- | --- |")
    with torch.no_grad():
        for name, model in MODELS:
            ref, cpp = kernels(model, w, plan)
            t_ref, t_cpp, ratio = paired(ref, cpp, args.reps, args.warmup)
            print(f"| {name} | {t_ref * per_m:.1f} | {t_cpp * per_m:.1f} | {1 / ratio:.1f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
