"""examples/minilm.py's device-family comparison (PCM, HERMES, ReRAM side by side), without the
MiniLM model: the sweep over DEVICE_MODELS on a small converted model and the printed table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import analog_compiler as ac

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minilm.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("minilm_example_devices", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TinyEncoder(nn.Module):
    """Stands in for the encoder: ``embed`` reads the first output."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 12)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
        return (self.proj(input_ids),)


def test_device_sweeps_and_table(capsys) -> None:
    ex = _load_example()
    assert [m.__name__ for m in ex.DEVICE_MODELS.values()] == [
        "PCMLikeNoiseModel", "HermesNoiseModel", "ReRamCMONoiseModel"]
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    batch = {"input_ids": torch.randn(3, 5, 16), "attention_mask": torch.ones(3, 5)}
    reference = ex.embed(model, batch)
    pcm = ex.drift_sweep(model, ex.default_config(), batch, reference, 0)
    sweeps = ex.device_sweeps(model, batch, reference, seed=0, done={"PCM": pcm})
    assert list(sweeps) == ["PCM", "HERMES", "ReRAM CMO"] and sweeps["PCM"] is pcm
    for name in ("HERMES", "ReRAM CMO"):
        t0 = sweeps[name].get(0.0, metric="mean cos").mean
        assert 0.5 < t0 <= 1.0  # a programmed chip, not noise
    capsys.readouterr()
    ex.print_devices(sweeps)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "HERMES" in lines[1] and "ReRAM CMO" in lines[1]
    assert len(lines) == 2 + len(ex.DRIFT_TIMES)
    first = [float(v) for v in lines[2].split()[-3:]]
    assert first[0] == pytest.approx(pcm.get(0.0, metric="mean cos").mean, abs=1e-4)
    assert type(model.proj) is nn.Linear and not list(ac.analog_layers(model))  # untouched
