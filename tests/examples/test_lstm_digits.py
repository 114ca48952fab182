"""A short run of examples/lstm_digits.py (few epochs, one chip)."""

from __future__ import annotations

import pytest
import torch
from example_helpers import load_example

_load = load_example


@pytest.fixture(scope="module")
def example():
    return _load("lstm_digits")


@pytest.fixture(autouse=True)
def _one_thread():
    """main() sets one thread (tiny matrices); restore the session's count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_run_prints_the_table(example, capsys):
    assert example.main(["--epochs", "6", "--chips", "1", "--hwa-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "AnalogLinear <- LSTM.weight_hh_l0" in out  # the report
    assert "per time step" in out
    for label in ("plain, drift compensation", "plain, no compensation",
                  "HWA fine-tuned, compensation"):
        assert label in out


def test_results_make_sense(example):
    res = example.run(epochs=6, chips=1, hwa_epochs=1, report=False)
    assert res["digital"] > 0.85
    comp, raw = res["plain, drift compensation"], res["plain, no compensation"]
    # a year of drift without compensation loses far more than with it
    assert float(comp["1 year"].mean()) > float(raw["1 year"].mean()) + 0.1
    assert float(comp["1 min"].mean()) > res["digital"] - 0.1
    assert set(res["HWA fine-tuned, compensation"]) == set(example.TIMES)
