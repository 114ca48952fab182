"""``analog-compiler export``: ONNX out of a digital or analog factory, options, errors."""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import run_cli

from analog_compiler.cli import main
from analog_compiler.export import read_metadata, rpu_config_from_metadata

pytest.importorskip("onnxruntime")

MODELS = textwrap.dedent("""
    from torch import nn
    import analog_compiler as ac

    def digital():
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 5 * 5, 6))

    def analog():
        return nn.Sequential(ac.AnalogLinear(12, 5), nn.ReLU(), ac.AnalogLinear(5, 3))

    def plain():
        return nn.ReLU()
""")


@pytest.fixture()
def models(tmp_path):
    path = tmp_path / "export_models.py"
    path.write_text(MODELS)
    return path


def test_export_digital_factory_with_config_and_drift(models, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"type": "InferenceRPUConfig",
                               "mapping": {"max_input_size": 10, "weight_scaling_omega": 1.0}}))
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(capsys, "export", f"{models}:digital", "--input-shape",
                                "2,2,5,5", "--out", str(out), "--t-inference", "86400",
                                "--config", str(cfg))
    assert code == 0, err
    assert "wrote" in stdout and "onnxruntime matches" in stdout
    meta = read_metadata(out)
    assert meta["t_inference"]["requested"] == 86400.0
    assert rpu_config_from_metadata(out).mapping.max_input_size == 10


def test_export_analog_factory_keep_quantization(models, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    code, stdout, err = run_cli(capsys, "export", f"{models}:analog", "--input-shape", "3,12",
                                "--out", str(out), "--keep-quantization")
    assert code == 0, err
    assert "DAC/ADC" in stdout and read_metadata(out)["export"]["keep_quantization"]


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/missing/m.onnx"], "does not exist"),
    (["--out", "{tmp}"], "is a directory"),
])
def test_export_bad_out(models, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run_cli(capsys, "export", f"{models}:analog", "--input-shape", "1,12", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_export_no_analog_layers_and_bad_time(models, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", f"{models}:plain", "--input-shape", "1,4",
                           "--out", str(tmp_path / "p.onnx"))
    assert code == 2 and "no analog layers" in err
    with pytest.raises(SystemExit):
        main(["export", f"{models}:analog", "--input-shape", "1,12", "--out",
              str(tmp_path / "m.onnx"), "--t-inference", "-1"])
    assert "t-inference" in capsys.readouterr().err
