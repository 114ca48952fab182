"""report(): rows, physical tiles, utilization, config differences, digital rows, output forms."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import analog_compiler as ac
from analog_compiler.conversion_log import LOG_ATTRIBUTE, ConversionLog, LayerRecord
from analog_compiler.reporting.build import NO_ANALOG_NOTE, STATIC_NOTE, flatten


def rc(**mapping) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(**mapping))


@pytest.mark.parametrize(("in_f", "out_f", "mapping", "grid", "tile", "util"), [
    (384, 1536, {}, (1, 3), (512, 512), 384 * 1536 / (3 * 512 * 512)),
    (768, 768, {}, (2, 2), (512, 512), 768 * 768 / (4 * 512 * 512)),   # auto-tiled: not 100%
    (1024, 1024, {}, (2, 2), (512, 512), 1.0),                          # truly fills them
    (300, 200, {"max_input_size": 0, "max_output_size": 0}, (1, 1), (200, 300), 1.0),
    (1000, 100, {"max_input_size": 256, "max_output_size": 0}, (4, 1), (100, 256),
     1000 * 100 / (4 * 100 * 256)),
])
def test_linear_rows(in_f, out_f, mapping, grid, tile, util):
    model = nn.Sequential(ac.AnalogLinear(in_f, out_f, rpu_config=rc(**mapping)))
    rep = ac.report(model)
    (row,) = rep.rows
    assert (row.name, row.status, row.layer_type) == ("0", "analog", "AnalogLinear")
    assert row.weight_shape == (out_f, in_f)
    assert (row.in_splits, row.out_splits) == grid
    assert row.tile_shape == tile
    assert row.tile_count == grid[0] * grid[1]
    assert row.utilization == pytest.approx(util)
    assert rep.totals.tiles == row.tile_count
    assert row.macs is None and STATIC_NOTE in rep.notes


def test_grouped_conv_rows():
    model = nn.Sequential(ac.AnalogConv2d(16, 32, 3, groups=4, rpu_config=rc(max_input_size=16)))
    (row,) = ac.report(model).rows
    assert row.weight_shape == (32, 4, 3, 3)
    assert row.groups == 4 and row.in_sizes == (12, 12, 12) and row.out_sizes == (8,)
    assert row.tile_count == 12 and row.tile_shape == (512, 16)
    assert row.grid == "3x1 x4g"
    assert row.utilization == pytest.approx(4 * 36 * 8 / (12 * 512 * 16))


def test_totals_and_text():
    model = nn.Sequential(ac.AnalogLinear(768, 768), nn.ReLU(), ac.AnalogLinear(768, 10))
    rep = ac.report(model)
    t = rep.totals
    assert (t.analog_layers, t.digital_layers, t.tiles) == (2, 0, 6)
    assert t.used_cells == 768 * 768 + 7680
    assert t.utilization == pytest.approx(t.used_cells / (6 * 512 * 512))
    text = str(rep)
    assert "2x2" in text and "56.2%" in text and "512x512" in text
    assert text.splitlines()[0].startswith("TileReport: global config InferenceRPUConfig")


def test_config_diff_without_log_uses_most_common_config():
    quiet = ac.InferenceRPUConfig(forward=ac.IOParameters(out_noise=0.0),
                                  mapping=ac.MappingParameter(max_input_size=256))
    model = nn.Sequential(ac.AnalogLinear(8, 8), ac.AnalogLinear(8, 8),
                          ac.AnalogLinear(8, 8, rpu_config=quiet))
    rep = ac.report(model)
    assert rep.rows[0].config_diff == {} and rep.rows[1].config_diff == {}
    assert rep.rows[2].config_diff == {
        "forward.out_noise": {"global": 0.06, "layer": 0.0},
        "mapping.max_input_size": {"global": 512, "layer": 256}}
    assert "2: forward.out_noise: 0.06 -> 0.0" in str(rep)
    assert any("no conversion log" in n for n in rep.notes)


def _logged_model() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = ac.AnalogLinear(16, 32, rpu_config=rc(weight_scaling_omega=1.0))
            self.proj = ac.AnalogLinear(32, 32, rpu_config=ac.FloatingPointRPUConfig())
            self.head = nn.Linear(32, 4)
            self.scale = nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            h = self.proj(self.fc1(x))
            return self.head(h @ h.transpose(-1, -2) @ h) @ self.scale

    net = Net()
    log = ConversionLog(rpu_config=rc(weight_scaling_omega=1.0).to_dict(), capture="fx", records=[
        LayerRecord("fc1", "Linear", "analog"),
        LayerRecord("proj", "Conv1D", "analog", rpu_config=ac.FloatingPointRPUConfig().to_dict()),
        LayerRecord("matmul_1", "matmul", "digital", "unsupported: both operands are activations"),
        LayerRecord("head", "Linear", "digital", "policy"),
        LayerRecord("scale", "parameter", "digital", "untraceable: control flow"),
    ], fallbacks={"block": "symbolically traced variables cannot be used in control flow"})
    setattr(net, LOG_ATTRIBUTE, log)
    return net


def test_rows_from_conversion_log():
    net = _logged_model()
    rep = ac.report(net)
    assert [(r.name, r.status) for r in rep.rows] == [
        ("fc1", "analog"), ("proj", "analog"), ("matmul_1", "digital"), ("head", "digital"),
        ("scale", "digital")]
    fc1, proj, mm, head, scale = rep.rows
    assert scale.weight_shape == (4, 4)
    assert fc1.layer_type == "AnalogLinear" and fc1.config_diff == {}
    assert proj.layer_type == "AnalogLinear <- Conv1D"
    assert proj.config_diff["type"] == {"global": "InferenceRPUConfig",
                                        "layer": "FloatingPointRPUConfig"}
    assert proj.config_diff["forward.is_perfect"] == {"global": False, "layer": True}
    assert "noise_model.g_max" in proj.config_diff  # InferenceRPUConfig field missing on the layer
    assert mm.reason.startswith("unsupported") and mm.weight_shape is None
    assert head.reason == "policy" and head.weight_shape == (4, 32)
    assert rep.capture == "fx" and rep.global_config["mapping"]["weight_scaling_omega"] == 1.0
    assert "converted by module swap, not traced (1 submodule(s): block): symbolically traced " \
        "variables cannot be used in control flow" in rep.notes
    assert list(rep.fallbacks) == ["block"]
    text = str(rep)
    assert "policy" in text and "unsupported: both operands are activations" in text
    # the log's to_dict form is read the same way
    setattr(net, LOG_ATTRIBUTE, net.analog_conversion_log.to_dict())
    assert [r.name for r in ac.report(net).rows] == ["fc1", "proj", "matmul_1", "head", "scale"]


def test_log_inconsistencies_are_reported_not_silent():
    model = nn.Sequential(ac.AnalogLinear(4, 4), nn.Linear(4, 4))
    setattr(model, LOG_ATTRIBUTE, ConversionLog(rpu_config=rc().to_dict(),
                                                records=[LayerRecord("7", "Linear", "analog")]))
    rep = ac.report(model)
    assert [(r.name, r.status) for r in rep.rows] == [("0", "analog"), ("1", "digital")]
    assert rep.rows[1].reason == "not mapped (missing from the conversion log)"
    assert any("'7' as analog" in n for n in rep.notes)


def test_model_without_analog_layers():
    rep = ac.report(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(2, 3))
    assert rep.analog_rows == [] and rep.totals.tiles == 0 and rep.totals.utilization is None
    assert rep.notes[0] == NO_ANALOG_NOTE
    assert rep.totals.analog_macs == 0 and rep.totals.digital_macs == 24
    assert rep.totals.analog_share == 0.0
    assert "no analog layers" in str(rep) and "no analog layers" in rep.to_markdown()
    empty = ac.report(nn.ReLU())
    assert empty.rows == [] and "no analog layers" in str(empty)


def test_machine_readable_forms():
    rep = ac.report(_logged_model(), torch.randn(2, 5, 16))
    data = json.loads(rep.to_json())
    assert data == json.loads(json.dumps(rep.to_dict()))
    assert [r["name"] for r in data["rows"]] == ["fc1", "proj", "matmul_1", "head", "scale"]
    assert data["rows"][0]["grid"] == "1x1" and data["rows"][0]["tile_shape"] == [512, 512]
    assert data["totals"]["analog_macs"] == 10 * (16 * 32 + 32 * 32)
    assert data["input_shape"] == [2, 5, 16]
    back = ac.TileReport.from_json(rep.to_json())
    assert back == rep and str(back) == str(rep)
    md = rep.to_markdown()
    assert md.count("\n| ") == 1 + 5  # header + one line per row
    assert "| fc1 | AnalogLinear |" in md


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        ac.report("not a model")
    model = nn.Sequential(ac.AnalogLinear(4, 4))
    with pytest.raises(TypeError, match="example_inputs"):
        ac.report(model, 3)
    with pytest.raises(ValueError, match="failed on example_inputs.*expected 4"):
        ac.report(model, torch.randn(2, 5))


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1]}) == {"a.b": 1, "a.c.d": None,
                                                                   "e": [1]}


def test_fallback_notes_are_grouped_and_short():
    from analog_compiler.reporting.build import fallback_notes

    err = "TraceError: Proxy object cannot be iterated. This can be attempted when ..."
    notes = fallback_notes({f"enc.{i}": err for i in range(6)} | {"": "boom"})
    assert notes == [
        "converted by module swap, not traced (6 submodule(s): enc.0, enc.1, enc.2, enc.3 and 2 "
        "more): TraceError: Proxy object cannot be iterated",
        "converted by module swap, not traced (1 submodule(s): (model)): boom"]
