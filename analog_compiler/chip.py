"""Model-level chip verbs: program and drift every analog layer of a model."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .nn.base import AnalogLayerBase


def analog_layers(model: nn.Module) -> Iterator[tuple[str, AnalogLayerBase]]:
    """``(qualified name, layer)`` of every analog layer in ``model``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if isinstance(module, AnalogLayerBase):
            yield name, module


def program_analog_weights(model: nn.Module) -> None:
    """Program a new chip sample for every analog layer (the model must be in eval mode)."""
    for _, layer in analog_layers(model):
        layer.program_analog_weights()


def drift_analog_weights(model: nn.Module, t_inference: float = 0.0) -> None:
    """Drift every analog layer's chip to ``t_inference`` seconds after programming (programs
    the layers that are not programmed yet; eval mode only)."""
    for _, layer in analog_layers(model):
        layer.drift_analog_weights(t_inference)
