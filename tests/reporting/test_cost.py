"""Cost properties, each checked against the formulas of ``reporting.cost`` written out here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import analog_compiler as ac

HW = ac.HardwareModel.hermes()


def linear(n_in: int, n_out: int, tile: int = 256, out_res: float = 1 / 254, **io) -> nn.Module:
    cfg = ac.InferenceRPUConfig(forward=ac.IOParameters(out_res=out_res, **io),
                                mapping=ac.MappingParameter(max_input_size=tile,
                                                            max_output_size=tile))
    return ac.AnalogLinear(n_in, n_out, rpu_config=cfg)


def cost_of(model: nn.Module, x: torch.Tensor, hw: ac.HardwareModel = HW, **kwargs):
    return ac.report(model, x, hardware=hw, **kwargs).cost


def expected_layer_energy(n_vectors: int, in_sizes, out_sizes, bits: int,
                          hw: ac.HardwareModel = HW) -> dict[str, float]:
    """The formulas, for a layer whose tiles are no larger than a core."""
    cols = len(out_sizes) * sum(in_sizes)
    rows = len(in_sizes) * sum(out_sizes)
    cells = sum(in_sizes) * sum(out_sizes)
    return {"dac": n_vectors * cols * hw.dac_energy_pj,
            "array": n_vectors * cells * hw.array_energy_fj * 1e-3,
            "adc": n_vectors * rows * hw.adc_energy_pj * 2.0 ** (bits - hw.adc_bits),
            "digital": n_vectors * rows * hw.digital_energy_pj}


def test_layer_energy_matches_the_formulas():
    model = nn.Sequential(linear(300, 200))  # 2 input splits of 150, one output split of 200
    cost = cost_of(model, torch.randn(5, 300))
    want = expected_layer_energy(5, (150, 150), (200,), bits=8)
    assert cost.layers[0].energy_pj == pytest.approx(want)
    assert cost.energy_pj == pytest.approx(sum(want.values()))
    assert cost.tops_per_w == pytest.approx(2 * 5 * 300 * 200 / sum(want.values()))


def test_energy_scales_with_batch():
    model = nn.Sequential(ac.AnalogConv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10))
    one = cost_of(model, torch.randn(2, 3, 6, 6))
    two = cost_of(model, torch.randn(6, 3, 6, 6))
    assert two.energy_pj == pytest.approx(3 * one.energy_pj)
    for part, value in one.energy_parts_pj.items():
        assert two.energy_parts_pj[part] == pytest.approx(3 * value)


def test_energy_scales_with_tile_count():
    x = torch.randn(4, 512)
    big = cost_of(nn.Sequential(linear(512, 512, tile=256)), x).layers[0].energy_pj
    small = cost_of(nn.Sequential(linear(512, 512, tile=128)), x).layers[0].energy_pj
    # 4 input splits instead of 2: twice the ADC/periphery conversions, twice the DACs
    # (4 output splits instead of 2); the array reads the same cells
    for part in ("dac", "adc", "digital"):
        assert small[part] == pytest.approx(2 * big[part])
    assert small["array"] == pytest.approx(big["array"])
    stack = nn.Sequential(*[linear(512, 512) for _ in range(3)])
    assert cost_of(stack, x).energy_pj == pytest.approx(3 * sum(big.values()))


def test_six_bit_adc_costs_less_by_the_law():
    x = torch.randn(3, 256)
    six = cost_of(nn.Sequential(linear(256, 256, out_res=1 / 62)), x).layers[0]
    eight = cost_of(nn.Sequential(linear(256, 256, out_res=1 / 254)), x).layers[0]
    assert (six.adc_bits, eight.adc_bits) == (6, 8)
    assert six.energy_pj["adc"] == pytest.approx(eight.energy_pj["adc"] / 4)
    for part in ("dac", "array", "digital"):
        assert six.energy_pj[part] == pytest.approx(eight.energy_pj[part])


def test_low_utilisation_lowers_tops_per_w():
    full = cost_of(nn.Sequential(linear(512, 512)), torch.randn(4, 512))
    low = cost_of(nn.Sequential(linear(300, 300)), torch.randn(4, 300))  # 4 tiles of 150x150
    assert low.tops_per_w < full.tops_per_w
    want = expected_layer_energy(4, (150, 150), (150, 150), bits=8)
    assert low.tops_per_w == pytest.approx(2 * 4 * 300 * 300 / sum(want.values()))


def test_digital_layers_are_counted_apart():
    model = nn.Sequential(linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cost = cost_of(model, torch.randn(4, 64))
    (digital,) = [c for c in cost.layers if c.status == "digital"]
    assert digital.name == "2"
    assert digital.energy_pj == {"digital": pytest.approx(4 * 32 * 10 * HW.digital_mac_energy_pj)}
    assert digital.latency_ns == pytest.approx(4 * 320 / (HW.digital_macs_per_cycle
                                                          * HW.clock_mhz * 1e-3))
    assert cost.energy_parts_pj["digital_layers"] == pytest.approx(digital.energy)
    analog = cost.layers[0].energy
    assert cost.analog_energy_share == pytest.approx(analog / (analog + digital.energy))
    assert cost.other_digital_energy_pj == 0


def test_bound_management_redo_rate():
    x = torch.randn(4, 256)
    hw = ac.HardwareModel.hermes(bm_redo_rate=0.25)
    base = cost_of(nn.Sequential(linear(256, 256)), x).layers[0].energy
    redo = cost_of(nn.Sequential(linear(256, 256)), x, hw=hw).layers[0].energy
    assert redo == pytest.approx(1.25 * base)
    off = cost_of(nn.Sequential(linear(256, 256, bound_management="NONE")), x, hw=hw)
    assert off.layers[0].energy == pytest.approx(base)


def test_latency_layers_in_sequence_tiles_in_parallel():
    model = nn.Sequential(linear(512, 512), linear(512, 256))
    cost = cost_of(model, torch.randn(5, 512), replicate=False)
    assert cost.latency_ns == pytest.approx(2 * 5 * HW.mvm_time_ns)
    assert cost.inferences_per_s == pytest.approx(1e9 / (5 * HW.mvm_time_ns))
    assert cost.area_mm2 == pytest.approx(6 * HW.core_area_mm2)


def test_model_larger_than_a_chip_reports_chips():
    hw = ac.HardwareModel.hermes(tiles_per_chip=4)
    cost = cost_of(nn.Sequential(linear(768, 768), linear(768, 256)), torch.randn(2, 768), hw=hw)
    assert cost.cores_used >= 9 + 3
    assert cost.chips == math.ceil(12 / 4)
    assert {s.chip for s in cost.placement.slots} == {0, 1, 2}


def test_static_report_has_placement_but_no_energy():
    rep = ac.report(nn.Sequential(linear(512, 512)), hardware="hermes")
    assert rep.cost.energy_pj is None and rep.cost.chips == 1 and rep.cost.cores_used == 4
    assert "need example_inputs" in str(rep)


def test_report_forms_carry_the_cost(tmp_path):
    model = nn.Sequential(linear(300, 200), nn.ReLU(), nn.Linear(200, 10))
    rep = ac.report(model, torch.randn(2, 300), hardware="speech")
    text, md = str(rep), rep.to_markdown()
    for form in (text, md):
        assert "cost on speech" in form and "TOPS/W" in form and "bottleneck" in form
    again = ac.TileReport.from_json(rep.to_json())
    assert again.cost == rep.cost and again.to_json() == rep.to_json()
    assert [c.name for c in rep.cost.top_layers(2)] == ["0", "2"]
    assert rep.plot(tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    assert rep.plot_floorplan(tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="plot_floorplan needs a hardware cost"):
        ac.report(model).plot_floorplan(tmp_path / "g.png")


def test_all_digital_model_costs_only_the_digital_unit():
    model = nn.Sequential(nn.Linear(8, 4))
    cost = cost_of(model, torch.randn(3, 8))
    assert cost.energy_pj == pytest.approx(3 * 8 * 4 * HW.digital_mac_energy_pj)
    assert cost.analog_energy_share == 0 and cost.cores_used == 0 and cost.bottleneck == "digital"
    assert cost.inferences_per_s == pytest.approx(
        1e9 * HW.digital_macs_per_cycle * HW.clock_mhz * 1e-3 / 96)
    assert "placement" not in str(ac.report(model, torch.randn(3, 8), hardware=HW))
