"""Cost of a mapping on a ``HardwareModel``: energy, latency, area, chips. All formulas here.

Per analog layer, with ``n`` input vectors per forward, ``m = n * (1 + bm_redo_rate)`` MVMs per
core piece when the layer uses bound management (``n`` otherwise), and the sums running over the
layer's pieces (``placement.pieces_of``: its logical tiles cut to the core size; ``r x c`` used
rows x columns each)::

    E_dac     = m * sum(c)     * dac_energy_pj               one DAC conversion per used column
    E_adc     = m * sum(r)     * adc_energy_pj * 2^(b - adc_bits)     Walden law, b from out_res
    E_array   = m * sum(r * c) * array_energy_fj / 1000      one read per used cell (a MAC)
    E_digital = m * sum(r)     * digital_energy_pj           scale + accumulate per output
    t_stage   = ceil(n / replicas) * (1 + redo) * t_mvm * depth,
                t_mvm = integration_time_ns + conversion_time_ns * ceil(tile_rows / ADCs)
    area      = cores * replicas * (tile_area_mm2 + ADCs * adc_area_mm2)

Digital work (layers kept off the tiles and every other matrix product, e.g. attention):
``E = MACs * digital_mac_energy_pj``, ``t = MACs / (digital_macs_per_cycle * clock)``.

Totals per forward of ``example_inputs``: energy = sum of all terms; latency = the layers in
sequence (each layer's stage time, its tiles in parallel) plus the digital time; throughput =
pipelined, ``1 / slowest stage`` (see ``placement``); TOPS/W = ``2 * (analog + digital MACs) /
energy``, so low cell utilisation (converters per MVM for few MACs) lowers it; the analog share
is the tile energy over the total. An estimate for comparing mappings, not a circuit simulation:
no interconnect, no static power, no off-chip traffic, one energy per conversion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .hardware import OPS_PER_MAC, HardwareModel
from .placement import LayerPlacement, LayerWork, Placement, Slot, pieces_of, place

#: Energy components of an analog layer, in report order.
PARTS = ("dac", "array", "adc", "digital")
#: Their names in text (``digital_layers``: the work kept off the tiles).
PART_NAMES = {"dac": "DAC", "array": "array", "adc": "ADC", "digital": "digital periphery",
              "digital_layers": "digital layers"}


@dataclass
class LayerCost:
    """Cost of one layer per forward (analog: on the cores; digital: on the digital unit)."""

    name: str
    """Qualified layer name."""
    status: str
    """``analog`` or ``digital``."""
    energy_pj: dict[str, float] = field(default_factory=dict)
    """Analog: ``dac``, ``array``, ``adc``, ``digital`` (periphery); digital: ``digital``."""
    latency_ns: float | None = None
    """Stage time per forward (analog: with its replicas)."""
    area_mm2: float = 0.0
    """Core area the layer occupies (with replicas)."""
    adc_bits: int | None = None
    """ADC resolution used for the layer (from its ``out_res``); None for digital layers."""
    cores: int = 0
    """Cores of one copy."""
    replicas: int = 1
    """Copies of the layer on the cores."""

    @property
    def energy(self) -> float:
        """Total pJ per forward."""
        return sum(self.energy_pj.values())


@dataclass
class CostReport:
    """What the mapping costs on one ``HardwareModel`` (``TileReport.cost``)."""

    hardware: dict[str, Any]
    """The ``HardwareModel.to_dict()`` used."""
    layers: list[LayerCost] = field(default_factory=list)
    other_digital_energy_pj: float | None = None
    """Digital matrix products outside the listed layers (attention, functional calls)."""
    energy_pj: float | None = None
    """Energy per forward of ``example_inputs`` (None for a static report)."""
    energy_parts_pj: dict[str, float] = field(default_factory=dict)
    """The total split into dac, array, adc, digital periphery and ``digital_layers``."""
    latency_ns: float | None = None
    """The layers in sequence (a layer's tiles in parallel) plus the digital work, ns."""
    tops_per_w: float | None = None
    """Achieved on this model: ``2 * all MACs / energy``."""
    inferences_per_s: float | None = None
    """Pipelined forwards per second with replication."""
    inferences_per_s_single: float | None = None
    """Pipelined forwards per second without replication."""
    analog_energy_share: float | None = None
    """Energy on the tiles (converters, arrays, periphery) over the total."""
    area_mm2: float = 0.0
    """Area of the cores in use."""
    chips: int = 1
    """Chips needed side by side (or reprogramming rounds of one chip)."""
    cores_used: int = 0
    """Cores in use, copies included."""
    bottleneck: str | None = None
    """The slowest pipeline stage (a layer name, or ``digital``)."""
    placement: Placement | None = None
    """Where every tile sits (``reporting.placement``)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostReport:
        """Inverse of ``dataclasses.asdict`` (for ``TileReport.from_dict``)."""
        data = dict(data)
        layers = [LayerCost(**row) for row in data.pop("layers", [])]
        placed = data.pop("placement", None)
        if placed is not None:
            placed = dict(placed)
            placed["layers"] = [LayerPlacement(**x) for x in placed.get("layers", [])]
            placed["slots"] = [Slot(**x) for x in placed.get("slots", [])]
            placed = Placement(**placed)
        return cls(layers=layers, placement=placed, **data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)

    def top_layers(self, k: int = 3) -> list[LayerCost]:
        """The ``k`` layers with the most energy per forward."""
        return sorted(self.layers, key=lambda c: -c.energy)[:k]


def layer_energy(work: LayerWork, hw: HardwareModel) -> dict[str, float]:
    """pJ per forward of one analog layer, split into ``PARTS`` (module formulas)."""
    if work.vectors is None:
        return {}
    m = work.vectors * (1.0 + (hw.bm_redo_rate if work.bound_management else 0.0))
    pieces = pieces_of(work, hw)
    rows = sum(p.rows for p in pieces)
    cols = sum(p.cols for p in pieces)
    cells = sum(p.rows * p.cols for p in pieces)
    return {"dac": m * cols * hw.dac_energy_pj,
            "array": m * cells * hw.array_energy_fj * 1e-3,
            "adc": m * rows * hw.adc_energy(work.adc_bits),
            "digital": m * rows * hw.digital_energy_pj}


def digital_ns(macs: int, hw: HardwareModel) -> float:
    """Time of ``macs`` digital multiply-accumulates on the digital unit."""
    return macs / (hw.digital_macs_per_cycle * hw.clock_mhz * 1e-3)


def estimate(works: list[LayerWork], digital_rows: dict[str, int | None],
             digital_macs: int | None, analog_macs: int | None, hw: HardwareModel, *,
             pack_tiles: bool = False, replicate: bool = True) -> CostReport:
    """The cost report of analog ``works`` and digital rows (name -> MACs) on ``hw``.

    ``digital_macs`` is every digital MAC of the forward (None for a static report); the part
    not in ``digital_rows`` is reported as ``other_digital_energy_pj``.
    """
    timed = digital_macs is not None
    listed = sum(m or 0 for m in digital_rows.values())
    all_digital = max(digital_macs or 0, listed)
    placement = place(works, hw, pack_tiles=pack_tiles, replicate=replicate,
                      digital_stage_ns=digital_ns(all_digital, hw) if timed else 0.0)
    rep = CostReport(hardware=hw.to_dict(), chips=placement.chips,
                     cores_used=placement.cores_used, placement=placement,
                     bottleneck=placement.bottleneck)
    for work, lp in zip(works, placement.layers):
        rep.layers.append(LayerCost(
            name=work.name, status="analog", energy_pj=layer_energy(work, hw),
            latency_ns=lp.stage_ns, area_mm2=lp.cores * lp.replicas * hw.core_area_mm2,
            adc_bits=work.adc_bits, cores=lp.cores, replicas=lp.replicas))
    for name, macs in digital_rows.items():
        rep.layers.append(LayerCost(
            name=name, status="digital",
            energy_pj={"digital": macs * hw.digital_mac_energy_pj} if macs is not None else {},
            latency_ns=digital_ns(macs, hw) if macs is not None else None))
    rep.area_mm2 = placement.cores_used * hw.core_area_mm2
    if not timed:
        return rep
    rep.other_digital_energy_pj = (all_digital - listed) * hw.digital_mac_energy_pj
    analog = [c for c in rep.layers if c.status == "analog"]
    rep.energy_parts_pj = {part: sum(c.energy_pj.get(part, 0.0) for c in analog)
                           for part in PARTS}
    rep.energy_parts_pj["digital_layers"] = all_digital * hw.digital_mac_energy_pj
    rep.energy_pj = sum(rep.energy_parts_pj.values())
    analog_energy = rep.energy_pj - rep.energy_parts_pj["digital_layers"]
    rep.analog_energy_share = analog_energy / rep.energy_pj if rep.energy_pj else None
    ops = OPS_PER_MAC * ((analog_macs or 0) + all_digital)
    rep.tops_per_w = ops / rep.energy_pj if rep.energy_pj else None
    rep.latency_ns = sum(c.latency_ns or 0.0 for c in analog) + digital_ns(all_digital, hw)
    rep.inferences_per_s = placement.throughput
    rep.inferences_per_s_single = placement.throughput_single
    return rep


# ---------------------------------------------------------------------- text forms
def _scaled(value: float | None, scales: tuple[tuple[float, str], ...], base: str) -> str:
    """``value`` in the largest unit of ``scales`` it reaches (3 significant digits)."""
    if value is None:
        return "-"
    for scale, unit in scales:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}{base}"


def fmt_energy(pj: float | None) -> str:
    """``1234.0`` (pJ) -> ``1.23 nJ``; None -> ``-``."""
    return _scaled(pj, ((1e12, " J"), (1e9, " mJ"), (1e6, " uJ"), (1e3, " nJ")), " pJ")


def fmt_time(ns: float | None) -> str:
    """``1234.0`` (ns) -> ``1.23 us``; None -> ``-``."""
    return _scaled(ns, ((1e9, " s"), (1e6, " ms"), (1e3, " us")), " ns")


def _rate(value: float | None) -> str:
    return _scaled(value, ((1e9, "G"), (1e6, "M"), (1e3, "k")), "")


COST_HEADER = ["layer", "cores", "copies", "ADC bits", "energy", "DAC", "array", "ADC",
               "periphery", "stage time", "area mm2"]


def cost_rows(rep: CostReport) -> list[list[str]]:
    """One table row per layer (``COST_HEADER``)."""
    rows = []
    for c in rep.layers:
        parts = [fmt_energy(c.energy_pj.get(p)) if c.status == "analog" else ""
                 for p in PARTS]
        rows.append([c.name or "(model)", str(c.cores) if c.status == "analog" else "digital",
                     str(c.replicas) if c.status == "analog" else "",
                     str(c.adc_bits) if c.adc_bits is not None else "",
                     fmt_energy(c.energy if c.energy_pj else None), *parts,
                     fmt_time(c.latency_ns), f"{c.area_mm2:.3g}" if c.area_mm2 else ""])
    return rows


def cost_header(rep: CostReport) -> str:
    """One line naming the hardware model."""
    h = rep.hardware
    return (f"cost on {h.get('name')}: {h.get('tiles_per_chip')} cores of "
            f"{h.get('tile_rows')}x{h.get('tile_cols')} per chip")


def cost_summary(rep: CostReport) -> list[str]:
    """Totals, one sentence per line."""
    p = rep.placement
    rounds = f" (or {rep.chips} reprogramming rounds of one chip)" if rep.chips > 1 else ""
    capacity = rep.chips * (p.tiles_per_chip if p is not None else 0)
    lines = [f"chips: {rep.chips}{rounds}, cores used: {rep.cores_used} of {capacity}"
             f"{' (packed)' if p is not None and p.packed else ''}, core area "
             f"{rep.area_mm2:.3g} mm2"]
    if rep.energy_pj is None:
        lines.append("energy, latency and throughput need example_inputs (not given)")
        return lines
    parts = ", ".join(f"{PART_NAMES[name]} {100 * value / rep.energy_pj:.1f}%" for name, value in
                      rep.energy_parts_pj.items()) if rep.energy_pj else ""
    lines += [f"per forward: energy {fmt_energy(rep.energy_pj)} ({parts}), latency "
              f"{fmt_time(rep.latency_ns)}, TOPS/W {rep.tops_per_w or 0:.3g}, analog share of "
              f"energy {100 * (rep.analog_energy_share or 0):.1f}%",
              f"pipelined throughput: {_rate(rep.inferences_per_s)} inferences/s with "
              f"replication, {_rate(rep.inferences_per_s_single)} without; bottleneck: "
              f"{rep.bottleneck}"]
    if rep.other_digital_energy_pj:
        lines.append(f"other digital matrix products (attention, functional calls): "
                     f"{fmt_energy(rep.other_digital_energy_pj)}")
    return lines


def placement_lines(rep: CostReport) -> list[str]:
    """``placement (layer: cores):`` and one ``layer: chip/core range (copies)`` line per
    analog layer; empty without analog layers."""
    if rep.placement is None:
        return []
    spans: dict[str, list[tuple[int, int]]] = {}
    for s in rep.placement.slots:
        spans.setdefault(s.layer, []).append((s.chip, s.core))
    lines = []
    for lp in rep.placement.layers:
        cores = sorted(set(spans.get(lp.name, [])))
        if not cores:
            continue
        first, last = cores[0], cores[-1]
        lines.append(f"  {lp.name}: chip {first[0]} core {first[1]} .. chip {last[0]} core "
                     f"{last[1]} ({lp.cores} core(s) x {lp.replicas} cop"
                     f"{'y' if lp.replicas == 1 else 'ies'}, {lp.pieces} tile(s), depth "
                     f"{lp.depth})")
    return ["placement (layer: cores):", *lines] if lines else []
