"""Presets and HWA config defaults equal the reference facts (aihwkit 1.2.0)."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac


def test_standard_io_parameters() -> None:
    io = ac.StandardIOParameters()
    assert isinstance(io, ac.IOParameters)
    assert io.inp_res == io.out_res == pytest.approx(1 / 254)
    assert (io.out_bound, io.out_noise) == (10.0, 0.04)
    assert io.bound_management is ac.BoundManagementType.ITERATIVE
    assert io.noise_management is ac.NoiseManagementType.ABS_MAX
    assert io.w_noise == 0.0 and io.w_noise_type is ac.WeightNoiseType.NONE
    assert ac.StandardIOParameters(out_noise=0.0).out_noise == 0.0


def test_standard_hwa_training_preset() -> None:
    rc = ac.StandardHWATrainingPreset()
    assert type(rc) is ac.InferenceRPUConfig
    mp = rc.mapping
    assert (mp.weight_scaling_omega, mp.weight_scaling_columnwise) == (1.0, True)
    assert (mp.max_input_size, mp.max_output_size, mp.digital_bias) == (512, 0, True)
    assert mp.learn_out_scaling and mp.out_scaling_columnwise
    io = rc.forward
    assert io.inp_res == io.out_res == pytest.approx(1 / 254)
    assert io.bound_management is ac.BoundManagementType.NONE
    assert io.noise_management is ac.NoiseManagementType.CONSTANT and io.nm_thres == 1.0
    assert (io.w_noise, io.w_noise_type) == (0.0175, ac.WeightNoiseType.PCM_READ)
    assert (io.out_noise, io.out_bound) == (0.04, 10.0)
    if hasattr(io, "ir_drop"):
        assert io.ir_drop == 1.0
    assert rc.remap.type is ac.WeightRemapType.CHANNELWISE_SYMMETRIC
    assert rc.remap.remapped_wmax == 1.0
    assert rc.clip.type is ac.WeightClipType.FIXED_VALUE and rc.clip.fixed_value == 1.0
    ir = rc.pre_post.input_range
    assert ir.enable and ir.learn_input_range and ir.init_value == 3.0
    assert (ir.init_from_data, ir.init_std_alpha, ir.decay) == (100, 3.0, 0.001)
    assert (ir.input_min_percentage, ir.output_min_percentage) == (0.95, 0.95)
    assert not ir.manage_output_clipping
    assert (ir.gradient_scale, ir.gradient_relative) == (1.0, True)
    assert isinstance(rc.noise_model, ac.PCMLikeNoiseModel)
    assert isinstance(rc.drift_compensation, ac.GlobalDriftCompensation)
    assert rc.modifier.type is ac.WeightModifierType.NONE
    assert ac.InferenceRPUConfig.from_json(rc.to_json()) == rc
    assert ac.StandardHWATrainingPreset(clip=ac.WeightClipParameter()).clip.type is \
        ac.WeightClipType.NONE


def test_hwa_defaults_change_nothing() -> None:
    rc = ac.InferenceRPUConfig()
    m = rc.modifier
    assert m.type is ac.WeightModifierType.NONE
    assert (m.std_dev, m.res, m.pdrop, m.rel_to_actual_wmax, m.assumed_wmax) == (
        0.0, 0.0, 0.0, True, 1.0)
    assert m.coeffs == (0.0105392, 0.0768, -0.046925) and not m.enable_during_test
    assert rc.clip.type is ac.WeightClipType.NONE and rc.clip.sigma == 2.5
    assert rc.clip.fixed_value == -1.0
    assert rc.remap.type is ac.WeightRemapType.NONE
    assert not rc.pre_post.input_range.enable
    names = [n for n, _ in ac.AnalogLinear(4, 2, rpu_config=rc).named_parameters()]
    assert names == ["analog_module.weight", "analog_module.bias"]


def test_preset_layer_trains() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(16, 4, rpu_config=ac.StandardHWATrainingPreset())
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    ac.attach_hwa_hooks(opt, layer)
    x = torch.randn(8, 16)
    layer(x).pow(2).mean().backward()
    opt.step()
    arr = layer.analog_module
    assert arr.weight.abs().max() <= 1.0 + 1e-6
    assert {n for n, _ in layer.named_parameters()} == {
        "analog_module.weight", "analog_module.bias", "analog_module.input_range",
        "analog_module.out_scaling_alpha"}
