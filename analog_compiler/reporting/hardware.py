"""``HardwareModel``: the chip a cost estimate assumes (energy, time and area per operation).

A validated config dataclass with the same JSON round trip as the RPU configs
(``to_dict``/``from_dict``/``to_json``/``from_json``). Energies are in picojoules (pJ), times in
nanoseconds (ns), areas in square millimetres (mm2). Two presets are calibrated to published IBM
chips (see ``HardwareModel.hermes`` and ``HardwareModel.speech``): fed their paper's benchmark
workload (every core running full-utilisation MVMs at the paper's 8-bit precision) they reproduce
the paper's headline figures (``tests/reporting/test_hardware.py`` checks it).

The ADC energy follows the Walden figure-of-merit law: energy per conversion = FOM x 2^bits, so
``adc_energy(bits) = adc_energy_pj * 2 ** (bits - adc_bits)`` (one bit less halves it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..runtime.config.base import ConfigBase, check_int, check_number

#: Operations per multiply-accumulate, the convention of every TOPS figure quoted here.
OPS_PER_MAC = 2


def resolution_bits(res: float, default: int) -> int:
    """Converter bits of an aihwkit resolution field (``out_res``/``inp_res``).

    ``0 < res < 1`` is the step as a fraction of the full range, i.e. ``1 / res`` steps and
    ``1 / res + 2`` levels in aihwkit's convention (``1/254`` -> 8 bits, ``1/510`` -> 9 bits);
    ``res >= 1`` is the number of steps itself; ``res <= 0`` (no quantization) gives ``default``.
    """
    if res <= 0:
        return default
    steps = 1.0 / res if res < 1 else res
    return max(1, math.ceil(math.log2(steps + 2) - 1e-9))


@dataclass
class HardwareModel(ConfigBase):
    """A chip of identical analog cores plus a digital unit, with the costs of each operation.

    The defaults are the IBM HERMES 64-core chip (``HardwareModel.hermes()``, rounded).
    """

    name: str = "custom"
    """Label shown in reports."""
    tile_rows: int = 256
    """Physical crossbar rows of one core (outputs; weights per column)."""
    tile_cols: int = 256
    """Physical crossbar columns of one core (inputs)."""
    tiles_per_chip: int = 64
    """Analog cores (tiles) on one chip."""
    dac_energy_pj: float = 5.246
    """Energy of one input (DAC) conversion, pJ."""
    adc_energy_pj: float = 23.61
    """Energy of one output (ADC) conversion at ``adc_bits``, pJ; other resolutions follow the
    Walden law ``adc_energy_pj * 2 ** (bits - adc_bits)``."""
    adc_bits: int = 8
    """Resolution at which ``adc_energy_pj`` holds; also assumed for layers without output
    quantization (``out_res <= 0`` or ``is_perfect``)."""
    array_energy_fj: float = 51.23
    """Crossbar read energy per used cell per MVM (one multiply-accumulate), fJ."""
    digital_energy_pj: float = 10.49
    """Digital periphery energy per converted output: scale, affine correction and partial-sum
    accumulation, pJ."""
    bm_redo_rate: float = 0.0
    """Expected fraction of input vectors that bound management runs again (each redo is a
    full tile MVM); counted only for layers with bound management on. Measure it on your data
    or set an expected rate; 0 counts one pass."""
    integration_time_ns: float = 99.71
    """Time the crossbar integrates one MVM (input pulses and charge collection), ns."""
    conversion_time_ns: float = 33.24
    """Time of one ADC conversion, ns; with shared ADCs a tile converts its rows in
    ``ceil(tile_rows / adcs_per_tile)`` rounds."""
    adcs_per_tile: int = 0
    """ADCs per core (column sharing); 0 = one ADC per row (no sharing)."""
    tile_area_mm2: float = 1.849
    """Area of one core without its ADCs (crossbar, DACs, digital periphery), mm2."""
    adc_area_mm2: float = 0.002407
    """Area of one ADC, mm2."""
    clock_mhz: float = 1000.0
    """Clock of the digital unit that runs the layers kept off the tiles, MHz."""
    digital_macs_per_cycle: int = 256
    """Multiply-accumulates the digital unit does per clock cycle."""
    digital_mac_energy_pj: float = 1.0
    """Energy per multiply-accumulate of a digital layer (off the tiles), pJ."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"HardwareModel.name must be a string, got {self.name!r}")
        for name in ("tile_rows", "tile_cols", "tiles_per_chip", "adc_bits",
                     "digital_macs_per_cycle"):
            check_int(self, name, min_value=1)
        check_int(self, "adcs_per_tile", min_value=0)
        for name in ("dac_energy_pj", "adc_energy_pj", "array_energy_fj", "digital_energy_pj",
                     "integration_time_ns", "conversion_time_ns", "tile_area_mm2",
                     "adc_area_mm2", "digital_mac_energy_pj"):
            check_number(self, name, min_value=0.0)
        check_number(self, "bm_redo_rate", min_value=0.0)
        check_number(self, "clock_mhz", positive=True)
        if self.adcs_per_tile > self.tile_rows:
            raise ValueError(f"HardwareModel.adcs_per_tile must be <= tile_rows "
                             f"({self.tile_rows}), got {self.adcs_per_tile}")
        if self.adc_bits > 24:
            raise ValueError(f"HardwareModel.adc_bits must be <= 24, got {self.adc_bits}")

    # ------------------------------------------------------------------ derived figures
    def adc_energy(self, bits: int) -> float:
        """pJ per conversion at ``bits`` (Walden law: doubles per extra bit)."""
        return self.adc_energy_pj * 2.0 ** (bits - self.adc_bits)

    @property
    def adcs(self) -> int:
        """ADCs per core (``tile_rows`` without column sharing)."""
        return self.adcs_per_tile or self.tile_rows

    @property
    def mvm_time_ns(self) -> float:
        """Time of one core MVM: integration, then the ADC rounds for all rows."""
        return self.integration_time_ns + self.conversion_time_ns * math.ceil(
            self.tile_rows / self.adcs)

    @property
    def core_area_mm2(self) -> float:
        """Area of one core with its ADCs."""
        return self.tile_area_mm2 + self.adcs * self.adc_area_mm2

    def full_mvm_energy_pj(self, bits: int | None = None) -> float:
        """Energy of one MVM that uses every cell of a core (the calibration workload)."""
        bits = self.adc_bits if bits is None else bits
        return (self.tile_cols * self.dac_energy_pj + self.tile_rows * self.adc_energy(bits)
                + self.tile_rows * self.tile_cols * self.array_energy_fj * 1e-3
                + self.tile_rows * self.digital_energy_pj)

    def peak_tops(self) -> float:
        """Chip throughput with every core running full MVMs back to back, TOPS."""
        ops = OPS_PER_MAC * self.tile_rows * self.tile_cols * self.tiles_per_chip
        return ops / self.mvm_time_ns * 1e-3

    def peak_tops_per_w(self) -> float:
        """Energy efficiency of full MVMs at ``adc_bits``, TOPS/W (ops per pJ)."""
        return OPS_PER_MAC * self.tile_rows * self.tile_cols / self.full_mvm_energy_pj()

    # ------------------------------------------------------------------ presets
    @classmethod
    def hermes(cls, **changes: object) -> HardwareModel:
        """IBM HERMES: 64 PCM cores of 256x256, 14 nm, 8-bit inputs and outputs.

        Source: M. Le Gallo et al., "A 64-core mixed-signal in-memory compute chip based on
        phase-change memory for deep neural network inference", Nature Electronics (2023),
        doi:10.1038/s41928-023-01010-1 (arXiv:2212.02872). Abstract: for 8-bit
        input/output MVMs in the one-phase read mode the chip reaches 63.1 TOPS at 9.76 TOPS/W
        (four-phase, high precision: 16.1 TOPS at 2.48 TOPS/W). Calibration (one-phase):

        - one full core MVM = 2 x 256 x 256 = 131072 ops; 64 cores / 63.1 TOPS
          -> 132.9 ns per MVM; split 3:1 into integration and conversion (assumed);
        - 131072 ops / 9.76 TOPS/W -> 13.43 nJ per MVM; its split is assumed (the abstract
          gives only the total): ADC 45 % (one CCO-based ADC per row), array 25 %, digital
          periphery 20 %, DAC 10 %;
        - core area 2.47 mm2 from the 400 GOPS/mm2 MVM density quoted for the chip in press
          coverage of IBM's announcement (63.1 TOPS / 64 cores / 400 GOPS/mm2; not checked in
          the paper), 25 % of it assumed to be the 256 ADCs;
        - digital unit (assumed): 1 GHz, 256 MACs per cycle, 1 pJ per digital MAC.
        """
        return cls(**{**_calibrated("hermes", 256, 256, 64, tops=63.1, tops_per_w=9.76,
                                    core_area=63.1e3 / 64 / 400, shares=_HERMES_SHARES),
                      **changes})

    @classmethod
    def speech(cls, **changes: object) -> HardwareModel:
        """IBM's 34-tile speech-recognition chip: 512x2048 PCM devices per tile, 14 nm.

        Source: S. Ambrogio et al., "An analog-AI chip for energy-efficient speech recognition
        and transcription", Nature 620, 768-775 (2023), doi:10.1038/s41586-023-06337-5.
        Abstract: 35 million PCM devices across 34 tiles, up to 12.4 TOPS/W chip-sustained
        performance; Fig. 1: 512 x 2048 PCMs per tile, 4 PCMs per weight (so 512 x 512 weights
        per tile), 8-bit inputs converted to pulse durations by the input landing pads.
        Calibration:

        - one full tile MVM = 2 x 512 x 512 = 524288 ops / 12.4 TOPS/W -> 42.28 nJ; its split
          is assumed: array 40 %, duration-to-digital conversion ("ADC") 35 %, DAC 10 %,
          digital periphery 15 %;
        - time per MVM: the abstract gives no throughput and the search tools found none we
          could verify; the preset assumes 8-bit pulse-duration inputs of 1 ns per step
          (256 ns integration) and 256 ns conversion, i.e. 34 x 524288 ops / 512 ns = 34.8 TOPS.
          Treat throughput from this preset as an assumption, not a calibrated figure;
        - area: the tile area is an assumption (1.5 mm2 per tile, 10 % of it the 512 ADCs).
        """
        return cls(**{**_calibrated("speech", 512, 512, 34, tops=34 * 2 * 512 * 512 / 512e3,
                                    tops_per_w=12.4, core_area=1.5, shares=_SPEECH_SHARES,
                                    integration_share=0.5),
                      **changes})


#: Assumed split of one full MVM's energy (the papers publish only the total).
_HERMES_SHARES = {"adc": 0.45, "array": 0.25, "digital": 0.20, "dac": 0.10}
_SPEECH_SHARES = {"adc": 0.35, "array": 0.40, "digital": 0.15, "dac": 0.10}


def _calibrated(name: str, rows: int, cols: int, tiles: int, *, tops: float, tops_per_w: float,
                core_area: float, shares: dict[str, float],
                integration_share: float = 0.75) -> dict[str, object]:
    """Fields that make full-utilisation 8-bit MVMs hit ``tops`` and ``tops_per_w``."""
    ops = OPS_PER_MAC * rows * cols
    mvm_ns = ops * tiles / (tops * 1e3)          # TOPS = ops per ps -> 1e3 ops per ns
    energy_pj = ops / tops_per_w                  # TOPS/W = ops per pJ
    adc_area_share = 0.25 if name == "hermes" else 0.10
    return dict(
        name=name, tile_rows=rows, tile_cols=cols, tiles_per_chip=tiles, adc_bits=8,
        dac_energy_pj=shares["dac"] * energy_pj / cols,
        adc_energy_pj=shares["adc"] * energy_pj / rows,
        array_energy_fj=shares["array"] * energy_pj / (rows * cols) * 1e3,
        digital_energy_pj=shares["digital"] * energy_pj / rows,
        integration_time_ns=integration_share * mvm_ns,
        conversion_time_ns=(1 - integration_share) * mvm_ns,
        tile_area_mm2=(1 - adc_area_share) * core_area,
        adc_area_mm2=adc_area_share * core_area / rows)


#: Preset names accepted wherever a hardware model is asked for (``report``, the CLI).
PRESETS = {"hermes": HardwareModel.hermes, "speech": HardwareModel.speech}


def as_hardware(spec: HardwareModel | str | dict | object) -> HardwareModel:
    """A ``HardwareModel`` from itself, a preset name (``hermes``, ``speech``), a path to a
    JSON file (``HardwareModel.to_json`` format) or a ``to_dict`` dict."""
    from pathlib import Path

    if isinstance(spec, HardwareModel):
        return spec
    if isinstance(spec, dict):
        return HardwareModel.from_dict(spec)
    if isinstance(spec, (str, Path)):
        key = str(spec)
        if key.lower() in PRESETS:
            return PRESETS[key.lower()]()
        path = Path(key)
        if path.suffix.lower() == ".json" or path.exists():
            if not path.is_file():
                raise ValueError(f"hardware: no such file {key!r} (give a preset "
                                 f"{' or '.join(sorted(PRESETS))}, or a HardwareModel JSON)")
            return HardwareModel.from_json(path.read_text())
        raise ValueError(f"hardware: unknown preset {key!r}; use one of "
                         f"{', '.join(sorted(PRESETS))} or a path to a HardwareModel JSON file")
    raise TypeError(f"hardware must be a HardwareModel, a preset name or a JSON path, got "
                    f"{type(spec).__name__}")
