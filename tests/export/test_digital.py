"""to_digital: exact and realistic read-back, folding, seeding, the model left untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from export_helpers import KINDS, analog_model, noise_free, rpu
from torch import nn

import analog_compiler as ac
from analog_compiler.export import realistic_copy, to_digital


def _plain(model: nn.Module) -> bool:
    return not list(ac.analog_layers(model))


def test_not_realistic_is_exact_without_scaling():
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10))
    analog = nn.Sequential(*(ac.AnalogLinear.from_digital(m, rpu(omega=0.0))
                             if isinstance(m, nn.Linear) else m for m in digital))
    back = to_digital(analog, realistic=False)
    assert _plain(back) and isinstance(back[0], nn.Linear)
    for i in (0, 2):
        assert torch.equal(back[i].weight, digital[i].weight)
        assert torch.equal(back[i].bias, digital[i].bias)


@pytest.mark.parametrize("kind", KINDS)
def test_not_realistic_returns_targets_with_scaling(kind):
    analog, x = analog_model(kind, rpu())
    ac.drift_analog_weights(analog, 3600.0)  # a chip does not change the targets
    back = to_digital(analog, realistic=False)
    for (_, layer), digital in zip(ac.analog_layers(analog),
                                   (m for m in back if isinstance(m, nn.modules.conv._ConvNd)
                                    or isinstance(m, nn.Linear))):
        w, b = layer.get_target_weights()
        torch.testing.assert_close(digital.weight, w, rtol=1e-6, atol=1e-7)
        assert type(digital) is type(layer)._digital_template(layer).__class__


@pytest.mark.parametrize("kind", KINDS)
def test_realistic_matches_noise_free_analog_output(kind):
    analog, x = analog_model(kind, rpu())
    ac.drift_analog_weights(analog, 86400.0)
    back = to_digital(analog)
    assert _plain(back)
    with torch.no_grad():
        want = noise_free(analog)(x)
        got = back(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # not the targets: the chip's programming noise and drift are in the weights
    assert not torch.allclose(got, to_digital(analog, realistic=False)(x), atol=1e-4)


def test_unprogrammed_model_gets_a_seeded_chip_and_stays_untouched():
    analog, x = analog_model("linear", rpu())
    before = copy.deepcopy(analog.state_dict())
    a = to_digital(analog, seed=7)
    b = to_digital(analog, seed=7)
    c = to_digital(analog, seed=8)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)
    after = analog.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) if torch.is_tensor(before[k])
               else before[k] == after[k] for k in before)
    assert not any(layer.analog_module.is_programmed for _, layer in ac.analog_layers(analog))


def test_seed_does_not_touch_global_rng():
    analog, _ = analog_model("linear", rpu())
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    to_digital(analog, seed=1, t_inference=60.0)
    assert torch.equal(torch.rand(3), expected)


def test_t_inference_drifts_the_programmed_chip():
    analog, x = analog_model("linear", rpu())
    ac.program_analog_weights(analog)
    seeds = [int(layer.analog_module.program_seed) for _, layer in ac.analog_layers(analog)]
    work = realistic_copy(analog, t_inference=3.15e7, seed=0)
    assert [int(layer.analog_module.program_seed)
            for _, layer in ac.analog_layers(work)] == seeds  # the same chip, later
    assert all(float(layer.analog_module.t_inference) == 3.15e7
               for _, layer in ac.analog_layers(work))
    assert all(float(layer.analog_module.t_inference) == 0.0
               for _, layer in ac.analog_layers(analog))
    back = to_digital(analog, t_inference=3.15e7, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(back(x), noise_free(work)(x), rtol=1e-5, atol=1e-5)


def test_drift_compensation_is_folded():
    cfg = rpu()
    analog, x = analog_model("linear", cfg)
    ac.drift_analog_weights(analog, 3.15e7)
    alphas = [layer.analog_module.drift_alpha for _, layer in ac.analog_layers(analog)]
    assert any(float((a - 1).abs().max()) > 1e-3 for a in alphas)
    with torch.no_grad():
        torch.testing.assert_close(to_digital(analog)(x), noise_free(analog)(x),
                                   rtol=1e-5, atol=1e-5)


def test_fold_scales_false_gives_raw_tile_weights():
    analog, x = analog_model("linear", rpu())
    ac.drift_analog_weights(analog, 3600.0)
    back = to_digital(analog, fold_scales=False)
    arr = analog[0].analog_module
    torch.testing.assert_close(back[0].weight, arr.chip_weight[0])
    assert back[0].analog_output_scales.shape == arr.mapping_scales.shape
    assert "analog_output_scales" not in back[0].state_dict()


def test_single_layer_and_training_mode_kept():
    layer = ac.AnalogLinear(8, 4, rpu_config=rpu())
    layer.train()
    out = to_digital(layer)
    assert isinstance(out, nn.Linear) and out.training and layer.training


def test_learned_output_scales_are_folded():
    cfg = rpu()
    cfg = cfg.replace(mapping=cfg.mapping.replace(learn_out_scaling=True,
                                                  out_scaling_columnwise=True))
    analog, x = analog_model("linear", cfg)
    with torch.no_grad():
        analog[0].analog_module.out_scaling_alpha.uniform_(0.5, 2.0)
    ac.drift_analog_weights(analog, 60.0)
    with torch.no_grad():
        torch.testing.assert_close(to_digital(analog)(x), noise_free(analog)(x),
                                   rtol=1e-5, atol=1e-5)


def test_converted_transformer_block():
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(32, 4, dim_feedforward=48, dropout=0.0,
                                       batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    analog = ac.convert(block, rpu(max_in=20)).eval()
    assert list(ac.analog_layers(analog))
    ac.drift_analog_weights(analog, 3600.0)
    back = to_digital(analog)
    assert _plain(back)
    with torch.no_grad():
        torch.testing.assert_close(back(x), noise_free(analog)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1h", True])
def test_bad_t_inference(bad):
    analog, _ = analog_model("linear", rpu())
    with pytest.raises(ValueError, match="t_inference"):
        to_digital(analog, t_inference=bad)


def test_no_analog_layers_and_not_a_module():
    with pytest.raises(ValueError, match="no analog layers"):
        to_digital(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(TypeError, match="nn.Module"):
        to_digital("model")
