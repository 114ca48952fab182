"""``convert`` keeps training modes: the analog layers (and traced modules) it builds take the
mode of the module they replace, although the conversion itself runs in eval mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analog_compiler as ac


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.block = nn.Sequential(nn.Linear(64, 16), nn.ReLU())
        self.frozen = nn.Linear(16, 16)
        self.w = nn.Parameter(torch.randn(3, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.conv(x).flatten(1))
        return F.linear(self.frozen(h), self.w)  # a functional layer too


@pytest.mark.parametrize("training", [True, False])
def test_analog_layers_take_the_mode_of_what_they_replace(training: bool) -> None:
    model = Net().train(training)
    model.frozen.eval()  # a submodule deliberately in eval mode
    analog = ac.convert(model, ac.InferenceRPUConfig(), example_inputs=(torch.randn(2, 1, 6, 6),))
    layers = dict(ac.analog_layers(analog))
    assert len(layers) == 4, list(layers)
    for name, layer in layers.items():
        expected = False if name == "frozen" else training
        assert layer.training is expected, name
        assert all(m.training is expected for m in layer.modules()), name
    assert analog.training is training
    assert model.training is training and model.frozen.training is False  # untouched


class NoFunctional(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.block(self.conv(x).flatten(1)))


def test_hwa_noise_is_on_right_after_converting_a_model_in_training_mode() -> None:
    torch.manual_seed(0)
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True),
                               modifier=ac.WeightModifierParameter(type="ADD_NORMAL", std_dev=0.1))
    analog = ac.convert(NoFunctional().train(), rc)
    x = torch.randn(4, 1, 6, 6)
    assert not torch.equal(analog(x), analog(x))  # the modifier's noise, in training mode only
    analog.eval()
    assert torch.equal(analog(x), analog(x))
