"""Quick start: a pretrained digit classifier on a simulated analog chip, from t = 0 to one year.

The whole story on the small CNN this repository ships pretrained
(``examples/checkpoints/digits_cnn.pt``, trained by ``examples/train_digits.py`` on
scikit-learn's 8x8 digits):

1. load it and convert it to analog tiles (``ac.convert``), print the tile report and what one
   image costs on two published IBM PCM chips (``ac.report(..., hardware=...)``);
2. program several chips (PCM programming noise, seeded), drift them to 1 hour, 1 day,
   1 month, 1 year and measure the held-out accuracy with and without global drift
   compensation (mean and spread over the chips);
3. plot accuracy against time (log axis) to ``OUT/accuracy_vs_time.png``;
4. export the realistic weights of one chip after one day to ONNX (``ac.export_onnx``, checked
   with onnxruntime), plus an ONNX file that also keeps the DAC/ADC periphery, and score both
   with onnxruntime.

Run: ``python examples/quickstart.py`` (about a minute on two cores); ``--quick`` for a short
run; ``--help`` for the options. Files go to ``./out/`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_common import evaluate, load_digits_split, load_pretrained  # noqa: E402

import analog_compiler as ac  # noqa: E402
from analog_compiler.studies import derive_seed  # noqa: E402

TIMES = {"0": 0.0, "1 hour": 3600.0, "1 day": 86400.0, "1 month": 30 * 86400.0,
         "1 year": 365 * 86400.0}


def rpu_config(drift_compensation: bool = True) -> ac.InferenceRPUConfig:
    """PCM-like inference tiles with aihwkit's defaults (7-bit DAC, 9-bit ADC, output noise
    0.06, programming noise, drift and read noise); weights scaled per column to omega = 1."""
    return ac.InferenceRPUConfig(
        mapping=ac.MappingParameter(weight_scaling_omega=1.0, weight_scaling_columnwise=True),
        drift_compensation=ac.GlobalDriftCompensation() if drift_compensation else None)


def _label(t: float) -> str:
    return next((k for k, v in TIMES.items() if v == t), f"{t:g} s")


def accuracy_over_time(digital: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       times: list[float], chips: int, seed: int) -> ac.SweepResult:
    """Held-out accuracy of the converted model per chip and time, with and without drift
    compensation (``ac.sweep``: chip k is the same chip sample under both configs)."""
    configs = {"drift compensation": rpu_config(True), "no compensation": rpu_config(False)}
    return ac.sweep(digital, lambda analog: evaluate(analog, x, y), times, chips=chips,
                    configs=configs, seed=seed)


def print_table(results: ac.SweepResult, digital_acc: float, chips: int) -> None:
    """The accuracy table: mean +- standard deviation over the chips."""
    print(f"\nHeld-out accuracy over {chips} programmed chip(s) (digital model: "
          f"{100 * digital_acc:.2f} %)")
    print(results.to_text(scale=100, digits=2, suffix=" %", ranges=False))


def plot(results: ac.SweepResult, digital_acc: float, path: Path) -> None:
    """Accuracy vs time (log axis; t = 0 drawn at 1 s), mean and spread over the chips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [max(t, 1.0) for t in results.times]
    for config, style in zip(results.configs, ("o-", "s--")):
        stats = [results.get(t, config) for t in results.times]
        ax.errorbar(xs, [100 * s.mean for s in stats], yerr=[100 * s.std for s in stats],
                    fmt=style, capsize=3, label=config)
    ax.axhline(100 * digital_acc, color="gray", lw=1, ls=":", label="digital")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(xs, [_label(t) for t in results.times])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("DigitsNet on PCM-like analog tiles")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of an ONNX file run by onnxruntime."""
    from analog_compiler.export.onnx import run_onnxruntime

    (logits,) = run_onnxruntime(path, [x])
    return float((logits.argmax(-1) == y).float().mean())


def export(digital: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, out: Path, seed: int,
           keep_quantization: bool) -> list[Path]:
    """Program one chip, export its weights after one day to ONNX, score the files."""
    analog = ac.convert(digital, rpu_config()).eval()
    torch.manual_seed(derive_seed(seed, 0))  # the sweep's chip 0
    ac.program_analog_weights(analog)
    t = TIMES["1 day"]
    files = []
    res = ac.export_onnx(analog, (x[:16],), out / "digits_analog_1day.onnx", t_inference=t,
                         seed=seed)
    print(f"\nONNX export (realistic weights of chip 0 after 1 day, scales folded): {res.path}")
    print(f"  onnxruntime vs PyTorch: max |diff| = {res.max_abs_diff:.2e} "
          f"(relative {res.max_rel_diff:.2e}), exporter: {res.exporter}")
    acc = onnx_accuracy(res.path, x, y)
    print(f"  onnxruntime accuracy on the held-out split: {100 * acc:.2f} % (weights only: no "
          "DAC/ADC, no output noise)")
    files.append(res.path)
    if keep_quantization:
        res_q = ac.export_onnx(analog, (x[:16],), out / "digits_analog_1day_quantized.onnx",
                               t_inference=t, seed=seed, keep_quantization=True)
        print(f"ONNX export with the DAC/ADC periphery kept: {res_q.path}")
        print(f"  onnxruntime vs PyTorch: max |diff| = {res_q.max_abs_diff:.2e}; accuracy "
              f"{100 * onnx_accuracy(res_q.path, x, y):.2f} % (noise-free analog forward)")
        files.append(res_q.path)
    return files


def main(argv: list[str] | None = None) -> int:
    """Run the quick start; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=5, help="programmed chips per setting (5)")
    parser.add_argument("--times", default=",".join(TIMES),
                        help="comma-separated times: labels (" + ", ".join(TIMES) +
                        ") or seconds")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (./out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first chip (0)")
    parser.add_argument("--quick", action="store_true",
                        help="short run: 2 chips, t = 0 and 1 day, no quantized export")
    parser.add_argument("--no-quantized-export", action="store_true",
                        help="skip the ONNX file with the DAC/ADC periphery")
    args = parser.parse_args(argv)
    try:
        times = [TIMES[s.strip()] if s.strip() in TIMES else float(s)
                 for s in args.times.split(",")]
    except ValueError:
        parser.error(f"--times: expected labels ({', '.join(TIMES)}) or seconds, "
                     f"got {args.times!r}")
    if any(t < 0 for t in times):
        parser.error("--times: times must be >= 0 seconds")
    if times != sorted(set(times)):
        parser.error("--times: give the times in ascending order, without repeats")
    if args.chips < 1:
        parser.error("--chips must be >= 1")
    chips = args.chips
    if args.quick:
        chips, times = min(chips, 2), [0.0, TIMES["1 day"]]
    start = time.perf_counter()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)

    digital = load_pretrained()
    _, _, x_test, y_test = load_digits_split()
    digital_acc = evaluate(digital, x_test, y_test)
    print(f"Loaded DigitsNet ({sum(p.numel() for p in digital.parameters())} parameters); "
          f"digital held-out accuracy {100 * digital_acc:.2f} % on {len(y_test)} images\n")

    analog = ac.convert(digital, rpu_config()).eval()
    print(ac.report(analog, x_test[:1]))
    print_cost(analog, x_test[:1])

    print(f"\nAccuracy at {', '.join(_label(t) for t in times)} over {chips} chip(s):")
    results = accuracy_over_time(digital, x_test, y_test, times, chips, args.seed)
    print_table(results, digital_acc, chips)

    png = args.out / "accuracy_vs_time.png"
    plot(results, digital_acc, png)
    files = [png] + export(digital, x_test, y_test, args.out, args.seed,
                           keep_quantization=not (args.quick or args.no_quantized_export))

    print(f"\nFiles ({time.perf_counter() - start:.0f} s in all):")
    for f in files:
        print(f"  {f.resolve()}")
    return 0


def print_cost(analog: torch.nn.Module, image: torch.Tensor) -> None:
    """One image's estimated cost on the HERMES and speech-chip presets (see the README)."""
    print("\nEstimated cost of one image (HardwareModel presets; an estimate, not a circuit "
          "simulation):")
    from analog_compiler.reporting.cost import fmt_energy, fmt_time

    for hw in (ac.HardwareModel.hermes(), ac.HardwareModel.speech()):
        cost = ac.report(analog, image, hardware=hw).cost
        print(f"  {hw.name:6s}: {fmt_energy(cost.energy_pj)}, latency "
              f"{fmt_time(cost.latency_ns)}, {cost.inferences_per_s:.3g} images/s pipelined "
              f"({cost.inferences_per_s_single:.3g} without replication), "
              f"{cost.tops_per_w:.3g} TOPS/W, {cost.cores_used} of "
              f"{cost.chips * hw.tiles_per_chip} cores, bottleneck {cost.bottleneck}")


if __name__ == "__main__":
    raise SystemExit(main())
