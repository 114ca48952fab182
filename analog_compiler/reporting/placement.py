"""Placement, the compiler's back end: the model's logical tiles on a chip's physical cores.

1. **Pieces.** Every logical tile of a layer (group g, output split j, input split i; its used
   size ``out_sizes[j] x in_sizes[i]``) is cut into blocks of at most the core's crossbar
   (``tile_rows x tile_cols``). With a mapping that matches the hardware, one piece per tile.
2. **Cores.** By default one piece per core, at the crossbar's corner. With ``pack=True`` the
   pieces of one layer that fit together share a core (first fit by decreasing area into the
   free rectangles of each core, guillotine cuts, so two pieces never share a cell). Pieces of
   different layers never share a core, so pipeline stages never share one; a core runs its
   pieces one after the other, so packing trades cores for time (``depth``).
3. **Chips.** ``chips = ceil(cores / tiles_per_chip)``: the chips the model needs side by side,
   or the reprogramming rounds of one chip.
4. **Replication.** In a pipeline every analog layer is a stage on its own cores and all
   digital work one stage on the digital unit; throughput = 1 / slowest stage. While spare
   cores remain on the chips in use, the slowest analog stages (all that tie) get the fewest
   extra copies of their cores that shorten them (a stage's input vectors are split between
   its copies, ``ceil(vectors / copies)`` each), if the copies of all of them fit; it stops
   when the slowest stage is the digital one, has one vector per copy, or the copies do not
   fit. Every step raises throughput; cores never exceed ``chips x tiles_per_chip``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .hardware import HardwareModel


@dataclass
class LayerWork:
    """What placement and cost need of one analog layer (from its tile plan and the forward)."""

    name: str
    """Qualified layer name."""
    groups: int
    """Independent weight blocks (conv groups), each on its own tiles."""
    in_sizes: tuple[int, ...]
    """Used columns of each input split."""
    out_sizes: tuple[int, ...]
    """Used rows of each output split."""
    vectors: int | None = None
    """Input vectors per forward (None for a static report)."""
    adc_bits: int = 8
    """ADC resolution from the layer's ``out_res``."""
    bound_management: bool = False
    """Whether bound management may re-run vectors (counted at ``bm_redo_rate``)."""


@dataclass(frozen=True)
class Piece:
    """A block of one logical tile that fits one core: ``rows x cols`` used cells."""

    group: int
    """Conv group of the logical tile."""
    out_split: int
    """Output split (tile row of the layer's grid)."""
    in_split: int
    """Input split (tile column of the layer's grid)."""
    rows: int
    """Used rows (outputs)."""
    cols: int
    """Used columns (inputs)."""
    block: int = 0
    """Index of the block when the logical tile is larger than a core."""

    @property
    def label(self) -> str:
        """``g0 o1 i2`` (``/b`` when the logical tile was cut into several blocks)."""
        return f"g{self.group} o{self.out_split} i{self.in_split}" + (
            f"/{self.block}" if self.block else "")


@dataclass
class Slot:
    """One piece on one core: its cells ``[row, row + rows) x [col, col + cols)``."""

    chip: int
    """Chip index (0 for a model that fits one chip)."""
    core: int
    """Core index on its chip."""
    layer: str
    """Name of the layer the piece belongs to."""
    replica: int
    """Which copy of the layer (0 = the first)."""
    tile: str
    """The piece's ``Piece.label``."""
    row: int
    """First crossbar row the piece occupies."""
    col: int
    """First crossbar column the piece occupies."""
    rows: int
    """Rows it occupies."""
    cols: int
    """Columns it occupies."""


@dataclass
class LayerPlacement:
    """How one analog layer sits on the cores."""

    name: str
    """Layer name."""
    pieces: int
    """Pieces (logical tiles cut to the core size) of one copy."""
    cores: int
    """Cores of one copy of the layer."""
    depth: int
    """Most pieces on one of its cores (MVMs a core runs one after the other per vector)."""
    replicas: int = 1
    """Copies of the layer (replication of a pipeline bottleneck)."""
    stage_ns: float | None = None
    """Pipeline stage time per forward with its replicas (None without vector counts)."""
    single_stage_ns: float | None = None
    """Stage time without replication."""


@dataclass
class Placement:
    """The model on the chip(s): slots, per-layer figures, throughput with and without copies."""

    tiles_per_chip: int
    """Cores per chip of the hardware model."""
    chips: int
    """Chips the model needs (or reprogramming rounds of one chip)."""
    cores_used: int
    """Cores in use, copies included (at most ``chips * tiles_per_chip``)."""
    packed: bool
    """Whether small tiles of a layer were packed into shared cores."""
    layers: list[LayerPlacement] = field(default_factory=list)
    """Per analog layer, in forward order."""
    slots: list[Slot] = field(default_factory=list)
    """Every piece on its core: the floorplan."""
    digital_stage_ns: float = 0.0
    """Time of all digital work per forward (one pipeline stage on the digital unit)."""
    bottleneck: str | None = None
    """The slowest pipeline stage after replication (a layer name or ``digital``)."""
    throughput: float | None = None
    """Pipelined inferences (forwards) per second with replication."""
    throughput_single: float | None = None
    """Pipelined inferences per second without replication."""

    def core_map(self) -> dict[tuple[int, int], list[str]]:
        """``(chip, core) -> ["layer tile (copy k)", ...]``: what every used core holds."""
        out: dict[tuple[int, int], list[str]] = {}
        for s in self.slots:
            copy = f" (copy {s.replica})" if s.replica else ""
            out.setdefault((s.chip, s.core), []).append(f"{s.layer} {s.tile}{copy}")
        return out


def pieces_of(work: LayerWork, hw: HardwareModel) -> list[Piece]:
    """Cut every logical tile of ``work`` into blocks of at most one core."""
    out = []
    for g in range(work.groups):
        for j, rows in enumerate(work.out_sizes):
            for i, cols in enumerate(work.in_sizes):
                block = 0
                for r0 in range(0, rows, hw.tile_rows):
                    for c0 in range(0, cols, hw.tile_cols):
                        out.append(Piece(g, j, i, min(hw.tile_rows, rows - r0),
                                         min(hw.tile_cols, cols - c0), block))
                        block += 1
    return out


def pack(pieces: list[Piece], rows: int, cols: int) -> list[list[tuple[Piece, int, int]]]:
    """First-fit-decreasing guillotine packing: a list of cores, each ``[(piece, row, col)]``.

    Each core keeps free rectangles; a placed piece splits its rectangle into the part to its
    right and the part below it, which are disjoint, so pieces never overlap.
    """
    cores: list[list[tuple[Piece, int, int]]] = []
    free: list[list[tuple[int, int, int, int]]] = []  # per core: (row, col, rows, cols)
    for piece in sorted(pieces, key=lambda p: (-p.rows * p.cols, -p.rows)):
        found = next(((k, r) for k, rects in enumerate(free) for r in rects
                      if r[2] >= piece.rows and r[3] >= piece.cols), None)
        if found is None:  # a new core
            cores.append([])
            free.append([(0, 0, rows, cols)])
            found = (len(cores) - 1, (0, 0, rows, cols))
        k, fit = found
        r, c, h, w = fit
        free[k].remove(fit)
        cores[k].append((piece, r, c))
        if w > piece.cols:
            free[k].append((r, c + piece.cols, piece.rows, w - piece.cols))
        if h > piece.rows:
            free[k].append((r + piece.rows, c, h - piece.rows, w))
        free[k].sort(key=lambda t: t[2] * t[3])  # best fit among the first that fit
    return cores


def stage_ns(work: LayerWork, hw: HardwareModel, depth: int, replicas: int) -> float | None:
    """Pipeline stage time of one layer per forward: its vectors (split across replicas, with
    bound-management redos) times the MVM time times the core depth."""
    if work.vectors is None:
        return None
    redo = 1.0 + (hw.bm_redo_rate if work.bound_management else 0.0)
    return math.ceil(work.vectors / replicas) * redo * hw.mvm_time_ns * depth


def place(works: list[LayerWork], hw: HardwareModel, *, pack_tiles: bool = False,
          replicate: bool = True, digital_stage_ns: float = 0.0) -> Placement:
    """Place ``works`` (analog layers in forward order) on ``hw``'s cores (see the module doc)."""
    layouts, layers = [], []
    for work in works:
        pieces = pieces_of(work, hw)
        cores = (pack(pieces, hw.tile_rows, hw.tile_cols) if pack_tiles
                 else [[(p, 0, 0)] for p in pieces])
        depth = max((len(c) for c in cores), default=0)
        single = stage_ns(work, hw, depth, 1)
        layouts.append(cores)
        layers.append(LayerPlacement(work.name, len(pieces), len(cores), depth, 1, single,
                                     single))
    needed = sum(lp.cores for lp in layers)
    chips = max(1, math.ceil(needed / hw.tiles_per_chip))
    result = Placement(tiles_per_chip=hw.tiles_per_chip, chips=chips, cores_used=needed,
                       packed=pack_tiles, layers=layers, digital_stage_ns=digital_stage_ns)
    timed = all(lp.stage_ns is not None for lp in layers)  # an all-digital model: True
    if timed:
        result.throughput_single = _throughput(layers, digital_stage_ns, single=True)
        if replicate:
            _replicate(works, layers, hw, chips * hw.tiles_per_chip - needed, digital_stage_ns)
        result.cores_used = sum(lp.cores * lp.replicas for lp in layers)
        result.throughput = _throughput(layers, digital_stage_ns, single=False)
        if result.throughput is not None:
            result.bottleneck = _bottleneck(layers, digital_stage_ns)[0]
    result.slots = _slots(works, layers, layouts, hw.tiles_per_chip)
    return result


def _bottleneck(layers: list[LayerPlacement], digital_ns: float) -> tuple[str, float]:
    worst = max(layers, key=lambda lp: lp.stage_ns or 0.0, default=None)
    if worst is None or digital_ns > (worst.stage_ns or 0.0):
        return "digital", digital_ns
    return worst.name, worst.stage_ns or 0.0


def _throughput(layers: list[LayerPlacement], digital_ns: float, single: bool) -> float | None:
    times = [(lp.single_stage_ns if single else lp.stage_ns) or 0.0 for lp in layers]
    slowest = max([*times, digital_ns])
    return 1e9 / slowest if slowest > 0 else None


def _replicate(works: list[LayerWork], layers: list[LayerPlacement], hw: HardwareModel,
               spare: int, digital_ns: float) -> None:
    by_name = {w.name: w for w in works}
    while True:
        name, slowest = _bottleneck(layers, digital_ns)
        if name == "digital" or slowest <= 0:
            return
        plan = []
        for lp in (lp for lp in layers if (lp.stage_ns or 0.0) >= slowest * (1 - 1e-12)):
            n = by_name[lp.name].vectors or 0
            per_copy = math.ceil(n / lp.replicas)
            if per_copy <= 1:
                return  # one vector per copy already: this stage cannot get shorter
            plan.append((lp, math.ceil(n / (per_copy - 1))))  # fewest copies that shorten it
        extra = sum((copies - lp.replicas) * lp.cores for lp, copies in plan)
        if extra > spare:
            return  # copying only some of the tied stages would not raise throughput
        for lp, copies in plan:
            lp.replicas = copies
            lp.stage_ns = stage_ns(by_name[lp.name], hw, lp.depth, copies)
        spare -= extra


def _slots(works: list[LayerWork], layers: list[LayerPlacement],
           layouts: list[list[list[tuple[Piece, int, int]]]], per_chip: int) -> list[Slot]:
    slots, core = [], 0
    for work, lp, cores in zip(works, layers, layouts):
        for replica in range(lp.replicas):
            for content in cores:
                chip, local = divmod(core, per_chip)
                slots += [Slot(chip, local, work.name, replica, p.label, r, c, p.rows, p.cols)
                          for p, r, c in content]
                core += 1
    return slots
