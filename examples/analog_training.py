"""Train the digits CNN from scratch on the crossbar (in-memory training) and compare devices.

Runs: floating point (``nn`` layers + ``torch.optim.SGD``); ``IdealDevice`` (analog forward and
backward periphery, floating-point update); ``ConstantStepDevice`` SGD (aihwkit's default
device: dw_min 0.001, 30 % device-to-device and cycle-to-cycle spread, hard bounds +-0.6);
``SoftBoundsDevice`` SGD (ReRAM-like soft bounds); TTv2 and c-TTv2 (``build_config("ttv2" /
"c-ttv2", ...)``: Tiki-Taka with a digital buffer, without and with choppers) on the same
soft-bounds devices; c-TTv2 tuned for this small data set (``tuned_cttv2``) on the same devices
and on aihwkit's ``ReRamSBPresetDevice``; mixed precision (digital rank update transferred to the
soft-bounds devices). Every matrix layer of the analog runs is a
training tile (``ac.convert(model, rpu_config)``), trained with ``ac.AnalogSGD``.

Prints accuracy and time per epoch per run and writes a PNG of the learning curves.

Run: python examples/analog_training.py [--epochs 5] [--out analog_training.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

import analog_compiler as ac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_common import DigitsNet, evaluate, load_digits_split  # noqa: E402


def tuned_cttv2(device: object) -> ac.UnitCellRPUConfig:
    """``build_config("c-ttv2", device)`` with settings that let it learn within a few epochs
    of this small data set (42 batches an epoch): rarer chopper flips (``in_chop_prob`` 0.01:
    a random chopper period must be long against the column's read interval, or the reads of
    the fast array average to noise), a buffer threshold scaled to the layer's read interval
    (``auto_granularity`` 1000: the buffer averages many reads before it writes), up to 10
    slow-array pulses per read (``transfer_update.desired_bl``: a 512-input layer reads each
    column only every 512 vectors) and a faster fast array (``fast_lr`` 0.5)."""
    rc = ac.build_config("c-ttv2", device)
    rc.device.in_chop_prob = 0.01
    rc.device.auto_granularity = 1000.0
    rc.device.fast_lr = 0.5
    rc.device.transfer_update.desired_bl = 10
    return rc


def configs() -> dict[str, object | None]:
    """The runs: a name and its rpu_config (None: floating point)."""
    soft = ac.SoftBoundsDevice(dw_min=0.002, w_max=1.0, w_min=-1.0)
    return {
        "floating point": None,
        "IdealDevice": ac.SingleRPUConfig(device=ac.IdealDevice()),
        "ConstantStep SGD": ac.SingleRPUConfig(device=ac.ConstantStepDevice()),
        "SoftBounds SGD": ac.SingleRPUConfig(device=soft),
        "TTv2 SoftBounds": ac.build_config("ttv2", soft),
        "c-TTv2 SoftBounds": ac.build_config("c-ttv2", soft),
        "c-TTv2 SoftBounds tuned": tuned_cttv2(soft),
        "c-TTv2 ReRAM tuned": tuned_cttv2(ac.ReRamSBPresetDevice()),
        "mixed precision": ac.DigitalRankUpdateRPUConfig(
            device=ac.MixedPrecisionCompound(device=soft)),
    }


def train(rpu_config: object | None, epochs: int, lr: float = 0.5, batch_size: int = 32,
          seed: int = 0, max_batches: int = 0) -> tuple[list[float], float]:
    """Train a fresh ``DigitsNet`` (converted to training tiles unless ``rpu_config`` is None);
    returns the test accuracy after each epoch and the mean seconds per epoch
    (``max_batches > 0``: at most that many batches per epoch)."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    model: nn.Module = DigitsNet()
    if rpu_config is not None:
        model = ac.convert(model, rpu_config)
        opt: torch.optim.Optimizer = ac.AnalogSGD(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    accuracies, seconds = [], 0.0
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(y_train), generator=gen)
        starts = range(0, len(perm), batch_size)
        for start in starts[:max_batches] if max_batches > 0 else starts:
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        seconds += time.perf_counter() - t0
        model.eval()
        accuracies.append(evaluate(model, x_test, y_test))
    return accuracies, seconds / max(epochs, 1)


def plot(curves: dict[str, list[float]], path: Path) -> None:
    """PNG of the test accuracy per epoch of every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc in curves.items():
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits CNN trained in memory")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, tuple[list[float], float]]:
    """Run every config; print the table; write the PNG. Returns ``{name: (acc, s/epoch)}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--max-batches", type=int, default=0, help="per epoch (0: all)")
    parser.add_argument("--only", nargs="*", help="run only these configs (names as listed)")
    parser.add_argument("--out", type=Path, default=Path("analog_training.png"))
    args = parser.parse_args(argv)
    results = {}
    for name, rc in configs().items():
        if args.only and name not in args.only:
            continue
        results[name] = train(rc, args.epochs, args.lr, max_batches=args.max_batches)
    print(f"{'run':<24}{'test accuracy':>15}{'s / epoch':>11}")
    for name, (acc, sec) in results.items():
        print(f"{name:<24}{100 * acc[-1]:>14.1f}%{sec:>11.2f}")
    plot({k: v[0] for k, v in results.items()}, args.out)
    print(f"learning curves: {args.out}")
    return results


if __name__ == "__main__":
    main()
