"""Configs of in-memory training: aihwkit 1.2.0's defaults, validation naming the field, and the
exact JSON round trip."""

import json

import pytest
from analog_compiler.runtime import (
    PULSED_DEVICE_TYPES,
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    InferenceRPUConfig,
    IOParameters,
    LinearStepDevice,
    MappingParameter,
    PiecewiseStepDevice,
    PowStepDevice,
    PulseType,
    SingleRPUConfig,
    SoftBoundsDevice,
    UpdateParameters,
)
from analog_compiler.runtime.config import ConfigBase

# Recorded from aihwkit 1.2.0's Python source (aihwkit/simulator/configs/devices.py and
# parameters/training.py); aihwkit is not a dependency.
AIHWKIT_PULSED = dict(construction_seed=0, corrupt_devices_prob=0.0, corrupt_devices_range=0.1,
                      diffusion=0.0, diffusion_dtod=0.0, dw_min=0.001, dw_min_dtod=0.3,
                      dw_min_dtod_log_normal=False, dw_min_std=0.3, enforce_consistency=True,
                      lifetime=0.0, lifetime_dtod=0.0, perfect_bias=False, reset=0.0,
                      reset_dtod=0.0, reset_std=0.01, up_down=0.0, up_down_dtod=0.01, w_max=0.6,
                      w_max_dtod=0.3, w_min=-0.6, w_min_dtod=0.3, count_pulses=False)
AIHWKIT_OWN = {
    LinearStepDevice: dict(gamma_up=0.0, gamma_down=0.0, gamma_up_dtod=0.05,
                           gamma_down_dtod=0.05, allow_increasing=False,
                           mean_bound_reference=True, mult_noise=True, write_noise_std=0.0),
    SoftBoundsDevice: dict(mult_noise=True, write_noise_std=0.0, reverse_offset=0.01),
    ExpStepDevice: dict(A_up=0.00081, A_down=0.36833, gamma_up=12.44625, gamma_down=12.78785,
                        a=0.244, b=0.2425, dw_min_std_add=0.0, dw_min_std_slope=0.0),
    PowStepDevice: dict(pow_gamma=1.0, pow_gamma_dtod=0.1, pow_up_down=0.0,
                        pow_up_down_dtod=0.0),
    PiecewiseStepDevice: dict(piecewise_up=[1.0], piecewise_down=[1.0]),
}
AIHWKIT_UPDATE = dict(desired_bl=31, fixed_bl=True, pulse_type=PulseType.STOCHASTIC_COMPRESSED,
                      res=0.0, x_res_implicit=0.0, d_res_implicit=0.0, d_sparsity=False,
                      sto_round=False, update_bl_management=True, update_management=True,
                      um_grad_scale=1.0)


@pytest.mark.parametrize("cls", [ConstantStepDevice, LinearStepDevice, SoftBoundsDevice,
                                 ExpStepDevice, PowStepDevice, PiecewiseStepDevice])
def test_device_defaults_are_aihwkits(cls):
    dev = cls()
    for name, value in {**AIHWKIT_PULSED, **AIHWKIT_OWN.get(cls, {})}.items():
        assert getattr(dev, name) == value, (cls.__name__, name)


def test_update_and_single_config_defaults():
    up = UpdateParameters()
    for name, value in AIHWKIT_UPDATE.items():
        assert getattr(up, name) == value, name
    rc = SingleRPUConfig()
    assert isinstance(rc.device, ConstantStepDevice)
    assert rc.forward == IOParameters() and rc.backward == IOParameters()
    assert rc.update == UpdateParameters() and rc.mapping == MappingParameter()
    assert IdealDevice().construction_seed == 0


@pytest.mark.parametrize("cls", PULSED_DEVICE_TYPES)
def test_round_trip_every_device(cls):
    rc = SingleRPUConfig(device=cls(), update=UpdateParameters(pulse_type="MeanCount",
                                                              desired_bl=7))
    text = rc.to_json()
    back = SingleRPUConfig.from_json(text)
    assert back == rc and type(back.device) is cls
    assert ConfigBase.from_dict(json.loads(text)) == rc
    assert back.update.pulse_type is PulseType.MEAN_COUNT


def test_pulse_type_accepts_aihwkit_values_and_names():
    for value, member in (("StochasticCompressed", PulseType.STOCHASTIC_COMPRESSED),
                          ("DETERMINISTIC_IMPLICIT", PulseType.DETERMINISTIC_IMPLICIT),
                          ("None", PulseType.NONE), ("NoneWithDevice", PulseType.NONE_WITH_DEVICE)):
        assert UpdateParameters(pulse_type=value).pulse_type is member


@pytest.mark.parametrize("make, match", [
    (lambda: ConstantStepDevice(dw_min=0.0), r"ConstantStepDevice\.dw_min must be > 0"),
    (lambda: ConstantStepDevice(dw_min_std=-1.0), r"ConstantStepDevice\.dw_min_std"),
    (lambda: ConstantStepDevice(w_min=1.0, w_max=0.5), r"w_min .* must be <= w_max"),
    (lambda: ConstantStepDevice(diffusion=0.1), r"ConstantStepDevice\.diffusion=0\.1 is not"),
    (lambda: SoftBoundsDevice(w_min=0.1), r"SoftBoundsDevice: needs w_min < 0 < w_max"),
    (lambda: SoftBoundsDevice(reverse_up=True), r"SoftBoundsDevice\.reverse_up"),
    (lambda: LinearStepDevice(write_noise_std=0.1), r"LinearStepDevice\.write_noise_std"),
    (lambda: PowStepDevice(pow_gamma=0.0), r"PowStepDevice\.pow_gamma must be > 0"),
    (lambda: ExpStepDevice(w_min=0.2, w_max=0.2), r"ExpStepDevice: needs w_min < w_max"),
    (lambda: LinearStepDevice(w_min=0.0), r"LinearStepDevice: the slopes are relative"),
    (lambda: PiecewiseStepDevice(piecewise_up=[1.0, 0.5]), r"the same length"),
    (lambda: PiecewiseStepDevice(piecewise_up=[]), r"PiecewiseStepDevice\.piecewise_up"),
    (lambda: IdealDevice(lifetime=1.0), r"IdealDevice\.lifetime"),
    (lambda: UpdateParameters(desired_bl=0), r"UpdateParameters\.desired_bl must be >= 1"),
    (lambda: UpdateParameters(pulse_type="bogus"), r"UpdateParameters\.pulse_type"),
    (lambda: UpdateParameters(um_grad_scale=0.0), r"UpdateParameters\.um_grad_scale"),
    (lambda: SingleRPUConfig(mapping=MappingParameter(weight_scaling_omega=-1.0)),
     r"MappingParameter\.weight_scaling_omega"),
])
def test_bad_values_name_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_nested_types_and_assignment_are_checked():
    with pytest.raises(TypeError, match=r"SingleRPUConfig\.device must be"):
        SingleRPUConfig(device=InferenceRPUConfig())
    with pytest.raises(TypeError, match=r"SingleRPUConfig\.update must be"):
        SingleRPUConfig(update=IOParameters())
    rc = SingleRPUConfig()
    with pytest.raises(ValueError, match=r"ConstantStepDevice\.dw_min"):
        rc.device.dw_min = -1.0
    assert rc.device.dw_min == 0.001
