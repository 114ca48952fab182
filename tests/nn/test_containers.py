"""AnalogSequential and AnalogWrapper: aihwkit 1.2.0's container calls on the same models."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import analog_compiler as ac


def cfg(tile: int = 4) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(max_input_size=tile,
                                                             max_output_size=tile))


def assert_same_noisy_output(model: nn.Module, other: nn.Module, x: torch.Tensor,
                             seed: int = 3) -> None:
    """Both models give the same output for the same noise draws (seeded forwards)."""
    torch.manual_seed(seed)
    want = model(x)
    torch.manual_seed(seed)
    torch.testing.assert_close(other(x), want)


def seq() -> ac.AnalogSequential:
    torch.manual_seed(0)
    return ac.AnalogSequential(ac.AnalogLinear(6, 5, rpu_config=cfg()), nn.ReLU(),
                               ac.AnalogSequential(ac.AnalogLinear(5, 3, bias=False,
                                                                   rpu_config=cfg())))


def test_sequential_iterators_follow_aihwkit_names():
    model = seq()
    assert isinstance(model, nn.Sequential)
    assert [n for n, _ in model.named_analog_layers()] == ["0", "2.0"]
    assert all(isinstance(m, ac.AnalogLinear) for m in model.analog_layers())
    # analog modules: the containers too (this one first), as aihwkit
    assert [n for n, _ in model.named_analog_modules()] == ["", "0", "2", "2.0"]
    assert list(model.analog_modules())[0] is model
    tiles = dict(model.named_analog_tiles())
    # 6 inputs x 5 outputs on 4x4 tiles: 2 x 2; 5 x 3: 2 x 1
    assert model.analog_tile_count() == len(tiles) == 6
    assert "0.analog_module.g0.i1.j1" in tiles and "2.0.analog_module.g0.i1.j0" in tiles
    assert tiles["0.analog_module.g0.i1.j1"].shape == (2, 3)  # balanced: 5 = 3 + 2, 6 = 3 + 3
    assert list(model.analog_tiles()) == list(tiles.values())
    assert model.get_analog_tile_devices() == [torch.device("cpu")] * 6


def test_program_and_drift_reach_every_layer_and_need_eval():
    model = seq()
    with pytest.raises(ac.ModuleError, match="AnalogSequential.program_analog_weights.*eval"):
        model.program_analog_weights()
    with pytest.raises(ac.ModuleError, match="drift_analog_weights"):
        model.drift_analog_weights(1.0)
    model.eval()
    model.program_analog_weights()
    assert all(layer.analog_module.is_programmed for layer in model.analog_layers())
    model.drift_analog_weights(3600.0)
    assert all(float(layer.analog_module.t_inference) == 3600.0
               for layer in model.analog_layers())
    with pytest.raises(ValueError, match="t_inference"):
        model.drift_analog_weights(-1.0)


def test_apply_functions_and_remap():
    model = seq()
    seen = []
    assert model.apply_to_analog_layers(seen.append) is model
    assert seen == list(model.analog_layers())
    tiles = []
    model.apply_to_analog_tiles(tiles.append)
    assert tiles == list(model.analog_tiles())
    w_before = model.get_weights()
    model.remap_analog_weights(1.0)
    for name, layer in model.named_analog_layers():
        # omega 1: the largest |w| on the tiles (no scaling applied) is 1; logical weights kept
        raw = layer.get_weights(apply_weight_scaling=False)[0]
        torch.testing.assert_close(raw.abs().max(), torch.tensor(1.0))
        torch.testing.assert_close(layer.get_weights()[0], w_before[f"{name}.analog_module"][0])


def test_get_and_set_weights_dict():
    model = seq()
    weights = model.get_weights()
    assert list(weights) == ["0.analog_module", "2.0.analog_module"]
    assert weights["0.analog_module"][0].shape == (5, 6) and weights["2.0.analog_module"][1] is None
    other = seq()
    for layer in other.analog_layers():
        layer.set_weights(torch.zeros_like(layer.get_weights()[0]))
    other.set_weights(weights)
    assert_same_noisy_output(model, other, torch.randn(4, 6))
    with pytest.raises(ac.ModuleError, match="2.0.analog_module"):
        other.set_weights({"0.analog_module": weights["0.analog_module"]})
    with pytest.raises(TypeError, match="dict"):
        other.set_weights([1, 2])  # type: ignore[arg-type]


def test_replace_rpu_config_keeps_weights_and_retiles():
    model = seq()
    x = torch.randn(3, 6)
    weights = model.get_weights()
    new = ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=2,
                                                                max_output_size=2))
    model.replace_rpu_config(new)
    assert model.analog_tile_count() == 3 * 3 + 3 * 2
    for name, layer in model.named_analog_layers():
        assert isinstance(layer.rpu_config, ac.FloatingPointRPUConfig)
        assert layer.rpu_config is not new  # a copy per layer, as aihwkit's tiles
        torch.testing.assert_close(layer.get_weights()[0], weights[f"{name}.analog_module"][0])
    ref = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3, bias=False))
    with torch.no_grad():
        ref[0].weight.copy_(weights["0.analog_module"][0])
        ref[0].bias.copy_(weights["0.analog_module"][1])
        ref[2].weight.copy_(weights["2.0.analog_module"][0])
    torch.testing.assert_close(model(x), ref(x))  # floating point tiles: exact
    with pytest.raises(TypeError, match="replace_rpu_config"):
        model.replace_rpu_config("fast")


def test_from_and_to_digital_keep_the_children():
    digital = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    analog = ac.AnalogSequential.from_digital(digital)
    assert type(analog) is ac.AnalogSequential and analog[0] is digital[0]
    back = ac.AnalogSequential.to_digital(analog)
    assert type(back) is nn.Sequential and back[0] is digital[0]
    with pytest.raises(TypeError, match="nn.Sequential"):
        ac.AnalogSequential.from_digital(nn.Linear(2, 2))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = ac.AnalogLinear(4, 3, rpu_config=cfg())
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


def test_wrapper_adds_the_verbs_and_shares_the_state():
    net = Net()
    wrapped = ac.AnalogWrapper(net)
    assert type(wrapped).__name__ == "AnalogWrapperNet"
    assert isinstance(wrapped, Net) and isinstance(wrapped, ac.AnalogWrapper)
    assert wrapped.fc is net.fc and list(wrapped.state_dict()) == list(net.state_dict())
    assert wrapped.analog_tile_count() == 1
    assert type(ac.AnalogWrapper(Net())) is type(wrapped)  # one class per wrapped class
    wrapped.eval()
    wrapped.drift_analog_weights(60.0)
    assert net.fc.analog_module.is_programmed  # shared layers
    assert_same_noisy_output(net, wrapped, torch.randn(2, 4))
    plain = ac.AnalogWrapper.to_digital(wrapped)
    assert type(plain) is Net and plain.fc is net.fc
    assert type(ac.AnalogWrapper.from_digital(plain)) is type(wrapped)


def test_wrapper_pickles_and_copies():
    wrapped = ac.AnalogWrapper(Net()).eval()
    wrapped.program_analog_weights()
    buffer = io.BytesIO()
    torch.save(wrapped, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert type(loaded) is type(wrapped) and loaded.fc.analog_module.is_programmed
    clone = copy.deepcopy(wrapped)
    assert type(clone) is type(wrapped) and clone.fc is not wrapped.fc
    assert_same_noisy_output(wrapped, clone, torch.randn(2, 4))
    assert_same_noisy_output(wrapped, loaded, torch.randn(2, 4))


def test_sequential_checkpoint_weights_only():
    model = seq().eval()
    model.drift_analog_weights(100.0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    fresh = seq()
    fresh.load_state_dict(state, load_rpu_config=False)
    fresh.eval()
    assert_same_noisy_output(model, fresh, torch.randn(3, 6))


def test_convert_to_analog_root_is_an_analog_wrapper():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    analog = ac.convert_to_analog(model, cfg())
    assert isinstance(analog, ac.AnalogWrapper) and isinstance(analog, nn.Sequential)
    assert analog.analog_tile_count() == 1
    already = ac.AnalogSequential(nn.Linear(4, 4))
    assert ac.convert_to_analog(already, cfg(), inplace=True) is already


def test_to_digital_turns_containers_plain():
    model = seq()
    digital = ac.to_digital(model, realistic=False)
    assert type(digital) is nn.Sequential and type(digital[2]) is nn.Sequential
    assert type(digital[0]) is nn.Linear and type(digital[2][0]) is nn.Linear
    x = torch.randn(3, 6)
    ref = copy.deepcopy(model)
    for layer in ref.analog_layers():
        layer.analog_module.rpu_config.forward.is_perfect = True
    torch.testing.assert_close(digital(x), ref(x))
    wrapped = ac.to_digital(ac.AnalogWrapper(Net()), realistic=False)
    assert type(wrapped) is Net and type(wrapped.fc) is nn.Linear
