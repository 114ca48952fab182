"""Shared pieces of the digits examples: the model, the data split, the checkpoint, accuracy.

The dataset is scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the
scikit-learn package, no download; read from its CSV file directly). The split is fixed (seed 0,
stratified, 25 % held out) so every script and test sees the same held-out images.

Other example scripts (and the hardware-aware training example) import these names:
``DigitsNet``, ``load_digits_split``, ``CHECKPOINT``, ``evaluate``, ``load_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

#: The committed pretrained checkpoint (a plain ``state_dict`` of ``DigitsNet``).
CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "digits_cnn.pt"

#: Fraction of the 1797 images held out for evaluation, and the split's seed.
TEST_FRACTION = 0.25
SPLIT_SEED = 0


class DigitsNet(nn.Module):
    """A small CNN for 1x8x8 digit images: two 3x3 convs, 2x2 average pooling, two linears.

    ``[N, 1, 8, 8]`` (pixel values scaled to [0, 1]) -> ``[N, 10]`` logits.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 64) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits of ``x`` (``[N, 1, 8, 8]``)."""
        return self.classifier(self.features(x))


def _digits_csv() -> Path:
    """scikit-learn's copy of the digits data (``sklearn/datasets/data/digits.csv.gz``), found
    without importing scikit-learn (its import takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits examples need scikit-learn: pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-learn's digits data not found at {path}")
    return path


def load_digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: images ``[N, 1, 8, 8]`` float32 in [0, 1] and
    int64 labels, from the fixed split: per class, a seeded permutation, the first
    ``round(TEST_FRACTION * count)`` images held out (stratified)."""
    import numpy as np

    data = np.loadtxt(_digits_csv(), delimiter=",", dtype=np.float32)  # 1797 x (64 + label)
    x = torch.from_numpy(data[:, :64].copy()).reshape(-1, 1, 8, 8) / 16.0
    y = torch.from_numpy(data[:, 64].astype(np.int64))
    rng = np.random.RandomState(SPLIT_SEED)
    test_idx = []
    for label in range(10):
        idx = np.flatnonzero(data[:, 64] == label)
        test_idx.append(rng.permutation(idx)[:round(TEST_FRACTION * len(idx))])
    test = np.zeros(len(y), dtype=bool)
    test[np.concatenate(test_idx)] = True
    train_i = torch.from_numpy(np.flatnonzero(~test))
    test_i = torch.from_numpy(np.flatnonzero(test))
    return x[train_i], y[train_i], x[test_i], y[test_i]


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` on ``(x, y)``; the model's
    training/eval mode is left as it is (call ``.eval()`` first)."""
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start:start + batch_size])
        correct += int((logits.argmax(dim=-1) == y[start:start + batch_size]).sum())
    return correct / max(len(y), 1)


def load_pretrained(path: Path | str = CHECKPOINT) -> DigitsNet:
    """A ``DigitsNet`` in eval mode with the weights of the checkpoint at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; run examples/train_digits.py")
    model = DigitsNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
