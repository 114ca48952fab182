"""PNG of a TileReport: one panel per analog layer showing its tile grid (output splits down,
input splits across; one group when grouped), each tile coloured by the fraction of its physical
crossbar it uses. Uses matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from .floorplan import draw_energy
from .table import fmt_pct

if TYPE_CHECKING:
    from .table import LayerRow, TileReport

#: Tile grids larger than this (per side) are drawn without per-tile labels.
MAX_LABELLED = 6


def tile_utilization(row: LayerRow) -> list[list[float]]:
    """``[out split][in split]`` used fraction of each tile's physical crossbar."""
    rows, cols = row.tile_shape or (max(row.out_sizes), max(row.in_sizes))
    return [[o * i / (rows * cols) for i in row.in_sizes] for o in row.out_sizes]


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else "..." + name[-(limit - 3):]


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%" if value >= 0.01 or value == 0 else f"{100 * value:.2g}%"


def _draw_layer(ax, row: LayerRow, cmap, norm) -> None:
    from matplotlib.patches import Rectangle

    util = tile_utilization(row)
    n_out, n_in = len(util), len(util[0])
    rows_, cols_ = row.tile_shape or (max(row.out_sizes), max(row.in_sizes))
    labelled = max(n_in, n_out) <= MAX_LABELLED
    for j, line in enumerate(util):
        for i, value in enumerate(line):
            ax.add_patch(Rectangle((i, j), 1, 1, facecolor=cmap(norm(value)), edgecolor="black",
                                   linewidth=1.2))
            if labelled:  # the used block of the crossbar, to scale, in its top-left corner
                ax.add_patch(Rectangle((i, j), row.in_sizes[i] / cols_, row.out_sizes[j] / rows_,
                                       fill=False, edgecolor="white", linestyle="--",
                                       linewidth=0.8))
                ax.text(i + 0.5, j + 0.5, f"{row.out_sizes[j]}x{row.in_sizes[i]}\n{_pct(value)}",
                        ha="center", va="center", fontsize=9 if max(n_in, n_out) <= 3 else 7,
                        color="white" if value < 0.45 else "black")
    ax.set_xlim(0, n_in)
    ax.set_ylim(n_out, 0)
    ax.set_aspect("equal")
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    shape = "x".join(map(str, row.weight_shape or ()))
    groups = f" (a grid per group, {row.groups} groups)" if row.groups > 1 else ""
    ax.set_title(f"{_short(row.name)}\n{shape}: {row.tile_count} tile(s) of {rows_}x{cols_}"
                 f"{groups}\nutil {fmt_pct(row.utilization)}", fontsize=8)
    ax.set_xlabel(f"{n_in} input split(s)", fontsize=7)
    ax.set_ylabel(f"{n_out} output split(s)", fontsize=7)


def plot_report(report: TileReport, path: str | Path, columns: int | None = None,
                dpi: int = 110) -> Path:
    """Write ``report``'s tile grids to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt
    from matplotlib.colors import Normalize

    path = Path(path)
    layers = report.analog_rows
    t = report.totals
    head = (f"{t.analog_layers} analog layer(s), {t.tiles} tile(s), cell utilization "
            f"{fmt_pct(t.utilization)}")
    if t.analog_share is not None:
        head += f", analog share of MACs {100 * t.analog_share:.1f}%"
    if report.digital_rows:
        head += f"; {len(report.digital_rows)} layer(s) kept digital (see the text report)"
    cmap, norm = plt.get_cmap("viridis"), Normalize(vmin=0.0, vmax=1.0)
    if not layers:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no analog layers: nothing is mapped onto tiles", ha="center",
                va="center", fontsize=11)
        fig.suptitle(head, fontsize=9)
    else:
        ncols = columns or min(6, len(layers))
        nrows = math.ceil(len(layers) / ncols)
        cost = report.cost if report.cost is not None and report.cost.energy_pj else None
        energy_h = 0.25 * len(cost.layers) + 1.2 if cost is not None else 0.0
        height = 3.0 * nrows + 0.9 + energy_h
        fig, axes = plt.subplots(nrows + (cost is not None), ncols,
                                 figsize=(2.9 * ncols + 1.2, height),
                                 squeeze=False, gridspec_kw={"height_ratios": [3.0] * nrows + (
                                     [energy_h] if cost is not None else [])})
        if cost is not None:  # one panel across the last row: energy per layer
            spec = axes[-1, 0].get_gridspec()
            for ax in axes[-1]:
                ax.remove()
            draw_energy(fig.add_subplot(spec[-1, :]), cost)
            axes = axes[:-1]
        for ax, row in zip(axes.flat, layers):
            _draw_layer(ax, row, cmap, norm)
        for ax in list(axes.flat)[len(layers):]:
            ax.axis("off")
        fig.suptitle("Tile mapping: one cell per physical crossbar, coloured by the fraction it "
                     "uses (dashed: the used block)\n" + head,
                     fontsize=10)
        fig.tight_layout(rect=(0, 0, 0.92, 1 - 0.75 / height))  # room for the title
        cax = fig.add_axes((0.935, 0.15, 0.015, 0.7))
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        bar.set_label("tile utilization", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")  # nothing clipped
    plt.close(fig)
    return path
