"""Conductance converters (aihwkit 1.2.0's): conductances of hand-computed cases, the round trip
weights -> conductances -> weights, and the field checks."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac

W = torch.tensor([[-1.0, -0.5, 0.0], [0.25, 0.5, 2.0]])


def test_single_pair_by_hand() -> None:
    conv = ac.SinglePairConductanceConverter(g_max=20.0, g_min=1.0)
    (gp, gm), params = conv.to_conductances(W)
    s = 19.0 / 2.0  # (g_max - g_min) / max|W|
    assert params["scale_ratio"].item() == pytest.approx(s)
    torch.testing.assert_close(gp, (W * s).clamp(0, 20.0) + 1.0)
    torch.testing.assert_close(gm, (-W * s).clamp(0, 20.0) + 1.0)
    assert gp[1, 2].item() == pytest.approx(20.0) and gm[0, 0].item() == pytest.approx(10.5)


def test_dual_pair_by_hand() -> None:
    """f = [1, 3], range 25 uS: max|W| = 2 maps to 100 uS; pair 0 takes the first 25 uS of a
    weight's magnitude (G = w_us / 1), pair 1 the rest (G = (w_us - 25) / 3)."""
    conv = ac.DualPairConductanceConverter(f_lst=[1.0, 3.0])
    gs, params = conv.to_conductances(W)
    assert params["scale_ratio"].item() == pytest.approx(50.0)
    # w = 2 -> 100 uS: pair 0 G+ = 25 (clamped), pair 1 G+ = (100 - 25) / 3 = 25
    assert [g[1, 2].item() for g in gs] == pytest.approx([25.0, 0.0, 25.0, 0.0])
    # w = 0.25 -> 12.5 uS: pair 0 G+ = 12.5, pair 1 G+ = 0 (clamped at g_min)
    assert [g[1, 0].item() for g in gs] == pytest.approx([12.5, 0.0, 0.0, 0.0])
    # w = -1 -> -50 uS: pair 0 G- = 25, pair 1 G- = 25 / 3
    assert [g[0, 0].item() for g in gs] == pytest.approx([0.0, 25.0, 0.0, 25.0 / 3])


def test_single_device_by_hand() -> None:
    conv = ac.SingleDeviceConductanceConverter()
    (g,), params = conv.to_conductances(W)
    assert (conv.g_max, conv.g_min) == (88.199997, 9.0)
    assert g.min().item() == pytest.approx(9.0) and g.max().item() == pytest.approx(88.199997)
    assert g[0, 2].item() == pytest.approx(9.0 + 1.0 * (88.199997 - 9.0) / 3.0)
    assert params["min"].item() == -1.0


@pytest.mark.parametrize("conv", [
    ac.SinglePairConductanceConverter(), ac.SinglePairConductanceConverter(g_min=2.0),
    ac.NPairConductanceConverter(), ac.NPairConductanceConverter(f_lst=[2.0], g_min=0.5),
    ac.DualPairConductanceConverter(), ac.CustomPairConductanceConverter(),
    ac.CustomPairConductanceConverter(
        f_lst=[1.0, 4.0], g_lst=[[0, 0, 0, 5, 10], [10, 5, 0, 0, 0], [0, 0, 0, 5, 10],
                                 [10, 5, 0, 0, 0]], g_max=10.0),
    ac.SingleDeviceConductanceConverter(),
], ids=lambda c: type(c).__name__)
def test_round_trip(conv: ac.ConductanceConverter) -> None:
    w = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    gs, params = conv.to_conductances(w)
    lo, hi = conv.conductance_range
    for g in gs:
        assert g.shape == w.shape and float(g.min()) >= lo - 1e-5 and float(g.max()) <= hi + 1e-4
    torch.testing.assert_close(conv.from_conductances(gs, params), w, atol=1e-5, rtol=1e-5)
    assert type(conv).from_json(conv.to_json()) == conv


def test_field_checks_name_the_field() -> None:
    with pytest.raises(ValueError, match="SinglePairConductanceConverter.g_min must be < g_max"):
        ac.SinglePairConductanceConverter(g_max=5.0, g_min=5.0)
    with pytest.raises(ValueError, match="DualPairConductanceConverter.f_lst must have two"):
        ac.DualPairConductanceConverter(f_lst=[1.0])
    with pytest.raises(ValueError, match="NPairConductanceConverter.f_lst values must be > 0"):
        ac.NPairConductanceConverter(f_lst=[1.0, -2.0])
    with pytest.raises(ValueError, match="g_lst needs two rows"):
        ac.CustomPairConductanceConverter(f_lst=[1.0, 1.0])
    with pytest.raises(ValueError, match="invertibility_test"):
        ac.CustomPairConductanceConverter(g_lst=[[0, 0, 0, 25, 25], [25, 12.5, 0, 0, 0]])
    ac.CustomPairConductanceConverter(g_lst=[[0, 0, 0, 25, 25], [25, 12.5, 0, 0, 0]],
                                      invertibility_test=False)
