"""``analog-compiler report --hardware``: presets, JSON files, floorplan, and one-line errors."""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import run_cli

import analog_compiler as ac

MODEL = textwrap.dedent("""
    from torch import nn
    import analog_compiler as ac

    def analog():
        return nn.Sequential(ac.AnalogConv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             ac.AnalogLinear(8 * 8 * 8, 10))
""")


@pytest.fixture()
def model(tmp_path):
    path = tmp_path / "hw_models.py"
    path.write_text(MODEL)
    return f"{path}:analog"


@pytest.mark.parametrize("preset", ["hermes", "speech"])
def test_presets(model, tmp_path, capsys, preset):
    js, plan = tmp_path / "r.json", tmp_path / "plan.png"
    code, out, err = run_cli(capsys, "report", model, "--input-shape", "2,3,8,8",
                             "--hardware", preset, "--json", str(js), "--floorplan", str(plan))
    assert code == 0, err
    assert f"cost on {preset}" in out and "TOPS/W" in out and "inferences/s" in out
    data = json.loads(js.read_text())
    assert data["cost"]["hardware"]["name"] == preset and data["cost"]["energy_pj"] > 0
    assert plan.read_bytes().startswith(b"\x89PNG")


def test_hardware_json_pack_and_no_replicate(model, tmp_path, capsys):
    cfg = tmp_path / "hw.json"
    cfg.write_text(ac.HardwareModel(name="tiny", tiles_per_chip=2, tile_rows=128,
                                    tile_cols=128).to_json())
    code, out, err = run_cli(capsys, "report", model, "--input-shape", "1,3,8,8",
                             "--hardware", str(cfg), "--pack", "--no-replicate", "--markdown")
    assert code == 0, err
    assert "**cost on tiny" in out and "(packed)" in out
    assert "chips: 1," in out and "4 tile(s), depth 4" in out  # the 4 10x128 pieces share a core
    code, out, err = run_cli(capsys, "report", model, "--input-shape", "1,3,8,8",
                             "--hardware", str(cfg), "--no-replicate")
    assert code == 0, err
    assert "chips: 3 (or 3 reprogramming rounds of one chip)" in out  # 1 + 4 cores, 2 a chip


@pytest.mark.parametrize(("extra", "message"), [
    (["--hardware", "tpu"], "unknown preset 'tpu'"),
    (["--hardware", "/no/hw.json"], "no such file"),
    (["--floorplan", "x.png"], "need --hardware"),
])
def test_errors_are_one_line(model, capsys, extra, message):
    code, _, err = run_cli(capsys, "report", model, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_hardware_json(model, tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"type": "HardwareModel", "tile_rows": 0}')
    code, _, err = run_cli(capsys, "report", model, "--hardware", str(cfg))
    assert code == 2 and "HardwareModel.tile_rows must be >= 1" in err
