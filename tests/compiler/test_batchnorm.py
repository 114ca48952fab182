"""BatchNorm folding into the preceding conv/linear."""

from __future__ import annotations

import pytest
import torch
from compiler_models import ResNetTiny, randomize_batchnorm
from torch import nn

import analog_compiler as ac


def test_resnet_folds_every_batchnorm(ideal):
    model = randomize_batchnorm(ResNetTiny()).eval()
    x = torch.randn(2, 3, 8, 8)
    analog = ac.convert(model, ideal, fold_batchnorm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in analog.modules())
    assert isinstance(analog.layer1.bn1, nn.Identity)
    assert isinstance(analog.layer2.shortcut[1], nn.Identity)
    assert analog.layer1.conv1.analog_module.bias is not None  # bias added by the fold
    assert torch.allclose(analog(x), model(x), atol=1e-5, rtol=1e-5)
    assert not any(k.startswith("layer1.bn1.") for k in analog.state_dict())


def test_linear_batchnorm1d_and_non_foldable():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)
            self.bn = nn.BatchNorm1d(4)
            self.fc2 = nn.Linear(6, 4)
            self.bn2 = nn.BatchNorm1d(4)

        def forward(self, x):
            h = self.fc2(x)
            return self.bn(self.fc(x)) + self.bn2(h) + h  # fc2 has two users: not folded

    model = randomize_batchnorm(M())
    for bn in (model.bn, model.bn2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    model.eval()
    analog = ac.convert(model, ac.FloatingPointRPUConfig(), fold_batchnorm=True)
    assert isinstance(analog.bn, nn.Identity) and isinstance(analog.bn2, nn.BatchNorm1d)
    x = torch.randn(5, 6)
    assert torch.allclose(analog(x), model(x), atol=1e-5)


def test_folding_in_training_mode_warns():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.warns(UserWarning, match="running statistics"):
        ac.convert(model, ac.FloatingPointRPUConfig(), fold_batchnorm=True)
