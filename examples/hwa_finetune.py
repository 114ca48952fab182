"""Hardware-aware (HWA) fine-tuning of the pretrained digits CNN, and what it buys after drift.

Run: python examples/hwa_finetune.py [--epochs 8] [--chips 10] [--std-dev 5.0]

Both models run on the same simulated chip: aihwkit's ``StandardHWATrainingPreset`` periphery
(8-bit DAC/ADC, static input ranges, PCM read noise, output noise) with a PCM-like device whose
programming and read noise are 5x the nominal model. On this easy task a noisier device is what
makes the difference visible: with the nominal device both models stay within ~2 % of digital,
and at 3x the plain model loses ~5 % at one year and HWA recovers about half of it.

- plain: the pretrained model converted as is; its input ranges are calibrated on training data.
- HWA: the same conversion fine-tuned for a few epochs with the preset's knobs (learned input
  ranges and column-wise output scales, weight clipping and channel-wise remapping after every
  optimizer step) plus PROG_NOISE weight-noise injection: the device's programming-noise
  polynomial at the device's scale (5).

Each model is programmed onto several chips (fresh programming noise and drift exponents per
chip) and evaluated after 1 day and 1 year of drift (global drift compensation); the script
prints mean +- std over the chips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import analog_compiler as ac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_common import evaluate, load_digits_split, load_pretrained  # noqa: E402

DAY, YEAR = 86_400.0, 365 * 86_400.0
#: The device of the simulated chip: PCM-like, programming and read noise x5.
CHIP_NOISE = ac.PCMLikeNoiseModel(prog_noise_scale=5.0, read_noise_scale=5.0)


def chip_config(**changes) -> ac.InferenceRPUConfig:
    """The chip both models run on (the HWA preset's periphery, the noisy PCM device)."""
    return ac.StandardHWATrainingPreset(noise_model=CHIP_NOISE, **changes)


def hwa_config(std_dev: float) -> ac.InferenceRPUConfig:
    """``chip_config`` plus PROG_NOISE injection: the PCM programming-noise polynomial, scaled
    by ``std_dev`` (in units of ``g_max / 25 uS``; the chip's programming noise is 5)."""
    mod = ac.WeightModifierParameter(type=ac.WeightModifierType.PROG_NOISE, std_dev=std_dev,
                                     coeffs=CHIP_NOISE.prog_coeff, g_max=CHIP_NOISE.g_max)
    return chip_config(modifier=mod)


def convert_calibrated(model: nn.Module, rpu_config: ac.InferenceRPUConfig,
                       x_calib: Tensor) -> nn.Module:
    """Convert ``model`` and calibrate its input ranges on ``x_calib``."""
    analog = ac.convert(model, rpu_config)
    ac.calibrate_input_ranges(analog, x_calib, method="std")
    return analog


def finetune(analog: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float,
             batch_size: int = 64, seed: int = 0) -> nn.Module:
    """HWA fine-tuning with Adam (cosine schedule) and the clip/remap hook."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(analog.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    ac.attach_hwa_hooks(opt, analog)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        analog.train()
        perm = torch.randperm(len(y))
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss_fn(analog(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return analog.eval()


@torch.no_grad()
def drift_accuracy(analog: nn.Module, x: Tensor, y: Tensor, n_chips: int, seed: int,
                   times: tuple[float, ...] = (DAY, YEAR)) -> dict[float, Tensor]:
    """Accuracy of ``n_chips`` programmed chips at each drift time: ``{t: [n_chips]}``."""
    analog.eval()
    torch.manual_seed(seed)
    out: dict[float, list[float]] = {t: [] for t in times}
    for _ in range(n_chips):
        ac.program_analog_weights(analog)
        for t in times:
            ac.drift_analog_weights(analog, t)
            out[t].append(evaluate(analog, x, y))
    return {t: torch.tensor(v) for t, v in out.items()}


def run(epochs: int = 8, n_chips: int = 10, lr: float = 2e-3, std_dev: float = 5.0,
        seed: int = 0, train_size: int | None = None,
        times: tuple[float, ...] = (DAY, YEAR)) -> dict[str, object]:
    """The experiment; returns the digital accuracy and ``{"plain"|"hwa": {t: accuracies}}``."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    pretrained = load_pretrained()
    x_calib = x_train[:512]
    plain = convert_calibrated(pretrained, chip_config(), x_calib)
    hwa = convert_calibrated(pretrained, hwa_config(std_dev), x_calib)
    finetune(hwa, x_train, y_train, epochs, lr, seed=seed)
    return {
        "digital": evaluate(pretrained, x_test, y_test),
        "plain": drift_accuracy(plain, x_test, y_test, n_chips, seed + 1000, times),
        "hwa": drift_accuracy(hwa, x_test, y_test, n_chips, seed + 1000, times),
    }


def _fmt(acc: Tensor) -> str:
    return f"{100 * acc.mean():5.1f} +- {100 * acc.std():4.1f} %"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints the accuracy table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--std-dev", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.perf_counter()
    res = run(args.epochs, args.chips, args.lr, args.std_dev, args.seed)
    print(f"digital (pretrained): {100 * res['digital']:.1f} %")
    print(f"{'':22s}{'1 day':>18s}{'1 year':>18s}   ({args.chips} chips each)")
    for key, label in (("plain", "plain converted"), ("hwa", "HWA fine-tuned")):
        accs = res[key]
        print(f"{label:22s}{_fmt(accs[DAY]):>18s}{_fmt(accs[YEAR]):>18s}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
