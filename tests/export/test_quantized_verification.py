"""Verification of kept-quantization exports (analog_compiler/export/verification.py): every
analog layer alone on its recorded input, the end-to-end agreement reported (not enforced), a
layer that disagrees named in the error; the exporters' internal messages kept quiet."""

from __future__ import annotations

import sys

import pytest
import torch
from export_helpers import analog_model, rpu

import analog_compiler as ac
from analog_compiler.export import ExportVerificationError, export_onnx
from analog_compiler.export.emulate import replace_with_emulation
from analog_compiler.export.onnx import _export_graph, _quiet, run_onnxruntime, verify_quantized
from analog_compiler.export.verification import record_layer_io, verify_layers
from analog_compiler.inputs import ExampleInputs

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def emulated(kind: str = "linear"):
    analog, x = analog_model(kind, rpu(out_noise=0.0))
    return replace_with_emulation(analog).eval(), x, analog


def export(module, args, path):
    _export_graph(module, ExampleInputs(tuple(args)), path, None, False, "auto")


def test_export_reports_per_layer_and_end_to_end_agreement(tmp_path) -> None:
    analog, x = analog_model("linear", rpu(out_noise=0.0))
    res = export_onnx(analog, x, tmp_path / "q.onnx", keep_quantization=True)
    agr = res.agreement
    assert agr is not None and len(agr.layers) == len(list(ac.analog_layers(analog))) == 2
    for layer in agr.layers:
        assert layer.outputs > 0 and layer.exact_fraction >= 0.99
    assert agr.min_layer_exact_fraction >= 0.99
    assert res.max_abs_diff == agr.max_abs_diff and 0 <= agr.exact_fraction <= 1
    text = str(agr)
    assert "2 analog layers" in text and "end to end" in text
    plain = export_onnx(analog, x, tmp_path / "d.onnx")  # not quantized: no agreement report
    assert plain.agreement is None


def test_layer_inputs_are_the_ones_of_the_forward() -> None:
    model, x, _ = emulated("conv2d_grouped")
    records = record_layer_io(model, (x,))
    assert len(records) == 2
    (x0, y0), (x1, _) = list(records.values())
    assert x0.shape[0] == y0.shape[0]  # rows of one layer: [N * positions, features]
    assert x1.shape[0] > 0


def test_end_to_end_difference_is_reported_not_enforced(tmp_path) -> None:
    model, x, _ = emulated()
    path = tmp_path / "m.onnx"
    export(model, (x,), path)
    with torch.no_grad():
        reference = model(x) + 0.5  # as if a flipped ADC step had grown through the network
    agr = verify_quantized(path, reference, (x,), model)
    assert agr.max_abs_diff == pytest.approx(0.5, rel=1e-3)
    assert agr.exact_fraction < 0.01 and agr.min_layer_exact_fraction >= 0.99


def test_a_disagreeing_layer_is_named(tmp_path, monkeypatch) -> None:
    model, x, _ = emulated()

    def bad_run(path, inputs):
        (y,) = run_onnxruntime(path, inputs)
        return [y + 1.0]

    layers = verify_layers(model, (x,), export, bad_run)
    assert all(a.exact_fraction == 0.0 for a in layers)
    path = tmp_path / "m.onnx"
    export(model, (x,), path)
    with torch.no_grad():
        reference = model(x)
    import analog_compiler.export.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "run_onnxruntime", bad_run)
    with pytest.raises(ExportVerificationError, match=r"analog layer 0 in onnxruntime agrees"):
        onnx_mod.verify_quantized(path, reference, (x,), model)


def test_exporter_noise_stays_out_of_the_terminal(capfd, monkeypatch) -> None:
    import logging

    with _quiet():
        print("progress line")
        print("Evaluation failed: cannot reshape array", file=sys.stderr)
        logging.getLogger("onnxscript").warning("Evaluation failed: constant folding")
    out, err = capfd.readouterr()
    assert "progress" not in out and "Evaluation failed" not in err
    monkeypatch.setenv("ANALOG_COMPILER_EXPORT_LOGS", "1")
    with _quiet():
        print("Evaluation failed: shown on request", file=sys.stderr)
    assert "shown on request" in capfd.readouterr().err
