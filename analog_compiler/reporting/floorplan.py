"""PNGs of a hardware cost: the chip floorplan (cores coloured by layer, the used cells of each
piece drawn to scale inside its core) and the per-layer energy breakdown bars (drawn below the
tile grids by ``TileReport.plot``). matplotlib's Agg backend; no display needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cost import PART_NAMES

if TYPE_CHECKING:
    from .cost import CostReport

#: Chips drawn side by side at most (the title says how many there are).
MAX_CHIPS_DRAWN = 8

#: Bar colours of the energy parts (DAC, array, ADC, digital periphery, digital layers).
PART_COLOURS = {"dac": "#4c72b0", "array": "#55a868", "adc": "#c44e52", "digital": "#8172b2",
                "digital_layers": "#937860"}


def draw_energy(ax: Any, cost: CostReport) -> None:
    """Horizontal stacked bars: each layer's energy per forward split into its parts (nJ)."""
    layers = [c for c in cost.layers if c.energy_pj]
    names = [c.name or "(model)" for c in layers]
    left = [0.0] * len(layers)
    for part, colour in PART_COLOURS.items():
        key = "digital" if part == "digital_layers" else part
        values = [c.energy_pj.get(key, 0.0) * 1e-3 if (c.status == "digital") ==
                  (part == "digital_layers") else 0.0 for c in layers]
        if any(values):
            ax.barh(range(len(layers)), values, left=left, color=colour,
                    label=PART_NAMES[part])
            left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([n if len(n) <= 28 else "..." + n[-25:] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("energy per forward (nJ)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"energy per layer on {cost.hardware.get('name')}: total "
                 f"{(cost.energy_pj or 0) * 1e-3:.4g} nJ, TOPS/W {cost.tops_per_w or 0:.3g}",
                 fontsize=9)


def plot_floorplan(cost: CostReport, path: str | Path, dpi: int = 110) -> Path:
    """Write the floorplan of ``cost.placement`` to ``path`` (PNG): one panel per chip, its
    cores in a near-square grid, each piece drawn to scale in its core, coloured by layer."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    placement = cost.placement
    if placement is None:
        raise ValueError("plot_floorplan: the cost report has no placement")
    hw = cost.hardware
    rows, cols = int(hw.get("tile_rows", 1)), int(hw.get("tile_cols", 1))
    per_chip = placement.tiles_per_chip
    side = math.ceil(math.sqrt(per_chip))
    names = [lp.name for lp in placement.layers]
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")  # colours repeat past 20
    colour = {name: cmap(k % cmap.N) for k, name in enumerate(names)}
    chips = min(placement.chips, MAX_CHIPS_DRAWN)
    fig, axes = plt.subplots(1, chips, figsize=(min(4.5 * chips, 18) + 2.5, 5), squeeze=False)
    for chip, ax in enumerate(axes.flat):
        for core in range(per_chip):
            y, x = divmod(core, side)
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor="#eeeeee", edgecolor="black",
                                   linewidth=0.6))
        mine = [s for s in placement.slots if s.chip == chip]
        for s in mine:  # the core, in a light shade of its layer's colour
            y, x = divmod(s.core, side)
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour[s.layer], alpha=0.3,
                                   edgecolor="black", linewidth=0.6))
        for s in mine:  # the used cells of each piece, to scale
            y, x = divmod(s.core, side)
            ax.add_patch(Rectangle((x + 0.05 + 0.9 * s.col / cols, y + 0.05 + 0.9 * s.row / rows),
                                   0.9 * s.cols / cols, 0.9 * s.rows / rows,
                                   facecolor=colour[s.layer], edgecolor="white", linewidth=0.4))
        ax.set_xlim(0, side)
        ax.set_ylim(side, 0)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"chip {chip}", fontsize=9)
    handles = [Patch(color=colour[lp.name], label=f"{lp.name} (x{lp.replicas})"
                     if lp.replicas > 1 else lp.name) for lp in placement.layers]
    fig.legend(handles=handles[:30], loc="center right", fontsize=7, frameon=False)
    used = f"{placement.cores_used} of {placement.chips * per_chip} cores"
    shown = f" (first {chips} drawn)" if chips < placement.chips else ""
    fig.suptitle(f"{hw.get('name')}: {placement.chips} chip(s){shown}, {used}; each core "
                 f"{rows}x{cols}, the used cells of each tile drawn to scale\n(light: the rest "
                 "of its core)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 0.93))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")  # nothing clipped
    plt.close(fig)
    return path
