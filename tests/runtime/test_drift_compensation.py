"""Global and per-column drift compensation: outputs at t = 1 day come back to the programmed
baseline."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac

DAY = 86400.0


def make_layer(compensation, omega: float = 1.0, seed: int = 0) -> ac.AnalogLinear:
    torch.manual_seed(seed)
    rc = ac.InferenceRPUConfig(
        mapping=ac.MappingParameter(weight_scaling_omega=omega, weight_scaling_columnwise=True,
                                    max_input_size=48, max_output_size=24),
        drift_compensation=compensation)
    layer = ac.AnalogLinear(96, 48, bias=False, rpu_config=rc)
    return layer.eval()


def mean_abs_output(layer: ac.AnalogLinear, x: torch.Tensor) -> float:
    torch.manual_seed(123)
    with torch.no_grad():
        return layer(x).abs().mean().item()


@pytest.mark.parametrize("compensation", [ac.GlobalDriftCompensation(),
                                          ac.PerColumnDriftCompensation()],
                         ids=["global", "per_column"])
def test_compensation_restores_mean_output_after_one_day(compensation) -> None:
    x = torch.rand(256, 96) * 2 - 1
    layer = make_layer(compensation)
    layer.program_analog_weights()
    baseline = mean_abs_output(layer, x)
    layer.drift_analog_weights(DAY)
    arr = layer.analog_module
    assert bool((arr.drift_alpha > 1.2).all())  # one day of drift: ~30 % less conductance
    assert mean_abs_output(layer, x) == pytest.approx(baseline, rel=0.02)

    # The same chip without compensation loses far more than 2 %.
    plain = make_layer(None)
    plain.program_analog_weights()
    base_plain = mean_abs_output(plain, x)
    plain.drift_analog_weights(DAY)
    assert mean_abs_output(plain, x) < 0.85 * base_plain


def test_global_alpha_is_shared_per_tile_and_per_column_is_not() -> None:
    glob = make_layer(ac.GlobalDriftCompensation())
    glob.drift_analog_weights(DAY)
    arr = glob.analog_module
    alpha = arr.drift_alpha  # [G, n_in, out_g]; rows of one tile share one value
    plan = arr.plan
    for i in range(plan.n_in):
        for j, rows in enumerate(torch.split(alpha[0, i], list(plan.out_sizes))):
            assert torch.allclose(rows, rows[0].expand_as(rows)), (i, j)
    assert alpha.unique().numel() == plan.n_in * plan.n_out

    col = make_layer(ac.PerColumnDriftCompensation())
    col.drift_analog_weights(DAY)
    assert col.analog_module.drift_alpha.unique().numel() > plan.n_in * plan.n_out


def test_alpha_is_the_ratio_of_readouts() -> None:
    """alpha = baseline readout / readout now, from an identity input through the tiles."""
    layer = make_layer(ac.GlobalDriftCompensation())
    layer.program_analog_weights()
    arr = layer.analog_module
    base = arr.drift_baseline.clone()
    w0 = arr.chip_weight.clone()
    # the baseline is the mean |W| of each tile (identity readout; out noise averages out)
    plan = arr.plan
    for i, cols in enumerate(torch.split(w0[0], list(plan.in_sizes), dim=1)):
        for j, block in enumerate(torch.split(cols, list(plan.out_sizes), dim=0)):
            rows = slice(sum(plan.out_sizes[:j]), sum(plan.out_sizes[:j + 1]))
            assert base[0, i, rows].mean().item() == pytest.approx(block.abs().mean().item(),
                                                                   rel=0.05)
    layer.drift_analog_weights(DAY)
    assert bool((arr.drift_baseline == base).all())  # baseline kept from programming
    ratio = w0.abs().mean() / arr.chip_weight.abs().mean()
    assert arr.drift_alpha.mean().item() == pytest.approx(ratio.item(), rel=0.05)


def test_compensation_only_in_eval_and_only_when_configured() -> None:
    layer = make_layer(ac.GlobalDriftCompensation())
    layer.drift_analog_weights(DAY)
    arr = layer.analog_module
    scales = arr.output_scales()
    torch.testing.assert_close(scales, arr.mapping_scales * arr.drift_alpha)
    arr.train()
    torch.testing.assert_close(arr.output_scales(), arr.mapping_scales)
    none = make_layer(None)
    none.drift_analog_weights(DAY)
    assert bool((none.analog_module.drift_alpha == 1).all())
    torch.testing.assert_close(none.analog_module.output_scales(),
                               none.analog_module.mapping_scales)


def test_zero_weight_tile_keeps_alpha_one() -> None:
    layer = make_layer(ac.GlobalDriftCompensation(), omega=0.0)
    w = torch.zeros(48, 96)
    w[:, :48] = torch.rand(48, 48) - 0.5  # input split 1 is all zeros
    rc = layer.rpu_config.replace(forward=ac.IOParameters(out_noise=0.0))
    layer.analog_module.rpu_config = rc
    layer.set_weights(w)
    layer.drift_analog_weights(DAY)
    alpha = layer.analog_module.drift_alpha
    assert bool(torch.isfinite(alpha).all())
    assert bool((alpha[0, 1] == 1).all())


def test_grouped_readout_is_mean_abs_weight_per_tile_column() -> None:
    """With an ideal periphery the readout of each group's tiles is exactly mean |W| per column
    (the readout drives all groups at once, so it must not mix them)."""
    torch.manual_seed(0)
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True),
                               drift_compensation=ac.PerColumnDriftCompensation(),
                               mapping=ac.MappingParameter(max_input_size=50, max_output_size=5))
    layer = ac.AnalogConv2d(64, 64, 3, groups=4, rpu_config=rc).eval()
    layer.program_analog_weights()
    arr = layer.analog_module
    w = arr.chip_weight
    expected = torch.stack([
        torch.stack([c.abs().mean(1) for c in torch.split(w[g], list(arr.plan.in_sizes), dim=1)])
        for g in range(4)])
    torch.testing.assert_close(arr.drift_baseline, expected)
