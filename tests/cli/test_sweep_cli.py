"""``analog-compiler sweep``: configs, outputs, time units, one-line errors, and a run under
``torchrun --nproc-per-node 2`` that prints and writes the one-process result."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from cli_helpers import run_cli

import analog_compiler as ac
from analog_compiler.cli.sweep import parse_times

MODELS = textwrap.dedent("""
    import torch
    from torch import nn
    import analog_compiler as ac

    def digital():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def analog():
        return ac.convert(digital(), ac.InferenceRPUConfig())

    def no_matrix_layers():
        return nn.ReLU()

    def error(model):
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
        ref = digital()(x)
        return {"mse": float(((model(x) - ref) ** 2).mean())}

    def first(model):
        return float(model(torch.ones(1, 8))[0, 0])

    def words(model):
        return "good"

    def crash(model):
        raise ZeroDivisionError("bad metric")

    NOT_CALLABLE = 3
""")


@pytest.fixture()
def models(tmp_path, monkeypatch):
    path = tmp_path / "sweep_cli_models.py"
    path.write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def test_parse_times_units():
    assert parse_times("0, 90, 2min,1h,1.5d,1w,1mo,1y") == [
        0.0, 90.0, 120.0, 3600.0, 1.5 * 86400, 7 * 86400, 30 * 86400, 365 * 86400]


def test_two_configs_with_json_and_plot(models, tmp_path, capsys):
    (tmp_path / "gdc.json").write_text(ac.InferenceRPUConfig().to_json())
    (tmp_path / "ideal.json").write_text(ac.FloatingPointRPUConfig().to_json())
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    code, out, err = run_cli(capsys, "sweep", "sweep_cli_models:digital", "--eval",
                             f"{models}:error", "--times", "0,1d", "--chips", "2",
                             "--config", str(tmp_path / "gdc.json"),
                             "--config", str(tmp_path / "ideal.json"),
                             "--json", str(js), "--plot", str(png))
    assert code == 0, err
    assert "2 chip(s), seed 0, 2 time(s), metric 'mse'" in out
    assert out.splitlines()[1].split() == ["time", "|", "gdc", "|", "ideal"]
    result = ac.SweepResult.from_json(js.read_text())
    assert result.configs == ["gdc", "ideal"] and result.times == [0.0, 86400.0]
    assert result.get(86400.0, "ideal").raw == pytest.approx((0.0, 0.0), abs=1e-10)
    assert result.get(86400.0, "gdc").mean > 1e-6
    assert png.read_bytes().startswith(b"\x89PNG")


def test_analog_model_markdown_and_ignored_config(models, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(ac.InferenceRPUConfig().to_json())
    code, out, err = run_cli(capsys, "sweep", "sweep_cli_models:analog", "--eval",
                             "sweep_cli_models:first", "--times", "0,1h", "--chips", "3",
                             "--seed", "4", "--markdown", "--config", str(cfg))
    assert code == 0, err
    assert "--config is ignored" in err
    assert out.startswith("Sweep over 3 chip(s), seed 4") and "| 1 hour | model | value |" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--times", "1h,0"], "times must be sorted ascending"),
    (["--chips", "0"], "chips must be >= 1"),
    (["--eval", "sweep_cli_models:missing"], "has no attribute 'missing'"),
    (["--eval", "sweep_cli_models:NOT_CALLABLE"], "is not callable"),
    (["--eval", "sweep_cli_models"], "--eval: expected MODULE:FUNC"),
    (["--eval", "sweep_cli_models:words"], "evaluate must return a number or a dict of numbers"),
    (["--eval", "sweep_cli_models:crash"],
     "sweep_cli_models:crash failed: ZeroDivisionError: bad metric"),
    (["--target", "sweep_cli_models:no_matrix_layers"], "mapped no layer onto analog tiles"),
])
def test_errors_are_one_line(models, capsys, args, message):
    argv = {"--target": "sweep_cli_models:digital", "--eval": "sweep_cli_models:first",
            "--times": "0", "--chips": "1"}
    argv.update(dict(zip(args[::2], args[1::2])))
    target = argv.pop("--target")
    code, _, err = run_cli(capsys, "sweep", target, *[v for kv in argv.items() for v in kv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_bad_time_is_an_argparse_error(models, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "sweep", "sweep_cli_models:digital", "--eval", "sweep_cli_models:first",
                "--times", "0,1x")
    assert exc.value.code == 2 and "invalid time '1x'" in capsys.readouterr().err


def test_under_torchrun_two_processes(models, tmp_path, capsys):
    args = ["sweep", f"{models}:analog", "--eval", f"{models}:error", "--times", "0,1h,1y",
            "--chips", "3", "--no-progress"]
    code, single_out, err = run_cli(capsys, *args, "--json", str(tmp_path / "one.json"))
    assert code == 0, err
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "analog_compiler", *args,
                           "--json", str(tmp_path / "two.json")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert (one.pop("world_size"), two.pop("world_size")) == (1, 2)
    assert one == two  # the same raw values, bit for bit
    # rank 0 alone prints the table, which is the one-process table
    assert proc.stdout == single_out.replace("metric 'mse'", "metric 'mse', 2 processes")
