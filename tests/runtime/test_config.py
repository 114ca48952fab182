"""Config dataclasses: aihwkit defaults, validation naming the field, exact JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from analog_compiler.runtime import CONFIG_REGISTRY, ConfigBase
from analog_compiler.runtime.config.io import resolution_step

import analog_compiler as ac


def test_aihwkit_defaults() -> None:
    io = ac.IOParameters()
    assert (io.is_perfect, io.inp_bound, io.inp_res, io.out_bound, io.out_res, io.out_noise) == (
        False, 1.0, 1 / 126, 12.0, 1 / 510, 0.06)
    assert io.w_noise == 0.0 and io.w_noise_type is ac.WeightNoiseType.NONE
    assert io.bound_management is ac.BoundManagementType.ITERATIVE
    assert io.noise_management is ac.NoiseManagementType.ABS_MAX
    assert (io.max_bm_factor, io.max_bm_res, io.nm_thres) == (1000.0, 0.25, 0.0)
    mp = ac.MappingParameter()
    assert (mp.digital_bias, mp.weight_scaling_omega) == (True, 0.0)
    assert not mp.weight_scaling_columnwise
    assert (mp.max_input_size, mp.max_output_size, mp.learn_out_scaling) == (512, 512, False)
    nm = ac.PCMLikeNoiseModel()
    assert (nm.g_max, nm.t_0, nm.t_read) == (25.0, 20.0, 250e-9)
    assert nm.prog_coeff == (0.26348, 1.9650, -1.1731)
    rc = ac.InferenceRPUConfig()
    assert isinstance(rc.noise_model, ac.PCMLikeNoiseModel)
    assert isinstance(rc.drift_compensation, ac.GlobalDriftCompensation)
    fp = ac.FloatingPointRPUConfig()
    assert fp.forward.is_perfect and fp.noise_model is None and fp.drift_compensation is None


def test_quantizer_steps() -> None:
    io = ac.IOParameters()
    assert io.inp_step == pytest.approx(2.0 / 126)
    assert io.out_step == pytest.approx(24.0 / 510)
    assert resolution_step(254, 1.0) == pytest.approx(2.0 / 254)  # r >= 1: number of steps
    assert resolution_step(0.0, 1.0) == 0.0 and resolution_step(-1.0, 5.0) == 0.0
    # max_bm_rounds, as aihwkit's C++ loop: the round with red = 16 is the first whose red
    # exceeds 0.25 / (2/126) = 15.75, and it is still computed (red = 2, 4, 8, 16).
    assert io.max_bm_rounds == 4
    assert ac.IOParameters(inp_res=-1.0, max_bm_factor=100.0).max_bm_rounds == 7  # 2..128
    assert ac.IOParameters(inp_res=-1.0).max_bm_rounds == 10  # 2..1024
    assert ac.IOParameters(max_bm_factor=4).max_bm_rounds == 3  # 2, 4, 8
    assert ac.IOParameters(bound_management="NONE").max_bm_rounds == 0
    assert ac.IOParameters(max_bm_factor=2.0).max_bm_rounds == 2  # 2, 4
    assert ac.IOParameters(out_bound=0.0).max_bm_rounds == 0


def _all_configs() -> list[ConfigBase]:
    """A default and a non-default instance of every registered config class."""
    out: list[ConfigBase] = [cls() for name, cls in sorted(CONFIG_REGISTRY.items())
                             if dataclasses.is_dataclass(cls)]
    out += [
        ac.IOParameters(is_perfect=True, inp_res=1 / 254, out_res=254.0, out_noise=0.123456789,
                        w_noise=0.0175, w_noise_type="PCM_READ", bound_management="NONE",
                        noise_management="constant", nm_thres=3.0, inp_sto_round=True,
                        out_bound=-1.0, inp_noise=0.01, max_bm_factor=8.0, max_bm_res=0.5),
        ac.MappingParameter(weight_scaling_omega=0.6, weight_scaling_columnwise=True,
                            max_input_size=0, max_output_size=17, learn_out_scaling=True,
                            out_scaling_columnwise=True),
        ac.PCMLikeNoiseModel(prog_coeff=(0.1, 0.2, 0.3), g_max=30.5, t_0=1e-3,
                             prog_noise_scale=0.0, read_noise_scale=2.5, drift_scale=1 / 3),
        ac.InferenceRPUConfig(forward=ac.IOParameters(out_noise=0.0), noise_model=None,
                              drift_compensation=ac.PerColumnDriftCompensation()),
        ac.InferenceRPUConfig(drift_compensation=None),
        ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=3)),
        ac.FloatingPointRPUConfig(forward=ac.IOParameters(is_perfect=True, out_noise=0.0)),
    ]
    return out


@pytest.mark.parametrize("config", _all_configs(), ids=lambda c: type(c).__name__)
def test_json_round_trip_exact(config: ConfigBase) -> None:
    data = config.to_dict()
    assert data["type"] == type(config).__name__
    text = json.dumps(data)  # plain JSON-able data, no objects
    back = type(config).from_dict(json.loads(text))
    assert type(back) is type(config) and back == config
    assert back.to_dict() == data
    assert type(config).from_json(config.to_json()) == config
    assert ConfigBase.from_dict(data) == config  # the tag alone is enough


def test_every_registered_class_is_covered() -> None:
    covered = {type(c).__name__ for c in _all_configs()}
    public = {"IOParameters", "MappingParameter", "PCMLikeNoiseModel", "GlobalDriftCompensation",
              "PerColumnDriftCompensation", "InferenceRPUConfig", "FloatingPointRPUConfig"}
    assert public <= covered


def test_enum_names_and_values_accepted() -> None:
    io = ac.IOParameters(noise_management="abs_max", w_noise_type="PCM_READ",
                         bound_management=ac.BoundManagementType.NONE)
    assert io.noise_management is ac.NoiseManagementType.ABS_MAX
    assert io.w_noise_type is ac.WeightNoiseType.PCM_READ
    assert io.bound_management is ac.BoundManagementType.NONE


@pytest.mark.parametrize(("cls", "kwargs", "field"), [
    (ac.MappingParameter, {"max_input_size": -1}, "max_input_size"),
    (ac.MappingParameter, {"max_output_size": -512}, "max_output_size"),
    (ac.MappingParameter, {"max_input_size": 2.5}, "max_input_size"),
    (ac.MappingParameter, {"weight_scaling_omega": -0.5}, "weight_scaling_omega"),
    (ac.MappingParameter, {"weight_scaling_columnwise": "yes"}, "weight_scaling_columnwise"),
    (ac.MappingParameter, {"digital_bias": False}, "digital_bias"),
    (ac.IOParameters, {"out_noise": -0.1}, "out_noise"),
    (ac.IOParameters, {"inp_bound": 0.0}, "inp_bound"),
    (ac.IOParameters, {"inp_bound": -1.0}, "inp_bound"),
    (ac.IOParameters, {"w_noise": float("nan")}, "w_noise"),
    (ac.IOParameters, {"out_bound": float("inf")}, "out_bound"),
    (ac.IOParameters, {"inp_res": "7bit"}, "inp_res"),
    (ac.IOParameters, {"is_perfect": 1}, "is_perfect"),
    (ac.IOParameters, {"noise_management": "BOGUS"}, "noise_management"),
    (ac.IOParameters, {"w_noise_type": "gaussian"}, "w_noise_type"),
    (ac.IOParameters, {"bound_management": 3}, "bound_management"),
    (ac.IOParameters, {"noise_management": "CONSTANT"}, "nm_thres"),
    (ac.IOParameters, {"bound_management": "SHIFT", "out_bound": 0.0}, "out_bound"),
    (ac.IOParameters, {"ir_drop": -1.0}, "ir_drop"),
    (ac.IOParameters, {"ir_drop_g_ratio": 0.0}, "ir_drop_g_ratio"),
    (ac.IOParameters, {"out_noise_std": -0.1}, "out_noise_std"),
    (ac.IOParameters, {"max_bm_factor": 0.5}, "max_bm_factor"),
    (ac.PCMLikeNoiseModel, {"g_max": 0.0}, "g_max"),
    (ac.PCMLikeNoiseModel, {"t_0": -1.0}, "t_0"),
    (ac.PCMLikeNoiseModel, {"prog_noise_scale": -1.0}, "prog_noise_scale"),
    (ac.PCMLikeNoiseModel, {"prog_coeff": (1.0, 2.0)}, "prog_coeff"),
])
def test_bad_values_raise_value_error_naming_field(cls: type, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}|{field}"):
        cls(**kwargs)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"forward": ac.MappingParameter()}, "forward"),
    ({"mapping": ac.IOParameters()}, "mapping"),
    ({"noise_model": ac.GlobalDriftCompensation()}, "noise_model"),
    ({"drift_compensation": "global"}, "drift_compensation"),
])
def test_wrong_nested_config_type_is_type_error(kwargs: dict, field: str) -> None:
    with pytest.raises(TypeError, match=f"InferenceRPUConfig.{field}"):
        ac.InferenceRPUConfig(**kwargs)


def test_replace_validates_again() -> None:
    io = ac.IOParameters()
    assert io.replace(out_noise=0.0).out_noise == 0.0
    with pytest.raises(ValueError, match="out_noise"):
        io.replace(out_noise=-1.0)


def test_from_dict_rejects_bad_data() -> None:
    with pytest.raises(ValueError, match="bogus"):
        ac.IOParameters.from_dict({"type": "IOParameters", "bogus": 1})
    with pytest.raises(ValueError, match="unknown or unexpected config type"):
        ac.FloatingPointRPUConfig.from_dict(ac.InferenceRPUConfig().to_dict())
    with pytest.raises(ValueError, match="unknown or unexpected config type"):
        ac.IOParameters.from_dict({"type": "NoSuchConfig"})
    with pytest.raises(TypeError):
        ac.IOParameters.from_dict("IOParameters")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="IOParameters.noise_management"):
        ac.IOParameters.from_dict({"noise_management": "NOPE"})


# ---------------------------------------------------------------- changes after construction
def test_assignment_is_validated_and_rolled_back_on_error() -> None:
    io = ac.IOParameters()
    io.noise_management = "AVERAGE_ABS_MAX"  # names become enums, as in the constructor
    assert io.noise_management is ac.NoiseManagementType.AVERAGE_ABS_MAX
    with pytest.raises(ValueError, match=r"IOParameters\.out_noise"):
        io.out_noise = -0.5
    assert io.out_noise == 0.06  # unchanged
    with pytest.raises(ValueError, match="noise_management"):
        io.noise_management = "NOT_A_MODE"
    assert io.noise_management is ac.NoiseManagementType.AVERAGE_ABS_MAX
    with pytest.raises(TypeError, match=r"InferenceRPUConfig\.forward"):
        ac.InferenceRPUConfig().forward = "fast"  # type: ignore[assignment]
    # cross-field checks see the new value too
    with pytest.raises(ValueError, match="nm_thres"):
        io.noise_management = "CONSTANT"  # needs nm_thres > 0
    assert io.noise_management is ac.NoiseManagementType.AVERAGE_ABS_MAX


def test_revision_changes_with_every_assignment_only() -> None:
    io = ac.IOParameters()
    r0 = io.revision
    assert io.revision == r0
    io.out_noise = 0.0
    r1 = io.revision
    assert r1 != r0
    with pytest.raises(ValueError):
        io.out_noise = -1.0
    assert io.out_noise == 0.0
    other = ac.IOParameters()
    assert other.revision not in (r0, r1)  # a new object never repeats a revision


def test_layers_see_config_changes_made_after_they_were_built() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(24, 8, rpu_config=ac.InferenceRPUConfig()).eval()
    x = torch.randn(5, 24)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))  # output noise
        layer.analog_module.rpu_config.forward.is_perfect = True  # the aihwkit idiom
        ideal = x @ layer.get_weights()[0].t() + layer.get_weights()[1]
        torch.testing.assert_close(layer(x), ideal, rtol=1e-5, atol=1e-5)
        layer.analog_module.rpu_config.forward = ac.IOParameters(out_noise=0.0, inp_res=-1,
                                                                 out_res=-1, out_bound=0.0)
        torch.testing.assert_close(layer(x), ideal, rtol=1e-5, atol=1e-5)
        layer.analog_module.rpu_config.forward.inp_res = 1 / 2  # 3 DAC levels: far from ideal
        assert (layer(x) - ideal).abs().max() > 0.05


# ---------------------------------------------------------------- FloatingPointRPUConfig.forward
def test_floating_point_forward_is_one_stable_perfect_object() -> None:
    fp = ac.FloatingPointRPUConfig()
    io = fp.forward
    assert io is fp.forward and io.is_perfect
    fp.forward.out_noise = 0.5  # kept (it used to be lost: a new object on every access)
    assert fp.forward.out_noise == 0.5 and fp.forward.revision == io.revision
    back = ac.FloatingPointRPUConfig.from_json(fp.to_json())
    assert back == fp and back.forward.out_noise == 0.5 and back.forward.is_perfect
    # data written before the field existed (no "forward" key) still loads, as perfect
    old = {k: v for k, v in fp.to_dict().items() if k != "forward"}
    assert ac.FloatingPointRPUConfig.from_dict(old).forward == ac.IOParameters(is_perfect=True)


def test_floating_point_forward_must_stay_perfect() -> None:
    with pytest.raises(ValueError, match=r"FloatingPointRPUConfig\.forward must be perfect"):
        ac.FloatingPointRPUConfig(forward=ac.IOParameters())
    with pytest.raises(TypeError, match=r"FloatingPointRPUConfig\.forward"):
        ac.FloatingPointRPUConfig(forward=ac.MappingParameter())  # type: ignore[arg-type]
    fp = ac.FloatingPointRPUConfig()
    with pytest.raises(ValueError, match=r"FloatingPointRPUConfig\.forward\.is_perfect"):
        fp.forward.is_perfect = False
    assert fp.forward.is_perfect  # rolled back
    data = fp.to_dict()
    data["forward"]["is_perfect"] = False
    with pytest.raises(ValueError, match="must be perfect"):
        ac.FloatingPointRPUConfig.from_dict(data)
    ac.IOParameters(is_perfect=True).is_perfect = False  # a free-standing periphery may change


def test_floating_point_layer_keeps_its_forward() -> None:
    layer = ac.AnalogLinear(8, 4, rpu_config=ac.FloatingPointRPUConfig())
    io = layer.rpu_config.forward
    x = torch.randn(3, 8)
    with torch.no_grad():
        y = layer(x)
    assert layer.rpu_config.forward is io
    w, b = layer.get_weights()
    torch.testing.assert_close(y, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_rpu_config_types_is_defined_once() -> None:
    from analog_compiler import runtime
    from analog_compiler.cli import common
    from analog_compiler.compiler import policy
    from analog_compiler.nn import base

    assert {ac.InferenceRPUConfig, ac.FloatingPointRPUConfig} <= set(runtime.RPU_CONFIG_TYPES)
    assert base.RPU_CONFIG_TYPES is runtime.RPU_CONFIG_TYPES
    assert policy.RPU_CONFIG_TYPES is runtime.RPU_CONFIG_TYPES
    assert policy.RPUConfig is runtime.RPUConfig
    assert common.RPU_CONFIG_TYPES is runtime.RPU_CONFIG_TYPES
