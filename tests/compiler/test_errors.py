"""Bad input gets one clear error."""

from __future__ import annotations

import pytest
import torch
from compiler_models import MLP, WithUntraceableBranch

import analog_compiler as ac

IDEAL = ac.FloatingPointRPUConfig()


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="model must be an nn.Module, got function"):
        ac.convert(lambda x: x, IDEAL)
    with pytest.raises(TypeError, match="convert_to_analog: model must be"):
        ac.convert_to_analog("model", IDEAL)


def test_config_of_the_wrong_type():
    with pytest.raises(TypeError, match="convert: rpu_config must be an InferenceRPUConfig"):
        ac.convert(MLP(), {"mapping": 1})
    with pytest.raises(TypeError, match="rpu_config"):
        ac.convert(MLP(), ac.MappingParameter())


def test_example_inputs_of_the_wrong_shape_traced():
    with pytest.raises(ValueError, match=r"input 0: shape \(2, 7\).*fc1") as info:
        ac.convert(MLP(), IDEAL, example_inputs=torch.randn(2, 7))
    assert "Traceback" not in str(info.value)


def test_example_inputs_of_the_wrong_shape_untraceable():
    with pytest.raises(ValueError, match=r"^convert: the model \(WithUntraceableBranch\) failed on "
                                         r"example_inputs \(input 0: shape \(3, 5\)\)"):
        ac.convert(WithUntraceableBranch(), IDEAL, example_inputs=(torch.randn(3, 5),))


def test_good_example_inputs_annotate_shapes():
    model = ac.convert(MLP(), IDEAL, example_inputs={"x": torch.randn(2, 20)})
    assert model(torch.randn(2, 20)).shape == (2, 5)


def test_bad_layer_map():
    with pytest.raises(TypeError, match="layer_map"):
        ac.convert(MLP(), IDEAL, layer_map=[1])
    with pytest.raises(TypeError, match="from_digital"):
        ac.convert(MLP(), IDEAL, layer_map={torch.nn.Linear: int})


def test_a_failing_pass_falls_back_and_is_recorded(monkeypatch):
    import analog_compiler.compiler.passes as passes

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(passes, "find_sites", broken)
    model = MLP()
    analog = ac.convert(model, IDEAL)
    log = analog.analog_conversion_log
    assert "pass 'canonicalize_functional' failed" in log.fallbacks[""] and "boom" in \
        log.fallbacks[""]
    assert isinstance(analog.fc1, ac.AnalogLinear)  # the sweep still swaps the layers
    x = torch.randn(2, 20)
    assert torch.allclose(analog(x), model(x), atol=1e-5)


def test_config_callback_errors_propagate():
    def bad(name, module, rpu_config):
        raise KeyError(name)

    with pytest.raises(TypeError, match=r"specific_rpu_config_fun\('fc1'\) raised KeyError"):
        ac.convert_to_analog(MLP(), IDEAL, specific_rpu_config_fun=bad)
