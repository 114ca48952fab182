"""Small models and metrics shared by the sweep tests (also imported by spawned workers)."""

from __future__ import annotations

import torch
from torch import nn

import analog_compiler as ac

TIMES = [0.0, 3600.0, 86400.0]


def digital_model() -> nn.Module:
    """A seeded two-layer MLP (identical in every process)."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def analog_model() -> nn.Module:
    """``digital_model`` on the default InferenceRPUConfig (output noise, PCM chip, GDC)."""
    return ac.convert(digital_model(), ac.InferenceRPUConfig()).eval()


def inputs() -> torch.Tensor:
    return torch.randn(32, 12, generator=torch.Generator().manual_seed(1))


def mse(model: nn.Module) -> dict[str, float]:
    """Two metrics against the digital model's output (forward noise included)."""
    x = inputs()
    ref = digital_model()(x)
    y = model(x)
    return {"mse": float(((y - ref) ** 2).mean()), "max_err": float((y - ref).abs().max())}
