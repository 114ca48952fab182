"""TileReport: the per-layer tile mapping table and its text, JSON, Markdown and PNG forms."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cost import COST_HEADER, CostReport, cost_header, cost_rows, cost_summary, placement_lines


@dataclass
class LayerRow:
    """One matrix layer: mapped onto tiles (``status == "analog"``) or kept digital."""

    name: str
    """Qualified module name (for a digital functional call: its graph node name)."""
    layer_type: str
    """The analog class, with the original kind when it differs (``AnalogLinear <- Conv1D``);
    for a digital row what it was (``Linear``, ``F.linear``, ``matmul``...)."""
    status: str
    """``analog`` or ``digital``."""
    weight_shape: tuple[int, ...] | None = None
    """Logical weight shape in torch layout (``[out, in]``, ``[out, in/groups, *kernel]``)."""
    groups: int = 1
    """Independent weight blocks (conv groups), each on its own tiles."""
    in_sizes: tuple[int, ...] = ()
    """Used columns of each input split."""
    out_sizes: tuple[int, ...] = ()
    """Used rows of each output split."""
    tile_shape: tuple[int, int] | None = None
    """Physical crossbar (rows, columns) that each tile occupies (see ``report`` for the rule)."""
    tile_count: int = 0
    """Physical tiles (``groups * in splits * out splits``)."""
    used_cells: int = 0
    """Weights stored (``groups * in_g * out_g``)."""
    utilization: float | None = None
    """Used cells / cells of the physical tiles the layer occupies."""
    vectors: int | None = None
    """Input vectors per forward of ``example_inputs`` (batch x tokens, or batch x conv output
    positions); None without ``example_inputs``."""
    macs: int | None = None
    """Multiply-accumulates per forward (analog: on tiles; digital: in the digital module)."""
    tile_mvms: int | None = None
    """Tile matrix-vector products per forward (one pass; bound-management repeats excluded)."""
    adc_conversions: int | None = None
    """ADC conversions per forward (used rows of every tile MVM; one pass)."""
    config_diff: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Config fields that differ from the global config: ``field -> {"global", "layer"}``."""
    reason: str = ""
    """Why a digital row stayed digital."""

    @property
    def in_splits(self) -> int:
        """Input splits (tile columns of the grid) per group."""
        return len(self.in_sizes)

    @property
    def out_splits(self) -> int:
        """Output splits (tile rows of the grid) per group."""
        return len(self.out_sizes)

    @property
    def grid(self) -> str:
        """``in splits x out splits`` (``x G groups`` when grouped); empty for digital rows."""
        if self.status != "analog":
            return ""
        text = f"{self.in_splits}x{self.out_splits}"
        return text + (f" x{self.groups}g" if self.groups > 1 else "")


@dataclass
class ReportTotals:
    """Model-wide sums."""

    analog_layers: int = 0
    digital_layers: int = 0
    tiles: int = 0
    used_cells: int = 0
    physical_cells: int = 0
    utilization: float | None = None
    """Used / physical cells over every tile."""
    analog_macs: int | None = None
    digital_macs: int | None = None
    """Every digital matrix MAC of the forward: digital layers, attention products, ..."""
    analog_share: float | None = None
    """``analog_macs / (analog_macs + digital_macs)``."""
    tile_mvms: int | None = None
    adc_conversions: int | None = None


@dataclass
class TileReport:
    """What ``analog_compiler.report`` found: one row per matrix layer plus totals."""

    rows: list[LayerRow] = field(default_factory=list)
    totals: ReportTotals = field(default_factory=ReportTotals)
    global_config: dict[str, Any] | None = None
    """The global RPU config (``to_dict``) the differences are taken against."""
    capture: str | None = None
    """How conversion captured the model (``fx``, ``module-swap``, ``dynamo``), if known."""
    input_shape: tuple[int, ...] | None = None
    """Shape of the first tensor of ``example_inputs``; None for a static report."""
    notes: list[str] = field(default_factory=list)
    """Caveats and fallbacks, one sentence each."""
    fallbacks: dict[str, str] = field(default_factory=dict)
    """Submodules that conversion could not trace and swapped instead: name -> trace error."""
    cost: CostReport | None = None
    """Energy, latency, area and placement on a ``HardwareModel`` (``report(...,
    hardware=...)``); None without one."""

    @property
    def analog_rows(self) -> list[LayerRow]:
        """Rows of mapped layers."""
        return [r for r in self.rows if r.status == "analog"]

    @property
    def digital_rows(self) -> list[LayerRow]:
        """Rows of layers that stayed digital."""
        return [r for r in self.rows if r.status != "analog"]

    # ---------------------------------------------------------------- machine-readable
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (rows carry ``grid``, ``in_splits`` and ``out_splits`` as well)."""
        out = asdict(self)
        for row, data in zip(self.rows, out["rows"]):
            data.update(grid=row.grid, in_splits=row.in_splits, out_splits=row.out_splits)
        return out

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict`` as JSON (``indent=2`` unless given)."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileReport:
        """Inverse of ``to_dict`` (also of ``json.loads(to_json())``): e.g. to re-plot a saved
        report."""
        derived = {"grid", "in_splits", "out_splits"}
        tuples = {"weight_shape", "in_sizes", "out_sizes", "tile_shape"}
        rows = [LayerRow(**{k: tuple(v) if k in tuples and v is not None else v
                            for k, v in row.items() if k not in derived})
                for row in data.get("rows", [])]
        shape = data.get("input_shape")
        cost = data.get("cost")
        cost = CostReport.from_dict(cost) if cost is not None else None
        return cls(cost=cost, rows=rows, totals=ReportTotals(**data.get("totals", {})),
                   global_config=data.get("global_config"), capture=data.get("capture"),
                   input_shape=tuple(shape) if shape is not None else None,
                   notes=list(data.get("notes", [])), fallbacks=dict(data.get("fallbacks", {})))

    @classmethod
    def from_json(cls, text: str) -> TileReport:
        """Inverse of ``to_json``."""
        return cls.from_dict(json.loads(text))

    # ---------------------------------------------------------------- human-readable
    def _cells(self, row: LayerRow) -> list[str]:
        shape = "x".join(map(str, row.weight_shape)) if row.weight_shape else "-"
        name = row.name or "(model)"
        if row.status != "analog":
            return [name, row.layer_type, shape, "digital", "", "", "", fmt_count(row.macs),
                    "", "", row.reason]
        tile = f"{row.tile_shape[0]}x{row.tile_shape[1]}" if row.tile_shape else ""
        return [name, row.layer_type, shape, row.grid, tile, str(row.tile_count),
                fmt_pct(row.utilization), fmt_count(row.macs), fmt_count(row.tile_mvms),
                fmt_count(row.adc_conversions), f"{len(row.config_diff)} changed"
                if row.config_diff else ""]

    _HEADER = ["layer", "type", "weight", "grid", "tile", "tiles", "util", "MACs", "tile MVMs",
               "ADC conv", "config / reason"]

    def _summary(self) -> list[str]:
        t = self.totals
        lines = [f"analog layers: {t.analog_layers}, digital layers: {t.digital_layers}, "
                 f"tiles: {t.tiles}, cell utilization: {fmt_pct(t.utilization)}"]
        if t.analog_macs is not None:
            lines.append(f"per forward of input {shape_text(self.input_shape)}: analog MACs "
                         f"{fmt_count(t.analog_macs)}, digital MACs {fmt_count(t.digital_macs)}, "
                         f"analog share {fmt_pct(t.analog_share)}, tile MVMs "
                         f"{fmt_count(t.tile_mvms)}, ADC conversions "
                         f"{fmt_count(t.adc_conversions)}")
        return lines

    def _config_lines(self) -> list[str]:
        lines = []
        for row in self.analog_rows:
            for key, change in row.config_diff.items():
                lines.append(f"  {row.name}: {key}: {change['global']!r} -> {change['layer']!r}")
        return lines

    def _header_line(self) -> str:
        if self.global_config is None:
            return "TileReport: no analog layers"
        cfg = self.global_config
        mapping = cfg.get("mapping") or {}
        text = f"TileReport: global config {cfg.get('type', 'unknown')}"
        if mapping:
            text += (f" (max tile {mapping.get('max_output_size')}x"
                     f"{mapping.get('max_input_size')}, weight_scaling_omega="
                     f"{mapping.get('weight_scaling_omega')})")
        return text + (f", capture: {self.capture}" if self.capture else "")

    def __str__(self) -> str:
        lines = [self._header_line()]
        if self.rows:
            lines += format_table(self._HEADER, [self._cells(r) for r in self.rows])
        lines += self._summary()
        config = self._config_lines()
        if config:
            lines += ["config differences from the global config:", *config]
        lines += [f"note: {n}" for n in self.notes]
        if self.cost is not None:
            lines += ["", cost_header(self.cost), *format_table(COST_HEADER,
                                                                cost_rows(self.cost)),
                      *cost_summary(self.cost), *placement_lines(self.cost)]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table with the totals and notes below it."""
        def esc(text: str) -> str:
            return text.replace("|", "\\|")

        lines = [f"**{esc(self._header_line())}**", ""]
        if self.rows:
            lines.append("| " + " | ".join(self._HEADER) + " |")
            lines.append("|" + "|".join("---" for _ in self._HEADER) + "|")
            lines += ["| " + " | ".join(esc(c) for c in self._cells(r)) + " |" for r in self.rows]
            lines.append("")
        lines += [f"- {esc(s)}" for s in self._summary()]
        config = self._config_lines()
        if config:
            lines += ["", "Config differences from the global config:", "",
                      *[f"- {esc(c.strip())}" for c in config]]
        lines += [f"- note: {esc(n)}" for n in self.notes]
        if self.cost is not None:
            lines += ["", f"**{esc(cost_header(self.cost))}**", "",
                      "| " + " | ".join(COST_HEADER) + " |",
                      "|" + "|".join("---" for _ in COST_HEADER) + "|",
                      *["| " + " | ".join(esc(c) for c in r) + " |"
                        for r in cost_rows(self.cost)], "",
                      *[f"- {esc(s)}" for s in cost_summary(self.cost)],
                      *[f"- {esc(s)}" if not s.startswith(" ") else f"  - {esc(s.strip())}"
                        for s in placement_lines(self.cost)]]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path, **kwargs: Any) -> Path:
        """Write a PNG with each layer's tile grid, cells coloured by utilization, and, with a
        hardware cost, the energy breakdown per layer below it."""
        from .plot import plot_report

        return plot_report(self, path, **kwargs)

    def plot_floorplan(self, path: str | Path, **kwargs: Any) -> Path:
        """Write a PNG of the chip(s): every core, coloured by the layer placed on it (needs
        ``report(..., hardware=...)``)."""
        from .floorplan import plot_floorplan

        if self.cost is None or self.cost.placement is None:
            raise ValueError("TileReport.plot_floorplan needs a hardware cost: build the report "
                             "with report(model, example_inputs, hardware=...)")
        return plot_floorplan(self.cost, path, **kwargs)


def fmt_count(value: int | None) -> str:
    """``1234567`` -> ``1.23M``; None -> ``-``."""
    if value is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return str(value)


def fmt_pct(value: float | None) -> str:
    """``0.5625`` -> ``56.2%``; None -> ``-``."""
    if value is None:
        return "-"
    return f"{100 * value:.2g}%" if 0 < value < 0.01 else f"{100 * value:.1f}%"


def shape_text(shape: tuple[int, ...] | None) -> str:
    """``(1, 3, 32, 32)`` -> ``1x3x32x32``."""
    return "?" if shape is None else "x".join(map(str, shape))


def format_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned text columns separated by two spaces, with a rule under the header."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]
