"""analog_compiler.inputs: one example-inputs rule for convert, report and export_onnx."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import analog_compiler as ac
from analog_compiler.inputs import ExampleInputs, normalize_example_inputs


class Masked(nn.Module):
    """``forward(x, mask=None, scale=None)``: keyword inputs matter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x, mask=None, scale=None):
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        if scale is not None:
            y = y * scale
        return y


X, MASK, SCALE = torch.randn(3, 6), (torch.rand(3, 4) > 0.3).float(), torch.full((3, 4), 2.0)
FORMS = {"tensor": X, "tuple": (X, MASK), "list": [X, MASK],
         "dict": {"scale": SCALE, "x": X}}  # keyword order differs from the signature's
BAD = [3, 1.5, "x", np.zeros((3, 6), dtype=np.float32), {1: X}]


def _analog() -> nn.Module:
    torch.manual_seed(0)
    return ac.convert(Masked(), ac.FloatingPointRPUConfig()).eval()


def _digital_out(model: nn.Module, form: str) -> torch.Tensor:
    inputs = normalize_example_inputs(FORMS[form], "test")
    with torch.no_grad():
        return inputs.call(model)


@pytest.mark.parametrize("form", FORMS)
def test_normalized_forms(form: str) -> None:
    inputs = normalize_example_inputs(FORMS[form], "convert")
    if form == "dict":
        assert inputs.args == () and list(inputs.kwargs) == ["scale", "x"]
        assert inputs.describe() == "scale: shape (3, 4); x: shape (3, 6)"
        assert inputs.first_shape() == (3, 4)
    else:
        assert inputs.kwargs == {} and inputs.args[0] is X
        assert inputs.first_shape() == (3, 6)
    assert normalize_example_inputs(inputs, "report") is inputs
    assert ExampleInputs((X, None)).describe() == "input 0: shape (3, 6); input 1: NoneType"


@pytest.mark.parametrize("verb", ["convert", "report", "export_onnx"])
@pytest.mark.parametrize("bad", BAD, ids=lambda b: type(b).__name__)
def test_every_verb_rejects_the_same_forms(verb: str, bad, tmp_path) -> None:
    call = {"convert": lambda: ac.convert(Masked(), ac.FloatingPointRPUConfig(),
                                          example_inputs=bad),
            "report": lambda: ac.report(_analog(), bad),
            "export_onnx": lambda: ac.export_onnx(_analog(), bad, tmp_path / "m.onnx")}[verb]
    with pytest.raises(TypeError, match=rf"^{verb}: .*example_inputs"):
        call()


@pytest.mark.parametrize("form", FORMS)
def test_convert_and_report_accept_every_form(form: str) -> None:
    converted = ac.convert(Masked(), ac.FloatingPointRPUConfig(), example_inputs=FORMS[form])
    rep = ac.report(converted, FORMS[form])
    assert rep.rows[0].vectors == 3
    assert rep.input_shape == normalize_example_inputs(FORMS[form], "t").first_shape()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_onnx_takes_keyword_inputs(exporter: str, tmp_path) -> None:
    """Keyword inputs (given out of the forward's order) become named ONNX inputs in the
    forward's order; onnxruntime reproduces the model (``verify``)."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    model = _analog()
    res = ac.export_onnx(model, FORMS["dict"], tmp_path / "kw.onnx", exporter=exporter,
                         realistic=False)
    assert res.exporter == exporter and res.max_rel_diff <= 1e-4
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "scale"]
    x2, s2 = torch.randn(5, 6), torch.randn(5, 4)  # the batch axis stays dynamic
    got = session.run(None, {"scale": s2.numpy(), "x": x2.numpy()})[0]
    with torch.no_grad():
        want = model(x2, scale=s2)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)


def test_export_onnx_positional_forms(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = _analog()
    for form in ("tensor", "tuple", "list"):
        res = ac.export_onnx(model, FORMS[form], tmp_path / f"{form}.onnx", realistic=False)
        assert res.max_rel_diff <= 1e-4


@pytest.mark.parametrize(("inputs", "match"), [
    ((X, None, SCALE), r"input 1 is a NoneType"),
    ({"x": X, "mask": True}, r"mask is a bool"),
    ((), r"example_inputs is empty"),
    ({}, r"example_inputs is empty"),
])
def test_export_onnx_needs_tensor_inputs(inputs, match: str, tmp_path) -> None:
    with pytest.raises(TypeError, match=rf"^export_onnx: .*{match}"):
        ac.export_onnx(_analog(), inputs, tmp_path / "m.onnx")


@pytest.mark.parametrize("verb", ["convert", "report", "export_onnx"])
def test_every_verb_reports_a_failing_model_the_same_way(verb: str, tmp_path) -> None:
    bad = torch.randn(2, 5)
    call = {"convert": lambda: ac.convert(Masked(), ac.FloatingPointRPUConfig(),
                                          example_inputs=bad),
            "report": lambda: ac.report(_analog(), bad),
            "export_onnx": lambda: ac.export_onnx(_analog(), bad, tmp_path / "m.onnx")}[verb]
    with pytest.raises(ValueError, match=rf"^{verb}: the model \(\w+\) failed on example_inputs "
                                         r"\(input 0: shape \(2, 5\)\)(.*): \w+Error: "):
        call()


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x, y):
        return self.fc(x) + y


def test_convert_names_unknown_and_missing_keyword_inputs() -> None:
    rc = ac.FloatingPointRPUConfig()
    with pytest.raises(ValueError, match=r"^convert: example_inputs name keyword input\(s\) "
                                         r"\['z'\] .*\['x', 'y'\]"):
        ac.convert(Two(), rc, example_inputs={"x": X, "z": MASK})
    with pytest.raises(ValueError, match=r"^convert: example_inputs give no value for "
                                         r"Two.forward's input 'y'"):
        ac.convert(Two(), rc, example_inputs={"x": X})
    with pytest.raises(ValueError, match=r"unexpected keyword argument 'z'"):  # a plain run
        ac.convert(Masked(), rc, example_inputs={"x": X, "z": MASK})


def test_omitted_optional_inputs_are_run_not_traced() -> None:
    """The graph of ``Masked`` holds the branch of ``mask is not None``; inputs without a mask
    are checked by running the model (they used to fail the shape propagation)."""
    for inputs in (X, {"x": X}, {"x": X, "scale": SCALE}):
        model = ac.convert(Masked(), ac.FloatingPointRPUConfig(), example_inputs=inputs)
        assert isinstance(model.fc, ac.AnalogLinear)
    model = ac.convert(Two(), ac.FloatingPointRPUConfig(), example_inputs=(X, MASK))
    assert isinstance(model.fc, ac.AnalogLinear)
