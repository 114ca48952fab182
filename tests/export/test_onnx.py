"""export_onnx: onnxruntime parity, the emulated periphery, metadata, bad input."""

from __future__ import annotations

import os

import pytest
import torch
from export_helpers import KINDS, analog_model, quantized_noise_free, rpu
from torch import nn

import analog_compiler as ac
from analog_compiler.export import (
    ExportVerificationError,
    export_onnx,
    read_metadata,
    rpu_config_from_metadata,
    to_digital,
)
from analog_compiler.export.emulate import replace_with_emulation
from analog_compiler.export.onnx import run_onnxruntime, verify_onnx

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _one_adc_step(model: nn.Module, x: torch.Tensor) -> float:
    """A bound on one ADC step in output units for the last layer (step * input scale * output
    scale * input splits), the tolerance of the quantized comparisons."""
    _, layer = list(ac.analog_layers(model))[-1]
    arr = layer.analog_module
    io = arr.rpu_config.forward
    scales = arr.output_scales() if arr.output_scales() is not None else torch.ones(1)
    return float(io.out_step * scales.abs().max() * arr.plan.n_in * 2 ** io.max_bm_rounds
                 * max(1.0, float(x.abs().max())) * 4)


def _assert_within_adc_step(got: torch.Tensor, want: torch.Tensor, model: nn.Module,
                            x: torch.Tensor) -> None:
    """Every output within one ADC step, and almost all of them equal to float rounding."""
    diff = (got - want).abs()
    assert float(diff.max()) <= _one_adc_step(model, x)
    assert float((diff <= 1e-5 + 1e-5 * want.abs()).float().mean()) >= 0.99


def test_default_export_matches_to_digital_and_has_dynamic_batch(tmp_path):
    analog, x = analog_model("conv2d_grouped", rpu())
    ac.drift_analog_weights(analog, 3600.0)
    model = nn.Sequential(analog, nn.Flatten(), nn.Linear(8 * 3 * 3, 5)).eval()
    res = export_onnx(model, (x,), tmp_path / "m.onnx", seed=0)
    assert res.path.is_file() and res.max_rel_diff <= 1e-4
    x2 = torch.randn(7, *x.shape[1:])
    with torch.no_grad():
        want = to_digital(model)(x2)
    (got,) = run_onnxruntime(res.path, [x2])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_keep_quantization_emulation_matches_analog(kind):
    analog, x = analog_model(kind, rpu(out_noise=0.0))
    ac.drift_analog_weights(analog, 86400.0)
    emulated = replace_with_emulation(quantized_noise_free(analog))
    assert not list(ac.analog_layers(emulated))
    with torch.no_grad():
        _assert_within_adc_step(emulated(x), quantized_noise_free(analog)(x), analog, x)


def test_keep_quantization_bound_management_and_input_ranges():
    # a small ADC range clips, so iterative bound management has to redo vectors
    analog, x = analog_model("linear", rpu(out_noise=0.0, out_bound=0.5, max_in=40))
    x = x * 5
    ac.program_analog_weights(analog)
    reference = quantized_noise_free(analog)
    none = replace_with_emulation(quantized_noise_free(ac_no_bm(analog)))
    with torch.no_grad():
        want = reference(x)
        assert not torch.allclose(none(x), want, atol=1e-3)  # BM matters here
        _assert_within_adc_step(replace_with_emulation(reference)(x), want, analog, x)


def ac_no_bm(model: nn.Module) -> nn.Module:
    from export_helpers import with_io
    return with_io(model, bound_management=ac.BoundManagementType.NONE)


def test_keep_quantization_onnx_matches_analog(tmp_path):
    analog, x = analog_model("conv1d", rpu(out_noise=0.0))
    ac.drift_analog_weights(analog, 3600.0)
    res = export_onnx(analog, x, tmp_path / "q.onnx", keep_quantization=True)
    ops = {n.op_type for n in __import__("onnx").load(str(res.path)).graph.node}
    assert {"Round", "MatMul"} <= ops and ("Clip" in ops or "Min" in ops)
    (got,) = run_onnxruntime(res.path, [x])
    with torch.no_grad():
        want = quantized_noise_free(analog)(x)
    _assert_within_adc_step(got, want, analog, x)


def test_metadata_round_trip(tmp_path):
    cfg = rpu()
    analog, x = analog_model("linear", cfg)
    res = export_onnx(analog, (x,), str(tmp_path / "m.onnx"), t_inference=86400.0, seed=1)
    meta = read_metadata(res.path)
    assert meta["t_inference"]["requested"] == 86400.0
    assert set(meta["t_inference"]["layers"].values()) == {86400.0}
    assert meta["tile_plan"]["0"]["in_sizes"] == [20, 20]
    assert meta["tile_plan"]["2"]["tile_count"] == 2
    restored = rpu_config_from_metadata(res.path)
    assert isinstance(restored, ac.InferenceRPUConfig) and restored == cfg
    assert rpu_config_from_metadata(res.path, layer="2") == cfg
    with pytest.raises(ValueError, match="no analog layer"):
        rpu_config_from_metadata(res.path, layer="nope")


def test_verification_failure_is_reported(tmp_path):
    analog, x = analog_model("linear", rpu())
    res = export_onnx(analog, (x,), tmp_path / "m.onnx", verify=False)
    assert res.max_abs_diff is None
    with pytest.raises(ExportVerificationError, match="largest difference"):
        verify_onnx(res.path, torch.zeros(6, 10) + 5.0, [x])


def test_dynamo_exporter(tmp_path):
    layer = ac.AnalogLinear(6, 3, rpu_config=rpu()).eval()
    res = export_onnx(layer, torch.randn(2, 6), tmp_path / "d.onnx", exporter="dynamo")
    assert res.exporter == "dynamo" and res.max_rel_diff <= 1e-4
    assert read_metadata(res.path)["rpu_config"]["type"] == "InferenceRPUConfig"


def test_bad_path_and_arguments(tmp_path, monkeypatch):
    analog, x = analog_model("linear", rpu())
    with pytest.raises(FileNotFoundError, match="path"):
        export_onnx(analog, x, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="directory"):
        export_onnx(analog, x, tmp_path)
    with pytest.raises(ValueError, match="t_inference"):
        export_onnx(analog, x, tmp_path / "m.onnx", t_inference=-5)
    with pytest.raises(ValueError, match="no analog layers"):
        export_onnx(nn.Linear(3, 2), torch.randn(1, 3), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="example_inputs"):
        export_onnx(analog, [1, 2], tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(analog, x, tmp_path / "m.onnx", exporter="tf")
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro)
                        else real_access(p, mode))
    with pytest.raises(PermissionError, match="path"):
        export_onnx(analog, x, ro / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("keep_quantization", [False, True])
def test_converted_transformer_block_onnx(tmp_path, keep_quantization):
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(32, 4, dim_feedforward=48, dropout=0.0,
                                       batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    analog = ac.convert(block, rpu(max_in=20, out_noise=0.0)).eval()
    ac.drift_analog_weights(analog, 3600.0)
    res = export_onnx(analog, x, tmp_path / "block.onnx", keep_quantization=keep_quantization)
    assert res.max_rel_diff <= 1e-4
    (got,) = run_onnxruntime(res.path, [x])
    with torch.no_grad():
        want = (quantized_noise_free(analog) if keep_quantization else to_digital(analog))(x)
    if keep_quantization:
        _assert_within_adc_step(got, want, analog, x)
    else:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert run_onnxruntime(res.path, [torch.randn(3, 5, 32)])[0].shape == (3, 5, 32)


def test_keep_quantization_hwa_input_ranges_and_learned_output_scales(tmp_path):
    cfg = rpu(out_noise=0.0)
    cfg = cfg.replace(
        mapping=cfg.mapping.replace(learn_out_scaling=True, out_scaling_columnwise=True),
        pre_post=ac.PrePostProcessingParameter(
            input_range=ac.InputRangeParameter(enable=True, init_value=1.5,
                                               init_from_data=0)))
    analog, x = analog_model("linear", cfg)
    with torch.no_grad():
        for _, layer in ac.analog_layers(analog):
            layer.analog_module.out_scaling_alpha.uniform_(0.5, 2.0)
            layer.analog_module.input_range.uniform_(0.8, 2.0)
    ac.drift_analog_weights(analog, 60.0)
    res = export_onnx(analog, x, tmp_path / "hwa.onnx", keep_quantization=True)
    (got,) = run_onnxruntime(res.path, [x])
    with torch.no_grad():
        _assert_within_adc_step(got, quantized_noise_free(analog)(x), analog, x)
