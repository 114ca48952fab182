"""NaN in, NaN out: a NaN input gives NaN outputs in every kernel, as ``nn.Linear`` does (it
used to take the zero-vector shortcut and come out as the bias)."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import kernel_io, reference
from torch import nn

import analog_compiler as ac

CPP = ac.runtime.backend()["tile_forward"]["cpu"] == "cpp"
IMPLS = ["ref"] + (["cpp"] if CPP else [])
SETTINGS = {
    "abs_max": {}, "abs_max_capped": {"nm_thres": 0.5}, "none": {"noise_management": "NONE"},
    "constant": {"noise_management": "CONSTANT", "nm_thres": 2.0},
    "average_abs_max": {"noise_management": "AVERAGE_ABS_MAX"},
    "perfect": {"is_perfect": True},
}


def run(impl: str, x: torch.Tensor, w: torch.Tensor, scales, io) -> torch.Tensor:
    args = (x, w, scales, torch.zeros(w.shape[1]), torch.tensor(3), [10, 10], [6, 6],
            *kernel_io(io), False)
    fn = torch.ops.analog.tile_forward if impl == "cpp" else reference.tile_forward
    return fn(*args)[0]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_nan_vectors_give_nan(impl: str, setting: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 20, generator=g)
    x[1] = float("nan")  # all NaN
    x[2, 13] = float("nan")  # one NaN, in the second input split
    x[3, :10] = float("nan")  # NaN in the first split, zeros in the second
    x[3, 10:] = 0.0
    w = torch.randn(1, 12, 20, generator=g) * 0.1
    scales = torch.full((1, 2, 12), 0.5)
    y = run(impl, x, w, scales, ac.IOParameters(out_noise=0.0, **SETTINGS[setting]))
    assert y[1:4].isnan().all(), y[1:4]
    if setting == "average_abs_max":  # one batch-wide scale: NaN for every vector
        assert y.isnan().all()
    else:
        assert y[[0, 4]].isfinite().all()


def test_layers_propagate_nan_like_their_digital_twins() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    for digital, x in ((lin, torch.randn(3, 16)), (conv, torch.randn(2, 2, 6, 6))):
        analog = ac.convert(digital, ac.InferenceRPUConfig()).eval()
        x[0] = float("nan")
        with torch.no_grad():
            y, yd = analog(x), digital(x)
        assert torch.equal(y.isnan(), yd.isnan()), type(digital).__name__
