"""The ONNX emulation of the periphery features beyond ABS_MAX / ITERATIVE (noise management
MAX and ABS_MAX_NP_SUM, bound management ITERATIVE_WORST_CASE and SHIFT, the IR drop,
``bm_test_negative_bound``) against the analog forward with the noise off."""

from __future__ import annotations

import pytest
import torch
from export_helpers import analog_model, quantized_noise_free, rpu

import analog_compiler as ac
from analog_compiler.export import export_onnx
from analog_compiler.export.emulate import replace_with_emulation
from analog_compiler.export.onnx import run_onnxruntime

SETTINGS = {
    "nm_max": dict(noise_management="MAX"),
    "nm_np_sum": dict(noise_management="ABS_MAX_NP_SUM", out_bound=2.0),
    "worst_case": dict(bound_management="ITERATIVE_WORST_CASE", out_bound=1.0),
    "worst_case_nm_none": dict(bound_management="ITERATIVE_WORST_CASE", out_bound=1.0,
                               noise_management="NONE"),
    "shift": dict(bound_management="SHIFT", out_bound=2.0),
    "ir_drop": dict(ir_drop=1.0, ir_drop_g_ratio=50.0),
    "negative_bound_off": dict(bm_test_negative_bound=False, out_bound=1.0),
}


def _model(setting: str, kind: str = "linear") -> tuple[torch.nn.Module, torch.Tensor]:
    analog, x = analog_model(kind, rpu(out_noise=0.0, **SETTINGS[setting]))
    ac.program_analog_weights(analog)
    return quantized_noise_free(analog), x * 3


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_emulation_matches_the_analog_forward(setting: str) -> None:
    model, x = _model(setting)
    with torch.no_grad():
        want = model(x)
        got = replace_with_emulation(model)(x)
    diff = (got - want).abs()
    # equal to float rounding, but for an ADC step where a different summation order puts a
    # value on the other side of a rounding midpoint
    assert float((diff <= 1e-5 + 1e-5 * want.abs()).float().mean()) >= 0.95, float(diff.max())


@pytest.mark.parametrize("setting", ["shift", "worst_case", "ir_drop"])
def test_emulation_of_convolutions(setting: str) -> None:
    model, x = _model(setting, "conv2d_grouped")
    with torch.no_grad():
        want, got = model(x), replace_with_emulation(model)(x)
    close = (got - want).abs() <= 1e-5 + 1e-5 * want.abs()
    assert float(close.float().mean()) >= 0.95


def test_onnx_runs_the_new_periphery(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    analog, x = analog_model("linear", rpu(
        out_noise=0.0, noise_management="ABS_MAX_NP_SUM", out_bound=2.0, ir_drop=1.0,
        ir_drop_g_ratio=50.0, bound_management="ITERATIVE_WORST_CASE"))
    ac.program_analog_weights(analog)
    res = export_onnx(analog, x, tmp_path / "p.onnx", keep_quantization=True)
    (got,) = run_onnxruntime(res.path, [x])
    with torch.no_grad():
        want = quantized_noise_free(analog)(x)
    close = (got - want).abs() <= 1e-4 + 1e-4 * want.abs()
    assert float(close.float().mean()) >= 0.95
