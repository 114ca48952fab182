"""HardwareModel: validation, JSON round trip, the ADC law, and the presets against their papers.

The calibration tests feed each preset its paper's benchmark workload (every core running
full-utilisation 8-bit MVMs) through ``ac.report`` and compare with the published figures.
"""

from __future__ import annotations

import math

import pytest
import torch

import analog_compiler as ac
from analog_compiler.reporting.hardware import as_hardware, resolution_bits

#: Published figures (abstracts): HERMES one-phase 8-bit MVMs (Le Gallo et al., Nat. Electron.
#: 2023); speech chip sustained efficiency (Ambrogio et al., Nature 2023).
HERMES_TOPS, HERMES_TOPS_PER_W = 63.1, 9.76
SPEECH_TOPS_PER_W = 12.4


def full_layer(hw: ac.HardwareModel, n_in: int, n_out: int) -> ac.AnalogLinear:
    """A linear layer of ``n_in x n_out`` full cores of ``hw`` at 8-bit DAC and ADC."""
    io = ac.IOParameters(inp_res=1 / 254, out_res=1 / 254)
    mapping = ac.MappingParameter(max_input_size=hw.tile_cols, max_output_size=hw.tile_rows)
    return ac.AnalogLinear(n_in * hw.tile_cols, n_out * hw.tile_rows, bias=False,
                           rpu_config=ac.InferenceRPUConfig(forward=io, mapping=mapping))


def run_benchmark(hw: ac.HardwareModel, n_in: int, n_out: int, batch: int = 3):
    layer = full_layer(hw, n_in, n_out)
    x = torch.randn(batch, layer.in_features)
    cost = ac.report(torch.nn.Sequential(layer), x, hardware=hw).cost
    ops_per_forward = 2 * layer.in_features * layer.out_features * batch
    return cost, ops_per_forward


def test_hermes_reproduces_its_paper():
    hw = ac.HardwareModel.hermes()
    cost, ops = run_benchmark(hw, 8, 8)  # 64 full 256x256 cores: the whole chip
    assert cost.chips == 1 and cost.cores_used == 64
    assert cost.layers[0].adc_bits == 8
    tops = ops * cost.inferences_per_s * 1e-12
    assert tops == pytest.approx(HERMES_TOPS, rel=0.10)
    assert cost.tops_per_w == pytest.approx(HERMES_TOPS_PER_W, rel=0.10)
    # all cores in parallel: the sequential latency gives the same rate
    assert ops / cost.latency_ns * 1e-3 == pytest.approx(HERMES_TOPS, rel=0.10)


def test_speech_reproduces_its_efficiency():
    hw = ac.HardwareModel.speech()
    cost, ops = run_benchmark(hw, 2, 17)  # 34 full 512x512-weight tiles
    assert cost.chips == 1 and cost.cores_used == 34
    assert cost.tops_per_w == pytest.approx(SPEECH_TOPS_PER_W, rel=0.10)
    # throughput: not calibrated (no verified published figure); consistent with the preset
    assert ops * cost.inferences_per_s * 1e-12 == pytest.approx(hw.peak_tops(), rel=1e-9)


def test_adc_law_six_bits_cost_a_quarter_of_eight():
    hw = ac.HardwareModel.hermes()
    assert hw.adc_energy(6) == pytest.approx(hw.adc_energy(8) / 4)
    assert hw.adc_energy(9) == pytest.approx(2 * hw.adc_energy(8))


@pytest.mark.parametrize(("res", "bits"), [(1 / 254, 8), (1 / 510, 9), (1 / 62, 6),
                                           (1 / 126, 7), (254, 8), (0.0, 5), (-1.0, 5)])
def test_resolution_bits(res, bits):
    assert resolution_bits(res, default=5) == bits


def test_json_round_trip_and_presets():
    for hw in (ac.HardwareModel(), ac.HardwareModel.hermes(), ac.HardwareModel.speech(),
               ac.HardwareModel.speech(tiles_per_chip=8, adcs_per_tile=64)):
        again = ac.HardwareModel.from_json(hw.to_json())
        assert again == hw
    assert ac.HardwareModel.speech(tiles_per_chip=8).tiles_per_chip == 8
    default, hermes = ac.HardwareModel(), ac.HardwareModel.hermes()
    assert default.peak_tops() == pytest.approx(hermes.peak_tops(), rel=1e-3)
    assert default.peak_tops_per_w() == pytest.approx(hermes.peak_tops_per_w(), rel=1e-3)


def test_as_hardware(tmp_path):
    assert as_hardware("HERMES").name == "hermes"
    path = tmp_path / "hw.json"
    path.write_text(ac.HardwareModel(name="mine", tile_rows=128).to_json())
    assert as_hardware(str(path)).tile_rows == 128
    assert as_hardware(ac.HardwareModel.speech().to_dict()).name == "speech"
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        as_hardware("tpu")
    with pytest.raises(ValueError, match="no such file"):
        as_hardware(str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="hardware must be a HardwareModel"):
        as_hardware(3)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("tile_rows", 0, "HardwareModel.tile_rows must be >= 1"),
    ("tiles_per_chip", 2.5, "HardwareModel.tiles_per_chip must be an integer"),
    ("adc_energy_pj", -1.0, "HardwareModel.adc_energy_pj must be >= 0"),
    ("clock_mhz", 0.0, "HardwareModel.clock_mhz must be > 0"),
    ("adcs_per_tile", 300, "HardwareModel.adcs_per_tile must be <= tile_rows"),
    ("bm_redo_rate", math.nan, "HardwareModel.bm_redo_rate must be finite"),
    ("name", 3, "HardwareModel.name must be a string"),
])
def test_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ac.HardwareModel(**{field: value})
    hw = ac.HardwareModel()
    with pytest.raises(ValueError, match=message):
        setattr(hw, field, value)


def test_column_sharing_slows_conversion_and_saves_area():
    hw = ac.HardwareModel(adcs_per_tile=64)
    assert hw.mvm_time_ns == pytest.approx(hw.integration_time_ns + 4 * hw.conversion_time_ns)
    assert hw.core_area_mm2 == pytest.approx(hw.tile_area_mm2 + 64 * hw.adc_area_mm2)
    assert hw.core_area_mm2 < ac.HardwareModel().core_area_mm2
