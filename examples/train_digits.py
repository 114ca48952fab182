"""Train ``DigitsNet`` on scikit-learn's 8x8 digits and save the checkpoint the examples use.

Run: python examples/train_digits.py [--epochs 30] [--out examples/checkpoints/digits_cnn.pt]

Takes well under a minute on two CPU cores; the checkpoint is a plain ``state_dict``
(about 150 kB) that loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_common import CHECKPOINT, DigitsNet, evaluate, load_digits_split  # noqa: E402


def train(epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> DigitsNet:
    """Train a fresh ``DigitsNet`` with Adam and cross-entropy; returns it in eval mode."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split()
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        total = 0.0
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if (epoch + 1) % 5 == 0 or epoch == epochs - 1:
            model.eval()
            acc = evaluate(model, x_test, y_test)
            print(f"epoch {epoch + 1:3d}/{epochs}: loss {total / len(perm):.4f}, "
                  f"test accuracy {acc:.2%}")
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.perf_counter()
    model = train(args.epochs, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} kB) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
