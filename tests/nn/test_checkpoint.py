"""Checkpoints: plain tensors plus JSON-able config data; exact round trips of every chip state."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

import analog_compiler as ac


def rpu(max_in: int = 20, omega: float = 1.0, **kw) -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(
        max_input_size=max_in, max_output_size=6, weight_scaling_omega=omega,
        weight_scaling_columnwise=True), **kw)


def build(seed: int, config: ac.InferenceRPUConfig | None = None) -> nn.Module:
    torch.manual_seed(seed)
    config = config or rpu()
    return nn.Sequential(
        ac.AnalogConv2d(4, 8, 3, padding=1, groups=2, rpu_config=config), nn.ReLU(),
        nn.Flatten(), ac.AnalogLinear(8 * 5 * 5, 10, rpu_config=config))


def round_trip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def output(model: nn.Module, x: torch.Tensor, seed: int = 42) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(x)


def assert_plain_data(value, where: str = "state") -> None:
    """Only tensors and JSON types: nothing that needs pickled classes to load."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            assert_plain_data(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            assert_plain_data(v, f"{where}[{k}]")
    else:
        assert value is None or isinstance(value, (str, int, float, bool)), (where, value)


@pytest.mark.parametrize("stage", ["fresh", "programmed", "drifted", "drifted_train"])
def test_state_dict_round_trip_is_exact(stage: str) -> None:
    x = torch.randn(3, 4, 5, 5)
    model = build(0).eval()
    if stage != "fresh":
        ac.program_analog_weights(model)
    if stage.startswith("drifted"):
        ac.drift_analog_weights(model, 86400.0)
    if stage == "drifted_train":
        model.train()
    state = model.state_dict()
    assert_plain_data(dict(state))
    loaded = round_trip(state)
    fresh = build(1, rpu(max_in=512, omega=0.0))  # other weights, other tile plan
    fresh.load_state_dict(loaded)
    fresh.train(model.training)
    assert torch.equal(output(fresh, x), output(model, x))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), name
    assert fresh[0].rpu_config == model[0].rpu_config
    if stage != "fresh":
        # the loaded chip is the same chip: drifting both again gives the same weights
        model.eval()
        fresh.eval()
        torch.manual_seed(7)
        ac.drift_analog_weights(model, 3600.0)
        torch.manual_seed(7)
        ac.drift_analog_weights(fresh, 3600.0)
        assert torch.equal(output(fresh, x), output(model, x))


def test_extra_state_is_json() -> None:
    state = build(0).state_dict()
    extra = state["0.analog_module._extra_state"]
    assert json.loads(json.dumps(extra)) == extra
    assert ac.InferenceRPUConfig.from_dict(extra["rpu_config"]) == rpu()


def test_checkpoint_file_loads_with_weights_only(tmp_path) -> None:
    model = build(0).eval()
    ac.drift_analog_weights(model, 60.0)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = build(3)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(output(fresh, x), output(model, x))


def test_layer_load_keeps_own_config_when_asked() -> None:
    src = ac.AnalogLinear(30, 10, rpu_config=rpu())
    dst = ac.AnalogLinear(30, 10, rpu_config=rpu(forward=ac.IOParameters(out_noise=0.0)))
    own = dst.rpu_config
    dst.load_state_dict(src.state_dict(), load_rpu_config=False)
    assert dst.rpu_config is own
    torch.testing.assert_close(dst.get_weights()[0], src.get_weights()[0])
    dst.load_state_dict(src.state_dict())  # default: the checkpoint's config
    assert dst.rpu_config == src.rpu_config
    # the flags do not stick to the tile array after the call
    assert dst.analog_module.load_rpu_config is True


def test_mismatched_mapping_without_loading_config_is_module_error() -> None:
    src = ac.AnalogLinear(30, 10, rpu_config=rpu(max_in=20))
    dst = ac.AnalogLinear(30, 10, rpu_config=rpu(max_in=512))
    with pytest.raises(ac.ModuleError, match="mapping"):
        dst.load_state_dict(src.state_dict(), load_rpu_config=False)
    dst.load_state_dict(src.state_dict())  # adopting the stored config fixes the plan
    assert dst.analog_module.plan == src.analog_module.plan
    assert dst.analog_tile_count() == src.analog_tile_count() == 2 * 2


def test_strict_rpu_config_check() -> None:
    mapping = ac.MappingParameter(max_input_size=20, max_output_size=6)
    src = ac.AnalogLinear(30, 10, rpu_config=ac.FloatingPointRPUConfig(mapping=mapping))
    dst = ac.AnalogLinear(30, 10, rpu_config=ac.InferenceRPUConfig(mapping=mapping))
    with pytest.raises(ac.ModuleError, match="FloatingPointRPUConfig"):
        dst.load_state_dict(src.state_dict(), load_rpu_config=False)
    dst.load_state_dict(src.state_dict(), load_rpu_config=False, strict_rpu_config_check=False)
    assert isinstance(dst.rpu_config, ac.InferenceRPUConfig)
    torch.testing.assert_close(dst.get_weights()[0], src.get_weights()[0])


def test_strict_key_checking_still_applies() -> None:
    src = ac.AnalogLinear(6, 4).state_dict()
    del src["analog_module.drift_alpha"]
    with pytest.raises(RuntimeError, match="drift_alpha"):
        ac.AnalogLinear(6, 4).load_state_dict(src)
    ac.AnalogLinear(6, 4).load_state_dict(src, strict=False)
    with pytest.raises(RuntimeError):
        ac.AnalogLinear(6, 4, bias=False).load_state_dict(ac.AnalogLinear(6, 4).state_dict())
