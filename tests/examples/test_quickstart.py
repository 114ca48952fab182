"""A short run of the README's main job (examples/quickstart.py --quick)."""

from __future__ import annotations

import pytest
from example_helpers import load_example

pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")


_load = load_example


def test_checkpoint_loads_and_is_accurate():
    common = _load("digits_common")
    assert common.CHECKPOINT.is_file() and common.CHECKPOINT.stat().st_size < 1_000_000
    model = common.load_pretrained()
    x_train, y_train, x_test, y_test = common.load_digits_split()
    assert x_test.shape[1:] == (1, 8, 8) and len(y_train) + len(y_test) == 1797
    assert common.evaluate(model, x_test, y_test) > 0.93


def test_quickstart_short_run(tmp_path, capsys):
    quickstart = _load("quickstart")
    assert quickstart.main(["--quick", "--chips", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Held-out accuracy over 1 programmed chip" in out
    assert "drift compensation" in out and "1 day" in out
    assert "TileReport" in out
    for name in ("accuracy_vs_time.png", "digits_analog_1day.onnx"):
        assert (tmp_path / name).stat().st_size > 1000, name
    # the table's accuracies are sane (analog close to the digital model)
    rows = [line for line in out.splitlines() if line.strip().startswith(("0 |", "1 day |"))]
    assert len(rows) == 2
    for row in rows:
        mean = float(row.split("|")[1].split("+-")[0])
        assert mean > 85.0
