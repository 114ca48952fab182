"""``convert``'s working copy: the weights of layers that become analog are read from the
caller's model, never copied twice, and nothing of the result aliases the caller's model;
``from_digital`` skips the random initialisation; the progress bar over layers."""

from __future__ import annotations

import copy

import torch
from torch import nn

import analog_compiler as ac


class Tied(nn.Module):
    """An embedding tied to the output projection, a layer kept digital, a functional product
    on a parameter, and a BatchNorm to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.keep = nn.Linear(6, 6)
        self.conv = nn.Conv1d(6, 6, 1)
        self.bn = nn.BatchNorm1d(6)
        self.w = nn.Parameter(torch.randn(6, 6))
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        h = self.keep(self.embed(ids))
        h = self.bn(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return self.head(h @ self.w)


def _storages(model: nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]
            if t.numel()}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_result_aliases_nothing_of_the_callers_model():
    torch.manual_seed(0)
    model = Tied().eval()
    ids = torch.randint(0, 10, (2, 5))
    before, expected = _snapshot(model), model(ids)
    for fold in (False, True):
        analog = ac.convert(model, ac.FloatingPointRPUConfig(), exclude=["keep"],
                            fold_batchnorm=fold)
        assert not _storages(analog) & _storages(model)
        assert isinstance(analog.keep, nn.Linear) and isinstance(analog.head, ac.AnalogLinear)
        assert analog.embed.weight is not model.embed.weight
        torch.testing.assert_close(analog(ids), expected, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # writing the result leaves the caller's model as it was
            for p in analog.parameters():
                p.add_(1.0)
        _assert_same(before, _snapshot(model))


def test_tied_parameters_left_digital_stay_tied():
    model = Tied()
    analog = ac.convert(model, ac.FloatingPointRPUConfig(), exclude=["head"])
    assert analog.head.weight is analog.embed.weight
    assert analog.head.weight is not model.embed.weight


def test_inplace_still_converts_the_model_itself():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    assert ac.convert(model, ac.FloatingPointRPUConfig(), inplace=True) is model
    assert isinstance(model[0], ac.AnalogLinear)


def test_from_digital_draws_no_random_numbers_but_the_constructor_does():
    digital = nn.Linear(8, 5)
    conv = nn.Conv2d(3, 4, 3)
    state = torch.random.get_rng_state()
    layer = ac.AnalogLinear.from_digital(digital)
    ac.AnalogConv2d.from_digital(conv)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(layer.get_weights()[0], digital.weight)
    fresh = ac.AnalogLinear(8, 5)  # its own initialisation is random, as nn.Linear's
    assert not torch.equal(state, torch.random.get_rng_state())
    w = fresh.get_weights()[0]
    assert w.abs().min() > 0 and w.abs().max() <= 1 / 8**0.5


def test_progress_bar_over_layers(capsys):
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    ac.convert(model, ac.FloatingPointRPUConfig(), progress=True)
    err = capsys.readouterr().err
    assert "convert: layers [" in err and "5/5" in err
    ac.convert(copy.deepcopy(model), ac.FloatingPointRPUConfig())
    assert capsys.readouterr().err == ""  # short conversions stay quiet by default
