"""config_version: written by to_dict, read by from_dict (old data migrated, newer rejected)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from analog_compiler.runtime import CONFIG_REGISTRY, ConfigBase

import analog_compiler as ac


def strip(data):
    """``data`` as written before configs carried versions."""
    if isinstance(data, dict):
        return {k: strip(v) for k, v in data.items() if k != "config_version"}
    return data


def test_every_dict_carries_its_class_version() -> None:
    data = ac.InferenceRPUConfig().to_dict()
    assert data["config_version"] == ac.InferenceRPUConfig.config_version == 1
    for key in ("forward", "mapping", "noise_model", "drift_compensation"):
        assert data[key]["config_version"] == 1  # nested configs carry their own


def test_data_without_a_version_is_version_1() -> None:
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(out_noise=0.0))

    old = strip(rc.to_dict())
    assert "config_version" not in json.dumps(old)
    assert ac.InferenceRPUConfig.from_dict(old) == rc


@pytest.mark.parametrize("cls", [ac.IOParameters, ac.InferenceRPUConfig,
                                 ac.FloatingPointRPUConfig, ac.PCMLikeNoiseModel])
def test_newer_data_is_rejected_naming_class_and_versions(cls) -> None:
    data = cls().to_dict()
    data["config_version"] = cls.config_version + 1
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.from_dict: the data has "
                                         rf"config_version {cls.config_version + 1}, newer than "
                                         rf".*{cls.__name__} \(config_version "
                                         rf"{cls.config_version}\)"):
        cls.from_dict(data)


def test_newer_nested_data_is_rejected_naming_the_nested_class() -> None:
    data = ac.InferenceRPUConfig().to_dict()
    data["mapping"]["config_version"] = 99
    with pytest.raises(ValueError, match=r"MappingParameter\.from_dict: .*config_version 99"):
        ac.InferenceRPUConfig.from_dict(data)


@pytest.mark.parametrize("bad", [0, -1, "1", 1.5, True, None])
def test_bad_version_values(bad) -> None:
    data = ac.IOParameters().to_dict()
    data["config_version"] = bad
    with pytest.raises(ValueError, match=r"IOParameters\.from_dict: config_version must be"):
        ac.IOParameters.from_dict(data)


@pytest.fixture
def versioned() -> Iterator[type[ConfigBase]]:
    """A config class at version 3: v1 called the field ``noise``, v2 stored it in percent."""

    @dataclass
    class VersionedNoise(ConfigBase):
        config_version: ClassVar[int] = 3
        config_migrations: ClassVar[dict] = {
            1: lambda d: {"noise_percent": 100.0 * d.pop("noise"), **d},
            2: lambda d: {"noise_std": d.pop("noise_percent") / 100.0, **d},
        }
        noise_std: float = 0.0
        """Output noise."""
        label: str = ""
        """A name."""

    try:
        yield VersionedNoise
    finally:
        CONFIG_REGISTRY.pop("VersionedNoise", None)


def test_older_versions_are_migrated_step_by_step(versioned) -> None:
    cfg = versioned(noise_std=0.25, label="a")
    assert cfg.to_dict() == {"type": "VersionedNoise", "config_version": 3, "noise_std": 0.25,
                             "label": "a"}
    v1 = {"type": "VersionedNoise", "noise": 0.25, "label": "a"}  # no version: 1
    v2 = {"type": "VersionedNoise", "config_version": 2, "noise_percent": 25.0, "label": "a"}
    assert versioned.from_dict(v1) == cfg
    assert versioned.from_dict(v2) == cfg
    assert ConfigBase.from_dict(v1) == cfg  # through the tag
    assert versioned.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"VersionedNoise\.from_dict: .*config_version 4"):
        versioned.from_dict({**cfg.to_dict(), "config_version": 4})


def test_a_version_bump_without_its_migration_fails_at_definition() -> None:
    with pytest.raises(TypeError, match=r"Broken: config_version 2 needs config_migrations "
                                        r"for version\(s\) \[1\]"):
        @dataclass
        class Broken(ConfigBase):
            config_version: ClassVar[int] = 2
            x: int = 0
    assert "Broken" not in CONFIG_REGISTRY


def test_checkpoints_without_versions_still_load() -> None:
    """A layer checkpoint written before configs carried versions."""
    layer = ac.AnalogLinear(4, 3, rpu_config=ac.InferenceRPUConfig(
        forward=ac.IOParameters(out_noise=0.01)))
    state = layer.state_dict()

    state["analog_module._extra_state"] = strip(state["analog_module._extra_state"])
    fresh = ac.AnalogLinear(4, 3)
    fresh.load_state_dict(state)
    assert fresh.rpu_config == layer.rpu_config
    torch.testing.assert_close(fresh.get_weights()[0], layer.get_weights()[0])
    state["analog_module._extra_state"]["rpu_config"]["config_version"] = 2
    with pytest.raises(ValueError, match=r"InferenceRPUConfig\.from_dict: .*config_version 2"):
        ac.AnalogLinear(4, 3).load_state_dict(state)
