"""``ac.sweep``: seeds per chip, statistics, the caller's model and RNG untouched, configs,
formats and the errors the issue lists."""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from sweep_models import TIMES, analog_model, digital_model, inputs, mse

import analog_compiler as ac
from analog_compiler.progress import ProgressBar
from analog_compiler.studies import derive_seed, time_label


@pytest.fixture(scope="module")
def result() -> ac.SweepResult:
    return ac.sweep(analog_model(), mse, TIMES, chips=3, seed=7, progress=False)


def test_statistics_match_numpy_of_the_raw_values(result):
    assert result.metrics == ["mse", "max_err"] and result.configs == ["model"]
    for cell in result.rows():
        raw = np.array(cell.raw)
        assert len(raw) == 3 and np.isfinite(raw).all()
        assert cell.mean == pytest.approx(raw.mean(), rel=1e-12)
        assert cell.std == pytest.approx(raw.std(ddof=1), rel=1e-12)
        assert (cell.min, cell.max) == (raw.min(), raw.max())
    # chips differ (programming noise), drift makes the error grow on average
    assert len(set(result.get(0.0, metric="mse").raw)) == 3
    assert result.get(86400.0, metric="mse").mean > result.get(0.0, metric="mse").mean


def test_chip_values_follow_from_seed_and_index_alone(result):
    # the contract: chip i is programmed from derive_seed(seed, i), time k re-seeded from
    # derive_seed(seed, i, k); a hand loop over a fresh model reproduces chip 2 exactly
    model = analog_model()
    torch.manual_seed(derive_seed(7, 2))
    ac.program_analog_weights(model)
    for k, t in enumerate(TIMES):
        torch.manual_seed(derive_seed(7, 2, k))
        ac.drift_analog_weights(model, t)
        with torch.no_grad():
            assert mse(model)["mse"] == result.get(t, metric="mse").raw[2]
    # fewer chips: the same first chips; another seed: other chips
    fewer = ac.sweep(analog_model(), mse, TIMES, chips=2, seed=7, progress=False)
    other = ac.sweep(analog_model(), mse, TIMES, chips=2, seed=8, progress=False)
    for t in TIMES:
        assert fewer.get(t, metric="mse").raw == result.get(t, metric="mse").raw[:2]
        assert other.get(t, metric="mse").raw[0] != result.get(t, metric="mse").raw[0]


def test_callers_model_and_global_rng_are_untouched():
    model = analog_model()
    torch.manual_seed(123)
    ac.program_analog_weights(model)
    ac.drift_analog_weights(model, 60.0)
    before = copy.deepcopy(model.state_dict())
    rng = torch.random.get_rng_state()
    seen = []
    ac.sweep(model, lambda m: seen.append(m) or 0.0, TIMES, chips=2, progress=False)
    assert torch.equal(rng, torch.random.get_rng_state())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]) if isinstance(value, torch.Tensor) \
            else value == after[key], key
    # one working copy for every chip and time, not the caller's model, in eval mode
    assert len(seen) == 2 * len(TIMES) and all(m is seen[0] for m in seen)
    assert seen[0] is not model and not seen[0].training


def test_ideal_config_reproduces_the_digital_metric_on_every_chip():
    digital = digital_model()
    x = inputs()

    def first_output(model):
        return model(x)[0, 0]  # a one-element tensor is a number

    res = ac.sweep(digital, first_output, [0.0, 3.0e7], chips=2,
                   configs={"ideal": ac.FloatingPointRPUConfig()}, progress=False)
    with torch.no_grad():
        expected = float(digital(x)[0, 0])
    for cell in res.rows():
        assert cell.metric == "value" and cell.std == 0.0
        assert cell.raw == pytest.approx((expected, expected), abs=1e-6)
    assert all(not isinstance(m, ac.AnalogLayerBase) for m in digital.modules())


def test_configs_share_chip_seeds_and_keep_their_labels():
    gdc = ac.InferenceRPUConfig()
    configs = {"gdc": gdc, "no compensation": ac.InferenceRPUConfig(drift_compensation=None)}
    both = ac.sweep(digital_model(), mse, TIMES, chips=2, configs=configs, progress=False)
    alone = ac.sweep(digital_model(), mse, TIMES, chips=2, configs=[gdc], progress=False)
    assert both.configs == ["gdc", "no compensation"] and alone.configs == ["config 0"]
    for t in TIMES:
        assert both.get(t, "gdc", "mse").raw == alone.get(t, "config 0", "mse").raw
    with pytest.raises(ValueError, match="give config="):
        both.get(0.0, metric="mse")
    with pytest.raises(KeyError, match="no time"):
        both.get(5.0, "gdc", "mse")


def test_formats_round_trip_and_plot(result, tmp_path):
    data = json.loads(result.to_json())
    assert data["chips"] == 3 and len(data["cells"]) == 2 * len(TIMES)
    assert ac.SweepResult.from_json(result.to_json()).to_dict() == result.to_dict()
    md = result.to_markdown().splitlines()
    assert md[2].startswith("| time | config | metric | mean |") and len(md) == 4 + 6
    cell = result.get(3600.0, metric="mse")
    assert f"| 1 hour | model | mse | {cell.mean:.4g} |" in result.to_markdown()
    text = str(result)
    assert "3 chip(s), seed 7" in text and "1 day" in text
    assert f"{cell.mean:.4f} +- {cell.std:.4f} [{cell.min:.4f}, {cell.max:.4f}]" in text
    assert f"{100 * cell.mean:.2f} +- {100 * cell.std:.2f} %" in \
        result.to_text(scale=100, digits=2, suffix=" %", ranges=False)
    png = result.plot(tmp_path / "sweep.png")
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("t", "label"), [(0.0, "0"), (3600.0, "1 hour"), (7200.0, "2 hours"),
                                          (86400.0, "1 day"), (30 * 86400.0, "1 month"),
                                          (365 * 86400.0, "1 year"), (90.0, "90 s")])
def test_time_labels(t, label):
    assert time_label(t) == label


def test_progress_bar_only_when_asked():
    stream = io.StringIO()
    bar = ProgressBar(20, "work", enabled=True, stream=stream)
    for _ in range(20):
        bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("work [" + "#" * 24 + "] 20/20")
    quiet = io.StringIO()
    bar = ProgressBar(20, "work", enabled=None, delay=60.0, stream=quiet)
    bar.update(20)
    assert quiet.getvalue() == ""


def test_progress_true_writes_to_stderr(capsys):
    ac.sweep(analog_model(), mse, [0.0], chips=1, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "sweep [" in err and "1/1" in err


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"times": [3600.0, 0.0]}, ValueError, "sorted ascending"),
    ({"times": [0.0, 0.0]}, ValueError, "without repeats"),
    ({"times": [-1.0]}, ValueError, ">= 0 seconds"),
    ({"times": [math.nan]}, ValueError, "finite numbers"),
    ({"times": []}, ValueError, "times is empty"),
    ({"times": 5}, TypeError, "sequence of seconds"),
    ({"chips": 0}, ValueError, "chips must be >= 1"),
    ({"chips": 2.5}, TypeError, "chips must be an integer"),
    ({"seed": "x"}, TypeError, "seed must be an integer"),
    ({"configs": "cfg"}, TypeError, "configs must be None"),
    ({"evaluate": "acc"}, TypeError, "evaluate must be callable"),
    ({"evaluate": lambda m: "high"}, TypeError, "its return value is str"),
    ({"evaluate": lambda m: None}, TypeError, "its return value is NoneType"),
    ({"evaluate": lambda m: [1.0]}, TypeError, "number or a dict of numbers"),
    ({"evaluate": lambda m: torch.ones(2)}, TypeError, "its return value is Tensor"),
    ({"evaluate": lambda m: {"acc": "x"}}, TypeError, "its value for 'acc' is str"),
    ({"evaluate": lambda m: {}}, TypeError, "empty dict"),
    ({"evaluate": lambda m: True}, TypeError, "is bool"),
])
def test_bad_input_is_one_clear_error(kwargs, error, message):
    args = {"model": analog_model(), "evaluate": lambda m: 1.0, "times": [0.0], "chips": 1}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        ac.sweep(**args, progress=False)


def test_inconsistent_metric_names_and_bad_models():
    calls = []

    def changing(model):
        calls.append(1)
        return {"a": 1.0} if len(calls) == 1 else {"b": 1.0}

    with pytest.raises(ValueError, match=r"returned the metrics \['b'\] at config 'model', "
                                         r"chip 0, t = 1 hour, but \['a'\]"):
        ac.sweep(analog_model(), changing, [0.0, 3600.0], progress=False)
    with pytest.raises(ac.ModuleError, match="has no analog layers"):
        ac.sweep(digital_model(), mse, [0.0], progress=False)
    with pytest.raises(ac.ModuleError, match="analog layers already"):
        ac.sweep(analog_model(), mse, [0.0], configs=[ac.InferenceRPUConfig()])
    with pytest.raises(TypeError, match=r"configs\['x'\] must be an InferenceRPUConfig"):
        ac.sweep(digital_model(), mse, [0.0], configs={"x": 3})
    with pytest.raises(ac.ModuleError, match="mapped no layer"):
        ac.sweep(torch.nn.ReLU(), mse, [0.0], configs=[ac.InferenceRPUConfig()])
