"""Per-layer policy: precedence name > regex > type > global, None = digital, exclude."""

from __future__ import annotations

import copy
import io
import re
import warnings

import pytest
import torch
from torch import nn

import analog_compiler as ac
from analog_compiler.compiler.policy import LayerPolicy


def cfg(size: int) -> ac.FloatingPointRPUConfig:
    return ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=size,
                                                                 max_output_size=size))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.conv = nn.Conv1d(8, 8, 1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.enc(x)
        return self.head(self.conv(h.unsqueeze(-1)).squeeze(-1))


def sizes(model):
    return {n: m.rpu_config.mapping.max_input_size for n, m in model.named_modules()
            if isinstance(m, ac.AnalogLayerBase)}


def test_precedence_name_regex_type_global():
    policy = LayerPolicy(names={"enc.0": cfg(1)}, regex={r"enc\..*": cfg(2)},
                         types={nn.Linear: cfg(3)})
    analog = ac.convert(Net(), cfg(9), policy=policy)
    assert sizes(analog) == {"enc.0": 1, "enc.2": 2, "head": 3, "conv": 9}
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert rec["conv"].rpu_config is None and rec["head"].rpu_config["mapping"][
        "max_input_size"] == 3


def test_none_keeps_digital_and_dict_form():
    policy = {"head": None, re.compile(r"enc\.2"): cfg(2), "re:con.*": None}
    model = Net()
    analog = ac.convert(model, cfg(9), policy=policy)
    assert type(analog.head) is nn.Linear and type(analog.conv) is nn.Conv1d
    assert isinstance(analog.enc[2], ac.AnalogLinear)
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert rec["head"].status == "digital" and "policy" in rec["head"].reason
    x = torch.randn(3, 8)
    assert torch.allclose(analog(x), model(x), atol=1e-6)


def test_exclude_names_subtrees_and_types():
    analog = ac.convert(Net(), cfg(9), exclude=["enc", nn.Conv1d])
    assert type(analog.enc[0]) is nn.Linear and type(analog.enc[2]) is nn.Linear
    assert type(analog.conv) is nn.Conv1d and isinstance(analog.head, ac.AnalogLinear)
    reasons = {r.name: r.reason for r in analog.analog_conversion_log.records}
    assert reasons["enc.0"] == reasons["conv"] == "excluded"
    # exclude beats an exact name
    analog = ac.convert(Net(), cfg(9), policy={"head": cfg(1)}, exclude="head")
    assert type(analog.head) is nn.Linear


def test_subclass_type_override_beats_base():
    class Special(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 4), Special(4, 4))
    analog = ac.convert(model, cfg(9), policy={nn.Linear: cfg(3), Special: None})
    assert isinstance(analog[0], ac.AnalogLinear) and type(analog[1]) is Special


def test_functional_layers_match_param_or_module_name():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            return torch.nn.functional.linear(x, self.w)

    assert type(ac.convert(F(), cfg(9), policy={"w": None})) is F
    assert sizes(ac.convert(F(), cfg(9), policy={"w_linear": cfg(2)})) == {"w_linear": 2}


def test_unmatched_regex_and_name_warn():
    with pytest.warns(UserWarning, match=r"regex.*'nothing\\\.here'"):
        ac.convert(Net(), cfg(9), policy={"re:nothing\\.here": None})
    with pytest.warns(UserWarning, match="name.*'nope'"):
        ac.convert(Net(), cfg(9), policy={"nope": None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ac.convert(Net(), cfg(9), policy={"re:enc.*": None})


def test_bad_policy_values():
    with pytest.raises(TypeError, match=r"names\['head'\]"):
        ac.convert(Net(), cfg(9), policy={"head": "analog"})
    with pytest.raises(TypeError, match="policy must be"):
        ac.convert(Net(), cfg(9), policy=[1])
    with pytest.raises(ValueError, match="invalid pattern"):
        LayerPolicy(regex={"(": None})
    with pytest.raises(TypeError, match="exclude"):
        ac.convert(Net(), cfg(9), exclude=[3])


def test_convert_to_analog_aihwkit_arguments():
    seen = []

    def fun(name, module, rpu_config):
        seen.append((name, type(module).__name__))
        return cfg(2) if name == "net.head" else rpu_config

    model = ac.convert_to_analog(Net(), cfg(9), specific_rpu_config_fun=fun, module_name="net",
                                 exclude_modules=["net.conv"])
    assert ("net.head", "Linear") in seen and sizes(model) == {"enc.0": 9, "enc.2": 9, "head": 2}
    assert type(model.conv) is nn.Conv1d
    assert isinstance(model, Net) and type(model).__name__ == "AnalogWrapperNet"
    assert model.analog_tile_count() == 1 + 1 + 4  # head: 8 inputs in tiles of 2
    keys = set(model.state_dict())
    assert "head.analog_module.weight" in keys  # no wrapper prefix
    model.eval()
    model.drift_analog_weights(10.0)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert type(loaded).__name__ == "AnalogWrapperNet" and loaded.analog_tile_count() == 6
    x = torch.randn(2, 8)
    assert torch.equal(loaded.head.get_weights()[0], model.head.get_weights()[0])
    assert torch.allclose(loaded(x), model(x))
    assert copy.deepcopy(model).analog_tile_count() == 6
    plain = ac.convert_to_analog(Net(), cfg(9), ensure_analog_root=False)
    assert type(plain) is Net
    with pytest.raises(TypeError, match="specific_rpu_config_fun"):
        ac.convert_to_analog(Net(), cfg(9), specific_rpu_config_fun=lambda n, m, r: 3)
