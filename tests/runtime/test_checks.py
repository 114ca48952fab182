"""runtime.checks: the one t_inference rule (layers and export verbs agree) and the finite check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analog_compiler.runtime.checks import check_finite, check_t_inference
from torch import nn

import analog_compiler as ac

GOOD = [0, 0.0, 3600, 1e9, np.float32(60.0), np.float64(1.5), np.int64(7)]
BAD = [-1.0, -1e-9, float("nan"), float("inf"), float("-inf"), np.float32("nan"), "1h", True,
       np.bool_(True), [1.0], torch.tensor(1.0)]


@pytest.mark.parametrize("value", GOOD, ids=repr)
def test_good_values_become_floats(value) -> None:
    out = check_t_inference(value, "here")
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bad_values_name_the_caller(value) -> None:
    with pytest.raises(ValueError, match=r"^here: t_inference must be a finite number"):
        check_t_inference(value, "here")


def test_none_only_where_allowed() -> None:
    assert check_t_inference(None, "to_digital", allow_none=True) is None
    with pytest.raises(ValueError, match=r"^AnalogLinear\.drift_analog_weights: t_inference"):
        check_t_inference(None, "AnalogLinear.drift_analog_weights")


@pytest.mark.parametrize(("value", "good"), [(v, True) for v in GOOD[:5]]
                         + [(v, False) for v in BAD], ids=repr)
def test_layer_and_to_digital_accept_the_same_values(value, good: bool) -> None:
    """The layer verb and the export verb share the rule (to_digital used to reject NumPy
    float32 the layer accepted), each naming itself in the message."""
    model = nn.Sequential(ac.AnalogLinear(4, 3, rpu_config=ac.FloatingPointRPUConfig())).eval()
    layer_ok = digital_ok = True
    try:
        model[0].drift_analog_weights(value)
    except ValueError as exc:
        layer_ok = False
        assert str(exc).startswith("AnalogLinear.drift_analog_weights: t_inference")
    try:
        ac.to_digital(model, t_inference=value)
    except ValueError as exc:
        digital_ok = False
        assert str(exc).startswith("to_digital: t_inference")
    assert layer_ok == digital_ok == good


def test_check_finite_counts_nan_and_inf() -> None:
    check_finite(torch.randn(3, 3), "L.set_weights", "weight")
    check_finite(torch.arange(4), "L.set_weights", "weight")  # integers are always finite
    bad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), float("nan")])
    with pytest.raises(ValueError, match=r"^L\.set_weights: bias has non-finite values "
                                         r"\(2 NaN, 2 inf of 5\)"):
        check_finite(bad, "L.set_weights", "bias")
