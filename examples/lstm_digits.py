"""An LSTM reads the digits row by row, then runs on analog tiles through drift.

Run: python examples/lstm_digits.py [--epochs 30] [--chips 3] [--hwa-epochs 4]

Each 8x8 digit is a sequence of 8 time steps of 8 pixels. The script

1. trains a small ``nn.LSTM`` classifier (hidden 48, the last hidden state into a linear head)
   digitally, in seconds;
2. converts it with ``ac.convert``: the LSTM becomes an ``AnalogLSTM`` whose input and hidden
   matrices sit on tiles, the head an ``AnalogLinear`` (the report lists them, with the work per
   sequence and per time step);
3. programs several chips (PCM-like noise model) and prints the test accuracy against drift
   time, with global drift compensation and without it;
4. fine-tunes a converted copy hardware-aware (weight noise injected during training,
   ``attach_hwa_hooks``) and prints its accuracy against drift time the same way.

Everything runs on the CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import analog_compiler as ac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_common import evaluate, load_digits_split  # noqa: E402
from hwa_finetune import finetune  # noqa: E402  (Adam, cosine schedule, clip/remap hook)

TIMES = {"1 min": 60.0, "1 day": 86_400.0, "1 month": 2.6e6, "1 year": 3.15e7}


class DigitsLSTM(nn.Module):
    """Rows of the image as time steps -> ``nn.LSTM`` -> last hidden state -> 10 classes."""

    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(x.shape[0], 8, 8)  # [N, 1, 8, 8] -> [N, time=8, pixels=8]
        _, (h_n, _) = self.lstm(rows)
        return self.head(h_n[-1])


def chip_config(compensation: bool = True, weight_noise: float = 0.0) -> ac.InferenceRPUConfig:
    """The default chip (PCM-like device, 7/9-bit DAC/ADC, output noise), with or without
    global drift compensation; ``weight_noise`` > 0 adds Gaussian weight noise in training
    (relative to the largest weight), for hardware-aware fine-tuning."""
    cfg = ac.InferenceRPUConfig()
    if not compensation:
        cfg.drift_compensation = None
    if weight_noise > 0:
        cfg.modifier = ac.WeightModifierParameter(type=ac.WeightModifierType.ADD_NORMAL,
                                                  std_dev=weight_noise)
    return cfg


@torch.no_grad()
def drift_accuracy(analog: nn.Module, x: Tensor, y: Tensor, chips: int,
                   seed: int = 1000) -> dict[str, Tensor]:
    """Test accuracy of ``chips`` freshly programmed chips at every drift time."""
    analog.eval()
    torch.manual_seed(seed)
    acc: dict[str, list[float]] = {name: [] for name in TIMES}
    for _ in range(chips):
        ac.program_analog_weights(analog)
        for name, t in TIMES.items():
            ac.drift_analog_weights(analog, t)
            acc[name].append(evaluate(analog, x, y))
    return {name: torch.tensor(v) for name, v in acc.items()}


def run(epochs: int = 30, chips: int = 3, hwa_epochs: int = 4, hidden: int = 48,
        seed: int = 0, report: bool = True) -> dict[str, object]:
    """The whole experiment; returns the digital accuracy and the accuracy tables."""
    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(seed)
    digital = finetune(DigitsLSTM(hidden), x_train, y_train, epochs, lr=1e-2, seed=seed)
    results: dict[str, object] = {"digital": evaluate(digital, x_test, y_test)}
    plain = ac.convert(digital, chip_config())
    if report:
        print(ac.report(plain, x_test[:1]))
    results["plain, drift compensation"] = drift_accuracy(plain, x_test, y_test, chips)
    results["plain, no compensation"] = drift_accuracy(
        ac.convert(digital, chip_config(compensation=False)), x_test, y_test, chips)
    hwa = ac.convert(copy.deepcopy(digital), chip_config(weight_noise=0.05))
    finetune(hwa, x_train, y_train, hwa_epochs, lr=2e-3, seed=seed)
    results["HWA fine-tuned, compensation"] = drift_accuracy(hwa, x_test, y_test, chips)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints the report and the accuracy table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="digital training epochs")
    parser.add_argument("--chips", type=int, default=3, help="programmed chips per model")
    parser.add_argument("--hwa-epochs", type=int, default=4, help="HWA fine-tuning epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    t0 = time.perf_counter()
    res = run(args.epochs, args.chips, args.hwa_epochs, seed=args.seed)
    print(f"\ndigital nn.LSTM: {100 * res['digital']:.1f} % test accuracy")
    print(f"{'analog (' + str(args.chips) + ' chips each)':30s}"
          + "".join(f"{name:>16s}" for name in TIMES))
    for key, accs in res.items():
        if key == "digital":
            continue
        cells = "".join(f"{100 * a.mean():9.1f} +- {100 * (a.std() if len(a) > 1 else 0):3.1f}"
                        for a in accs.values())
        print(f"{key:30s}{cells}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
