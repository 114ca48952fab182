"""TileReport.plot: a PNG for analog models, grouped convs, big grids and models with no tiles."""

from __future__ import annotations

from torch import nn

import analog_compiler as ac
from analog_compiler.reporting.plot import tile_utilization

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_png(tmp_path):
    model = nn.Sequential(ac.AnalogLinear(768, 768), ac.AnalogConv2d(16, 16, 3, groups=16),
                          ac.AnalogLinear(4000, 600), nn.Linear(600, 10))
    rep = ac.report(model)
    out = rep.plot(tmp_path / "sub" / "tiles.png")
    assert out == tmp_path / "sub" / "tiles.png"
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


def test_plot_without_analog_layers(tmp_path):
    out = ac.report(nn.Linear(2, 2)).plot(tmp_path / "empty.png")
    assert out.read_bytes().startswith(PNG)


def test_tile_utilization_per_tile():
    (row,) = ac.report(nn.Sequential(ac.AnalogLinear(768, 600))).rows
    util = tile_utilization(row)  # 2 output splits (300) x 2 input splits (384) of 512x512
    assert len(util) == 2 and len(util[0]) == 2
    assert util[0][0] == 300 * 384 / (512 * 512)
