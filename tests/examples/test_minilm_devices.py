"""examples/minilm.py's device-family comparison (PCM, HERMES, ReRAM side by side), without the
MiniLM model: the sweep over DEVICE_MODELS on a small converted model and the printed table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
    done = {"PCM": {label: torch.ones(3) for label in ex.DRIFT_TIMES}}
    sweeps = ex.device_sweeps(model, batch, reference, seed=0, done=done)
    assert list(sweeps) == ["PCM", "HERMES", "ReRAM CMO"] and sweeps["PCM"] is done["PCM"]
    for name in ("HERMES", "ReRAM CMO"):
        assert list(sweeps[name]) == list(ex.DRIFT_TIMES)
        t0 = sweeps[name]["t = 0"]
        assert t0.shape == (3,) and bool((t0 > 0.5).all())  # a programmed chip, not noise
    capsys.readouterr()
    ex.print_devices(sweeps)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "HERMES" in lines[1] and "ReRAM CMO" in lines[1]
    assert len(lines) == 2 + len(ex.DRIFT_TIMES) and lines[2].split()[-3:][0] == "1.0000"
    assert type(model.proj) is nn.Linear and not list(ac.analog_layers(model))  # untouched
