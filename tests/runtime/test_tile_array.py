"""TileArray: weight scaling, seeded forward, program / drift state, config changes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from analog_compiler.runtime import TileArray, periphery
from analog_compiler.runtime.ops import pcm_chip
from analog_compiler.runtime.tile_array import new_seed

import analog_compiler as ac

PCM = ac.PCMLikeNoiseModel()


def array(out_g=6, in_g=10, groups=1, omega=0.0, columnwise=False, max_in=4, max_out=4,
          noise_model=PCM, **io) -> TileArray:
    rc = ac.InferenceRPUConfig(
        forward=ac.IOParameters(**io),
        mapping=ac.MappingParameter(weight_scaling_omega=omega,
                                    weight_scaling_columnwise=columnwise,
                                    max_input_size=max_in, max_output_size=max_out),
        noise_model=noise_model)
    return TileArray(out_g, in_g, rc, groups=groups)


def rand_weights(groups=1, out_g=6, in_g=10, seed=0) -> torch.Tensor:
    return torch.randn(groups, out_g, in_g, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ weight scaling
@pytest.mark.parametrize("columnwise", [False, True])
@pytest.mark.parametrize("omega", [1.0, 0.6])
def test_weight_scaling_round_trip(columnwise: bool, omega: float) -> None:
    arr = array(groups=2, omega=omega, columnwise=columnwise)
    w = rand_weights(groups=2)
    w[1, 5] = 0.0  # an all-zero row keeps scale 1
    arr.set_logical_weights(w)
    torch.testing.assert_close(arr.weights(), w)
    # expected scales, computed per tile (i: input split [4, 3, 3], j: output split [3, 3])
    in_b, out_b = [(0, 4), (4, 7), (7, 10)], [(0, 3), (3, 6)]
    for g in range(2):
        for i, (c0, c1) in enumerate(in_b):
            for r0, r1 in out_b:
                block = w[g, r0:r1, c0:c1].abs()
                if columnwise:
                    want = block.amax(1) / omega
                else:
                    want = block.amax().expand(r1 - r0) / omega
                want = torch.where(want > 0, want, torch.ones_like(want))
                torch.testing.assert_close(arr.mapping_scales[g, i, r0:r1], want)
                tile = arr.weight[g, r0:r1, c0:c1].abs()
                peak = tile.amax(1) if columnwise else tile.amax()
                assert bool((peak <= omega + 1e-6).all())
                assert float(peak.max()) == pytest.approx(omega)
    if columnwise:
        assert bool((arr.mapping_scales[1, :, 5] == 1).all())
    # without applying the scales: the raw tile weights
    torch.testing.assert_close(arr.weights(scales="none"), arr.weight.detach())


def test_no_scaling_when_omega_zero_or_not_applied() -> None:
    arr = array(omega=0.0)
    w = rand_weights()
    arr.set_logical_weights(w)
    assert bool((arr.mapping_scales == 1).all()) and torch.equal(arr.weight.detach(), w)
    arr = array(omega=1.0)
    arr.set_logical_weights(w, apply_weight_scaling=False)
    assert bool((arr.mapping_scales == 1).all()) and torch.equal(arr.weight.detach(), w)
    arr.set_logical_weights(w, omega=0.0)
    assert bool((arr.mapping_scales == 1).all())
    arr.set_logical_weights(w, omega=2.0)  # an explicit omega overrides the mapping's
    assert float(arr.weight.abs().max()) == pytest.approx(2.0)


def test_scaled_forward_equals_unscaled_when_ideal() -> None:
    x = torch.randn(5, 10)
    w = rand_weights()
    plain, scaled = array(is_perfect=True), array(is_perfect=True, omega=1.0, columnwise=True)
    plain.set_logical_weights(w)
    scaled.set_logical_weights(w)
    torch.testing.assert_close(scaled(x), plain(x))
    torch.testing.assert_close(plain(x), F.linear(x, w[0], plain.bias))


# ------------------------------------------------------------------ seeded forward
def test_forward_seeded_by_torch_manual_seed() -> None:
    arr = array()
    arr.set_logical_weights(rand_weights())
    x = torch.randn(4, 10)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return arr(x)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    arr.eval()
    torch.manual_seed(5)
    arr.program()
    y1 = run(3)
    torch.manual_seed(5)
    arr.program()
    assert torch.equal(run(3), y1)  # programming draws from the same seeded stream


# ------------------------------------------------------------------ chip state
def test_program_and_drift_semantics() -> None:
    arr = array().eval()
    arr.set_logical_weights(rand_weights())
    assert not arr.is_programmed and float(arr.t_inference) == -1.0
    arr.program(seed=7)
    assert arr.is_programmed and float(arr.t_inference) == 0.0
    prog = arr.chip_weight.clone()
    assert not torch.equal(prog, arr.weight.detach())  # programming noise
    arr.drift(3600.0)
    d1 = arr.chip_weight.clone()
    arr.drift(3600.0)
    d2 = arr.chip_weight.clone()
    assert int(arr.program_seed) == 7 and float(arr.t_inference) == 3600.0
    assert not torch.equal(d1, d2)  # read noise redrawn at every drift
    # ... around the same programmed chip (weights, seed 7), read noise seeded from torch's RNG
    torch.manual_seed(9)
    arr.drift(3600.0)
    torch.manual_seed(9)
    chip = pcm_chip(arr.weight, arr.plan, arr.rpu_config.noise_model, 7, 3600.0, new_seed())
    torch.testing.assert_close(arr.chip_weight, chip, rtol=0, atol=0)
    quiet = pcm_chip(arr.weight, arr.plan, arr.rpu_config.noise_model, 7, 0.0)
    assert torch.equal(quiet, prog)  # program() reads the chip without read noise
    arr.program(seed=8)
    assert not torch.equal(arr.chip_weight, prog)  # a new chip
    arr.program(seed=7)
    assert torch.equal(arr.chip_weight, prog)  # the chip is (weights, seed)


def test_repeated_drifts_reuse_programming_noise_exactly() -> None:
    arr = array(noise_model=ac.PCMLikeNoiseModel(read_noise_scale=0.0)).eval()
    arr.set_logical_weights(rand_weights())
    arr.program()
    prog = arr.chip_weight.clone()
    arr.drift(86400.0)
    day = arr.chip_weight.clone()
    arr.drift(60.0)
    arr.drift(86400.0)
    assert torch.equal(arr.chip_weight, day)
    arr.drift(0.0)
    assert torch.equal(arr.chip_weight, prog)
    # drift only shrinks conductances (same sign, smaller magnitude)
    assert bool((day.abs() <= prog.abs() + 1e-7).all())


def test_drift_programs_first_and_set_weights_resets() -> None:
    arr = array().eval()
    arr.set_logical_weights(rand_weights())
    arr.drift(100.0)
    assert arr.is_programmed and float(arr.t_inference) == 100.0
    arr.set_logical_weights(rand_weights(seed=1))
    assert not arr.is_programmed and float(arr.t_inference) == -1.0
    assert bool((arr.drift_alpha == 1).all())


def test_forward_uses_chip_weights_only_in_eval() -> None:
    arr = array(is_perfect=True).eval()
    w = rand_weights()
    arr.set_logical_weights(w)
    x = torch.randn(3, 10)
    arr.program(seed=1)
    torch.testing.assert_close(arr(x), F.linear(x, arr.chip_weight[0], arr.bias)
                               * arr.drift_alpha[0, 0, 0])
    arr.train()
    torch.testing.assert_close(arr(x), F.linear(x, w[0], arr.bias))


def test_no_noise_model_programs_exactly() -> None:
    arr = array(noise_model=None, out_noise=0.0).eval()
    w = rand_weights()
    arr.set_logical_weights(w)
    arr.program()
    assert torch.equal(arr.chip_weight, w)
    arr.drift(86400.0)
    assert torch.equal(arr.chip_weight, w)
    torch.testing.assert_close(arr.drift_alpha, torch.ones_like(arr.drift_alpha))


def test_floating_point_config_is_ideal() -> None:
    arr = TileArray(6, 10, ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(
        max_input_size=3)))
    w = rand_weights()
    arr.set_logical_weights(w)
    x = torch.randn(4, 10)
    torch.testing.assert_close(arr(x), F.linear(x, w[0], arr.bias), rtol=1e-5, atol=1e-5)
    arr.eval()
    arr.program()
    assert torch.equal(arr.chip_weight, w)


def test_effective_weights_fold_all_digital_scales() -> None:
    arr = array(omega=1.0, columnwise=True, is_perfect=True).eval()
    w = rand_weights()
    arr.set_logical_weights(w)
    torch.testing.assert_close(arr.weights(scales="mapping")[0], w[0])
    arr.drift(3600.0)
    x = torch.randn(3, 10)
    eff = arr.weights(chip=True, scales="forward")
    torch.testing.assert_close(arr(x), F.linear(x, eff[0], arr.bias), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ config and state
def test_rejects_wrong_config_type() -> None:
    with pytest.raises(TypeError, match="rpu_config"):
        TileArray(2, 2, ac.IOParameters())  # type: ignore[arg-type]


def test_apply_rpu_config_rebuilds_plan() -> None:
    arr = array(omega=1.0)
    arr.set_logical_weights(rand_weights())
    new = arr.rpu_config.replace(mapping=ac.MappingParameter(max_input_size=5))
    arr.apply_rpu_config(new)
    assert arr.plan.in_sizes == (5, 5) and arr.plan.out_sizes == (6,)
    assert arr.mapping_scales.shape == (1, 2, 6) and arr.drift_alpha.shape == (1, 2, 6)
    assert arr.rpu_config is new
    assert periphery.unpack(*arr.kernel_io).out_noise == new.forward.out_noise


def test_extra_state_is_plain_json() -> None:
    arr = array(groups=2, omega=1.0)
    state = arr.get_extra_state()
    back = json.loads(json.dumps(state))
    assert back == state
    assert ac.InferenceRPUConfig.from_dict(back["rpu_config"]) == arr.rpu_config
    assert back["plan"] == {"groups": 2, "in_sizes": [4, 3, 3], "out_sizes": [3, 3]}


def test_extra_repr() -> None:
    text = repr(array(groups=2))
    assert "groups=2" in text and "tiles=12 (3x2 of 3x4)" in text and "programmed=False" in text
