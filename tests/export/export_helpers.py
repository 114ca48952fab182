"""Shared builders of the export tests: small analog models and their noise-free references."""

from __future__ import annotations

import copy

import torch
from torch import nn

import analog_compiler as ac


def rpu(omega: float = 1.0, max_in: int = 24, max_out: int = 16, **io: object
        ) -> ac.InferenceRPUConfig:
    """A config with tile splits on both sides and weight scaling."""
    return ac.InferenceRPUConfig(
        forward=ac.IOParameters(**io),
        mapping=ac.MappingParameter(max_input_size=max_in, max_output_size=max_out,
                                    weight_scaling_omega=omega, weight_scaling_columnwise=True))


def with_io(model: nn.Module, **changes: object) -> nn.Module:
    """A deep copy of ``model`` whose analog layers use ``IOParameters`` with ``changes``."""
    out = copy.deepcopy(model)
    for _, layer in ac.analog_layers(out):
        cfg = layer.analog_module.rpu_config
        layer.analog_module.rpu_config = cfg.replace(forward=cfg.forward.replace(**changes))
    return out


def noise_free(model: nn.Module) -> nn.Module:
    """The analog model's noise-free output without DAC/ADC: ``is_perfect`` periphery (the tile
    split, mapping scales and drift compensation stay)."""
    return with_io(model, is_perfect=True)


def quantized_noise_free(model: nn.Module) -> nn.Module:
    """The analog model with DAC/ADC but no noise."""
    return with_io(model, out_noise=0.0, inp_noise=0.0, w_noise=0.0)


def analog_model(kind: str, cfg: ac.InferenceRPUConfig) -> tuple[nn.Module, torch.Tensor]:
    """``(eval-mode analog model, example input)`` of one layer kind."""
    torch.manual_seed(0)
    if kind == "linear":
        digital = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10))
        x = torch.randn(6, 40)
    elif kind == "conv1d":
        digital = nn.Sequential(nn.Conv1d(3, 8, 3, padding=1, stride=2), nn.ReLU(),
                                nn.Conv1d(8, 4, 5, padding="same", bias=False))
        x = torch.randn(4, 3, 11)
    elif kind == "conv2d_grouped":
        digital = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(),
                                nn.Conv2d(8, 8, 3, groups=8, dilation=2))  # depthwise
        x = torch.randn(3, 4, 7, 7)
    elif kind == "conv3d":
        digital = nn.Sequential(nn.Conv3d(2, 4, (2, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
                                nn.Conv3d(4, 4, 1))
        x = torch.randn(2, 2, 3, 5, 5)
    else:
        raise ValueError(kind)
    layers = []
    for m in digital:
        cls = {nn.Linear: ac.AnalogLinear, nn.Conv1d: ac.AnalogConv1d, nn.Conv2d: ac.AnalogConv2d,
               nn.Conv3d: ac.AnalogConv3d}.get(type(m))
        layers.append(cls.from_digital(m, cfg) if cls else m)
    return nn.Sequential(*layers).eval(), x


KINDS = ("linear", "conv1d", "conv2d_grouped", "conv3d")
