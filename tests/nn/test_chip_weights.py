"""get_weights reads the chip (programmed, drifted), get_target_weights the targets; the
realistic read; the digital copy, the ONNX export and checkpoints agree with the reading."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from analog_compiler.runtime.programming import expand_row_values
from torch import nn

import analog_compiler as ac


def config(omega: float = 1.0, compensation: bool = False, perfect: bool = True,
           **mapping) -> ac.InferenceRPUConfig:
    """PCM chip; perfect periphery by default so the forward is exactly x @ W_chip^T."""
    return ac.InferenceRPUConfig(
        forward=ac.IOParameters(is_perfect=perfect),
        mapping=ac.MappingParameter(weight_scaling_omega=omega, weight_scaling_columnwise=True,
                                    **mapping),
        drift_compensation=ac.GlobalDriftCompensation() if compensation else None)


def layer_with(rc: ac.InferenceRPUConfig, seed: int = 0, shape=(48, 20)) -> ac.AnalogLinear:
    torch.manual_seed(seed)
    layer = ac.AnalogLinear(*shape, rpu_config=rc)
    layer.set_weights(torch.randn(shape[1], shape[0]) * 0.2, torch.randn(shape[1]) * 0.1)
    return layer.eval()


def row_factor(layer: ac.AnalogLinear) -> torch.Tensor:
    """The drift-compensation factor of every weight (``[out, in]``)."""
    arr = layer.analog_module
    return expand_row_values(arr.drift_alpha, arr.plan)[0]


# ------------------------------------------------------------------ what get_weights reads
def test_get_weights_follows_program_and_drift() -> None:
    layer = layer_with(config(max_input_size=20))  # 3 input splits: per-split mapping scales
    target, bias = layer.get_weights()
    x = torch.randn(16, 48)
    torch.testing.assert_close(layer(x), F.linear(x, target, bias))  # the chip holds the targets
    layer.program_analog_weights()
    programmed, _ = layer.get_weights()
    assert not torch.allclose(programmed, target, atol=1e-3)  # programming noise shows
    assert torch.equal(layer.get_weights()[0], programmed)  # an exact read is repeatable
    # it is what the forward multiplies (perfect periphery, no compensation)
    torch.testing.assert_close(layer(x), F.linear(x, programmed, bias), atol=1e-5, rtol=1e-5)
    layer.drift_analog_weights(86400.0)
    drifted, _ = layer.get_weights()
    torch.testing.assert_close(layer(x), F.linear(x, drifted, bias), atol=1e-5, rtol=1e-5)
    # PCM drift (t / t0)^-nu, nu ~ 0.05 on average: a day shrinks the weights by ~ 0.6-0.8
    shrink = float((drifted * programmed).sum() / (programmed * programmed).sum())
    assert 0.5 < shrink < 0.9, shrink
    # the targets never changed
    torch.testing.assert_close(layer.get_target_weights()[0], target)
    assert torch.equal(layer.get_target_weights()[1], bias)


def test_apply_weight_scaling_false_is_the_tile_side() -> None:
    layer = layer_with(config(max_input_size=20))
    layer.drift_analog_weights(3600.0)
    arr = layer.analog_module
    raw, _ = layer.get_weights(apply_weight_scaling=False)
    assert torch.equal(raw, arr.chip_weight[0])
    assert float(raw.abs().max()) < 1.5  # normalised conductances (omega 1) plus noise
    scales = expand_row_values(arr.mapping_scales, arr.plan)[0]
    torch.testing.assert_close(layer.get_weights()[0], raw * scales)
    torch.testing.assert_close(layer.get_target_weights(apply_weight_scaling=False)[0],
                               arr.weight[0].detach())


def test_drift_compensation_is_not_part_of_the_weights() -> None:
    # As aihwkit: the exact read shows the drifted chip; the compensation factor is applied by
    # the forward (and folded by to_digital), not by get_weights.
    layer = layer_with(config(compensation=True))
    layer.drift_analog_weights(86400.0 * 30)
    drifted, bias = layer.get_weights()
    factor = row_factor(layer)
    assert float(factor.min()) > 1.2  # a month of drift, compensated
    x = torch.randn(8, 48)
    torch.testing.assert_close(layer(x), F.linear(x, drifted * factor, bias),
                               atol=1e-5, rtol=1e-5)


def test_set_weights_after_programming_starts_a_new_target() -> None:
    layer = layer_with(config())
    layer.drift_analog_weights(3600.0)
    new = torch.randn(20, 48) * 0.1
    layer.set_weights(new)
    assert not layer.analog_module.is_programmed
    torch.testing.assert_close(layer.get_weights()[0], new)
    torch.testing.assert_close(layer.get_target_weights()[0], new)
    layer.program_analog_weights()  # the next chip programs the new targets
    err = (layer.get_weights()[0] - new).abs().mean() / new.abs().mean()
    assert 0.003 < float(err) < 0.3


def test_remap_and_replace_rpu_config_keep_the_targets() -> None:
    layer = layer_with(config(omega=0.0))
    target, _ = layer.get_target_weights()
    layer.drift_analog_weights(86400.0)
    layer.remap_weights(1.0)
    torch.testing.assert_close(layer.get_weights()[0], target)  # not the drifted chip
    model = ac.AnalogSequential(layer_with(config()), nn.ReLU())
    target, _ = model[0].get_target_weights()
    model.eval().drift_analog_weights(86400.0)
    model.replace_rpu_config(config(omega=0.5))
    torch.testing.assert_close(model[0].get_weights()[0], target)


def test_container_dicts() -> None:
    model = ac.AnalogSequential(layer_with(config(), 0), nn.ReLU(),
                                layer_with(config(), 1, (20, 5))).eval()
    targets = model.get_target_weights()
    model.drift_analog_weights(3600.0)
    chips = model.get_weights()
    assert list(chips) == list(targets) == ["0.analog_module", "2.analog_module"]
    for i, key in ((0, "0.analog_module"), (2, "2.analog_module")):
        assert torch.equal(chips[key][0], model[i].get_weights()[0])
        assert torch.equal(targets[key][0], model[i].get_target_weights()[0])
        assert not torch.allclose(chips[key][0], targets[key][0], atol=1e-3)
    raw = model.get_target_weights(apply_weight_scaling=False)["0.analog_module"][0]
    assert float(raw.abs().max()) == pytest.approx(1.0)  # omega 1


def test_tiles_read_their_block() -> None:
    layer = layer_with(config(max_input_size=20, max_output_size=8))
    layer.drift_analog_weights(3600.0)
    chip, _ = layer.get_weights()
    target, _ = layer.get_target_weights()
    raw, _ = layer.get_weights(apply_weight_scaling=False)
    for tile in layer.analog_tiles():
        assert torch.equal(tile.get_weights(), chip[tile.rows, tile.cols])
        assert torch.equal(tile.get_weights(apply_weight_scaling=False), raw[tile.rows, tile.cols])
        assert torch.equal(tile.get_target_weights(), target[tile.rows, tile.cols])
    tile = list(layer.analog_tiles())[4]
    torch.testing.assert_close(tile.get_weights(realistic=True), chip[tile.rows, tile.cols],
                               atol=1e-4, rtol=1e-4)  # perfect periphery: the estimate is exact


def test_conv_layer_reads_its_chip() -> None:
    torch.manual_seed(0)
    conv = ac.AnalogConv2d(4, 6, 3, groups=2, rpu_config=config(max_input_size=10)).eval()
    target, bias = conv.get_weights()
    conv.drift_analog_weights(3600.0)
    chip, _ = conv.get_weights()
    assert chip.shape == target.shape == (6, 2, 3, 3)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(conv(x), F.conv2d(x, chip, bias, groups=2), atol=1e-5,
                               rtol=1e-5)
    realistic_read = conv.analog_module.read_weights()
    torch.testing.assert_close(conv._from_array_layout(realistic_read), chip, atol=1e-4,
                               rtol=1e-4)


# ------------------------------------------------------------------ the realistic read
def test_realistic_read_is_the_least_squares_estimate_of_the_forward() -> None:
    # Perfect periphery: the forward is linear, the estimate equals the chip (times the
    # compensation factor the forward applies, as aihwkit's read_weights).
    layer = layer_with(config(compensation=True, max_input_size=20))
    layer.drift_analog_weights(86400.0)
    exact, _ = layer.get_weights()
    layer.realistic_read_write = True
    read, _ = layer.get_weights()
    torch.testing.assert_close(read, exact * row_factor(layer), atol=1e-4, rtol=1e-4)
    assert torch.equal(layer.get_weights(force_exact=True)[0], exact)
    # apply_weight_scaling=False divides the mapping scales out (not the compensation)
    raw_read, _ = layer.get_weights(apply_weight_scaling=False)
    raw, _ = layer.get_weights(apply_weight_scaling=False, force_exact=True)
    torch.testing.assert_close(raw_read, raw * row_factor(layer), atol=1e-4, rtol=1e-4)


def test_realistic_read_noise_has_the_least_squares_variance() -> None:
    # Output noise sigma on the normalised output, scaled back by alpha = max|x| per vector
    # (noise management): Cov(W_est row) = sigma^2 (X'X)^-1 X' diag(alpha^2) X (X'X)^-1.
    sigma, n_in, n_out = 0.05, 24, 32
    rc = ac.InferenceRPUConfig(
        forward=ac.IOParameters(out_noise=sigma, inp_res=-1, out_res=-1, out_bound=-1,
                                bound_management=ac.BoundManagementType.NONE),
        mapping=ac.MappingParameter(weight_scaling_omega=0.0), drift_compensation=None)
    layer = layer_with(rc, shape=(n_in, n_out))
    layer.realistic_read_write = True
    exact = layer.get_weights(force_exact=True)[0]
    torch.manual_seed(7)
    read = layer.get_weights()[0]
    torch.manual_seed(7)  # read_weights draws its inputs first: the same X
    x = torch.randn(10 * n_in, n_in, dtype=torch.float64)
    alpha2 = x.abs().amax(1) ** 2
    inv = torch.linalg.inv(x.T @ x)
    cov = sigma**2 * inv @ (x.T * alpha2) @ x @ inv
    z = (read - exact).double() / cov.diagonal().sqrt()  # ~ N(0, 1), n_out * n_in of them
    m = z.numel()
    assert abs(float(z.mean())) < 4 / m**0.5
    assert abs(float((z**2).mean()) - 1) < 4 * (2 / m) ** 0.5


def test_realistic_write_programs_and_reads_do_not_change_the_chip() -> None:
    layer = layer_with(config())
    w, b = layer.get_target_weights()
    layer.realistic_read_write = True
    layer.get_weights()
    assert not layer.analog_module.is_programmed  # a read is a read
    layer.set_weights(w, b)
    assert layer.analog_module.is_programmed  # a realistic write programs
    layer.set_weights(w, b, force_exact=True)
    assert not layer.analog_module.is_programmed
    layer.train()
    layer.realistic_read_write = True
    layer.get_weights()
    assert layer.training  # the read ran in eval and restored the mode
    with pytest.raises(ValueError, match="over_sampling"):
        layer.analog_module.read_weights(0)


# ------------------------------------------------------------------ to_digital, ONNX, checkpoints
def test_realistic_digital_copy_holds_get_weights() -> None:
    model = ac.AnalogSequential(layer_with(config(max_input_size=20)), nn.ReLU()).eval()
    model.drift_analog_weights(3600.0)
    digital = ac.to_digital(model, realistic=True)
    w, b = model[0].get_weights()
    assert torch.equal(digital[0].weight, w) and torch.equal(digital[0].bias, b)
    exact = ac.to_digital(model, realistic=False)
    assert torch.equal(exact[0].weight, model[0].get_target_weights()[0])


def test_realistic_digital_copy_with_compensation() -> None:
    model = ac.AnalogSequential(layer_with(config(compensation=True)), nn.ReLU()).eval()
    model.drift_analog_weights(86400.0)
    layer = model[0]
    folded = ac.to_digital(model, realistic=True)[0]
    torch.testing.assert_close(folded.weight, layer.get_weights()[0] * row_factor(layer))
    raw = ac.to_digital(model, realistic=True, fold_scales=False)[0]
    assert torch.equal(raw.weight, layer.get_weights(apply_weight_scaling=False)[0])


def test_onnx_export_computes_with_the_chip_reading(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = ac.AnalogSequential(layer_with(config(max_input_size=20)), nn.ReLU()).eval()
    model.drift_analog_weights(3600.0)
    x = torch.randn(4, 48)
    result = ac.export_onnx(model, (x,), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(result.path))
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    w, b = model[0].get_weights()
    torch.testing.assert_close(torch.from_numpy(y), F.relu(F.linear(x, w, b)), atol=1e-5,
                               rtol=1e-5)


@pytest.mark.parametrize("stage", ["targets", "programmed", "drifted"])
def test_checkpoint_round_trips_the_chip(stage: str) -> None:
    src = ac.AnalogSequential(layer_with(config(compensation=True), 0), nn.ReLU(),
                              layer_with(config(), 1, (20, 5))).eval()
    if stage != "targets":
        src.program_analog_weights()
    if stage == "drifted":
        src.drift_analog_weights(3600.0)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = ac.AnalogSequential(layer_with(config(compensation=True), 5), nn.ReLU(),
                              layer_with(config(), 6, (20, 5))).eval()
    dst.drift_analog_weights(60.0)  # a chip of its own, replaced by the checkpoint's state
    dst.load_state_dict(torch.load(buf, weights_only=True))
    assert dst[0].analog_module.is_programmed == (stage != "targets")
    for key, (w, b) in src.get_weights().items():
        assert torch.equal(dst.get_weights()[key][0], w)
        assert torch.equal(dst.get_weights()[key][1], b)
        assert torch.equal(dst.get_target_weights()[key][0], src.get_target_weights()[key][0])
    x = torch.randn(3, 48)
    torch.testing.assert_close(dst(x), src(x))  # perfect periphery: deterministic forward


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reads() -> None:
    layer = layer_with(config(compensation=True, max_input_size=20)).cuda()
    layer.drift_analog_weights(3600.0)
    w, b = layer.get_weights()
    assert w.is_cuda
    x = torch.randn(8, 48, device="cuda")
    torch.testing.assert_close(layer(x), F.linear(x, w * row_factor(layer), b), atol=1e-4,
                               rtol=1e-4)
    layer.realistic_read_write = True
    torch.testing.assert_close(layer.get_weights()[0], w * row_factor(layer), atol=1e-3,
                               rtol=1e-3)
