"""``analog-compiler report``: module/path targets, outputs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from cli_helpers import run_cli

import analog_compiler as ac
from analog_compiler.cli import main

MODELS = textwrap.dedent("""
    import torch
    from torch import nn
    import analog_compiler as ac

    def analog():
        return nn.Sequential(ac.AnalogConv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             ac.AnalogLinear(8 * 8 * 8, 10))

    def digital():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(8 * 8 * 8, 10))

    def broken():
        raise RuntimeError("no weights here")

    def not_a_model():
        return 42

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)
            self.conv = nn.Conv2d(2, 4, 3)

        def forward(self, x, img):
            return self.fc(x).sum() + self.conv(img).sum()

    NOT_CALLABLE = 3
""")


@pytest.fixture()
def models(tmp_path, monkeypatch):
    path = tmp_path / "cli_models.py"
    path.write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def test_report_py_path_with_outputs(models, tmp_path, capsys):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    code, out, err = run_cli(capsys, "report", f"{models}:analog", "--input-shape", "2,3,8,8",
                             "--json", str(js), "--plot", str(png))
    assert code == 0, err
    assert "AnalogConv2d" in out and "analog share 100.0%" in out
    data = json.loads(js.read_text())
    assert [r["name"] for r in data["rows"]] == ["0", "3"]
    assert data["rows"][0]["vectors"] == 2 * 8 * 8
    assert png.read_bytes().startswith(b"\x89PNG")


def test_report_importable_module_markdown(models, capsys):
    code, out, _ = run_cli(capsys, "report", "cli_models:analog", "--markdown")
    assert code == 0
    assert "| 3 | AnalogLinear | 10x512 | 1x1 | 512x512 | 1 |" in out


def test_digital_model_is_converted(models, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(ac.InferenceRPUConfig(mapping=ac.MappingParameter(max_input_size=128))
                   .to_json())
    code, out, err = run_cli(capsys, "report", "cli_models:digital", "--config", str(cfg),
                             "--input-shape", "1,3,8,8")
    assert code == 0, err
    assert "AnalogLinear" in out and "4x1" in out  # 512 inputs on 128-input tiles


def test_several_inputs(models, capsys):
    code, out, err = run_cli(capsys, "report", "cli_models:TwoInputs", "--input-shape", "3,6",
                             "--input-shape", "2,2,5,5")
    assert code == 0, err
    assert "per forward of input 3x6" in out and "analog share 100.0%" in out


def test_config_is_ignored_for_analog_models(models, tmp_path, capsys):
    cfg = tmp_path / "fp.json"
    cfg.write_text(ac.FloatingPointRPUConfig().to_json())
    code, _, err = run_cli(capsys, "report", "cli_models:analog", "--config", str(cfg))
    assert code == 0 and "--config is ignored" in err


@pytest.mark.parametrize(("target", "extra", "message"), [
    ("no_such_module_xyz:make", [], "no module named 'no_such_module_xyz'"),
    ("/no/such/file.py:make", [], "no such file: /no/such/file.py"),
    ("cli_models", [], "expected MODULE:FACTORY"),
    ("cli_models:missing", [], "cli_models has no attribute 'missing'"),
    ("cli_models:NOT_CALLABLE", [], "is not callable"),
    ("cli_models:not_a_model", [], "returned a int, not an nn.Module"),
    ("cli_models:broken", [], "calling cli_models:broken failed: RuntimeError: no weights here"),
    ("cli_models:analog", ["--input-shape", "1,4,8,8"], "failed on example_inputs"),
    ("cli_models:analog", ["--config", "/no/cfg.json"], "cannot read config /no/cfg.json"),
])
def test_errors_are_one_line(models, capsys, target, extra, message):
    code, out, err = run_cli(capsys, "report", target, *extra)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("analog-compiler report: error: ")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"type": "IOParameters"}', "'IOParameters' is not an RPU config"),
    ('{"type": "InferenceRPUConfig", "bogus": 1}', "unknown field(s) bogus"),
    ('{"mapping": {"max_input_size": -1}}', "MappingParameter.max_input_size must be >= 0"),
])
def test_bad_config(models, tmp_path, capsys, content, message):
    cfg = tmp_path / "bad.json"
    cfg.write_text(content)
    code, _, err = run_cli(capsys, "report", "cli_models:analog", "--config", str(cfg))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_input_shape_is_an_argparse_error(models, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "cli_models:analog", "--input-shape", "1,a"])
    assert exc.value.code == 2
    assert "invalid shape '1,a'" in capsys.readouterr().err


def test_python_dash_m(models):
    proc = subprocess.run([sys.executable, "-m", "analog_compiler", "report", f"{models}:analog",
                           "--input-shape", "1,3,8,8"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "AnalogLinear" in proc.stdout and "per forward of input 1x3x8x8" in proc.stdout
