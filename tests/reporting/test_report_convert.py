"""report() on models made by ac.convert: log-driven rows, reasons, per-layer config diffs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import analog_compiler as ac


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(16, 8) * 0.1)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = F.relu(self.conv(x)).mean((2, 3))
        return self.head(self.fc(F.linear(h, self.w)))


def test_report_of_converted_model():
    quiet = ac.InferenceRPUConfig(forward=ac.IOParameters(out_noise=0.0))
    analog = ac.convert(Net(), ac.InferenceRPUConfig(), policy={"head": None, "fc": quiet})
    x = torch.randn(2, 3, 6, 6)
    rep = ac.report(analog, x)
    by_name = {r.name: r for r in rep.rows}
    assert set(by_name) == {"conv", "w_linear", "fc", "head"}
    assert by_name["w_linear"].layer_type == "AnalogLinear <- F.linear"
    assert by_name["head"].status == "digital" and "policy" in by_name["head"].reason
    assert by_name["head"].macs == 2 * 16 * 4
    assert by_name["fc"].config_diff == {"forward.out_noise": {"global": 0.06, "layer": 0.0}}
    assert by_name["conv"].vectors == 2 * 6 * 6 and by_name["conv"].config_diff == {}
    assert rep.capture == "fx" and rep.totals.digital_macs == 2 * 16 * 4
    assert "policy" in str(rep)
