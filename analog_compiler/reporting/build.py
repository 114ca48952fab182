"""``report(model, example_inputs=None)``: build a TileReport from a model's analog layers and the
conversion log that ``convert`` attached to it.

Physical tile size (the denominator of utilization): a tile occupies one physical crossbar of
``max_output_size x max_input_size`` cells, the layer mapping's limits. A side without a limit
(``0``) has no fixed crossbar size, so that side is the layer's largest piece. Hence a layer that
is auto-tiled onto 512x512 crossbars shows the cells it really fills (e.g. 384x384 -> 56.2%), never
100% unless it fills the crossbars (aihwkit's reports measure against the split pieces and call
every such layer fully used).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch import nn

from ..chip import analog_layers
from ..conversion_log import LOG_ATTRIBUTE, ConversionLog, LayerRecord
from ..nn.base import AnalogLayerBase
from ..runtime import TilePlan
from .cost import estimate
from .counting import DIGITAL_MATRIX_TYPES, ForwardCounts, count_forward, vector_work
from .hardware import HardwareModel, as_hardware, resolution_bits
from .placement import LayerWork
from .table import LayerRow, ReportTotals, TileReport

NO_ANALOG_NOTE = ("the model has no analog layers: nothing is mapped onto tiles "
                  "(convert it first with analog_compiler.convert)")
STATIC_NOTE = "MACs, tile MVMs and ADC conversions need example_inputs (not given)"
BM_NOTE = ("tile MVMs and ADC conversions count one pass per input vector: bound management "
           "re-runs the vectors whose outputs clip, which depends on the data and is not counted")
TILE_NOTE = ("utilization = used cells / cells of the physical crossbars the layer occupies "
             "(max_output_size x max_input_size of its mapping; an unlimited side counts as the "
             "layer's largest piece)")


def physical_tile(plan: TilePlan, mapping: Any) -> tuple[int, int]:
    """(rows, columns) of the physical crossbar each tile of ``plan`` occupies."""
    rows, cols = plan.tile_shape
    return (mapping.max_output_size or rows, mapping.max_input_size or cols)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"forward.out_noise": 0.06, ...}`` (leaves only)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_diff(global_config: dict[str, Any] | None,
                layer_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fields of ``layer_config`` that differ from ``global_config`` (``{}`` without one)."""
    if global_config is None:
        return {}
    ref, mine = flatten(global_config), flatten(layer_config)
    return {key: {"global": ref.get(key), "layer": mine.get(key)}
            for key in sorted(set(ref) | set(mine)) if ref.get(key) != mine.get(key)}


def read_log(model: nn.Module) -> ConversionLog | None:
    """The model's ConversionLog (also accepted in its ``to_dict`` form), or None."""
    log = getattr(model, LOG_ATTRIBUTE, None)
    if log is None or isinstance(log, ConversionLog):
        return log
    if isinstance(log, dict):
        records = [r if isinstance(r, LayerRecord) else LayerRecord(**r)
                   for r in log.get("records", [])]
        return ConversionLog(rpu_config=log.get("rpu_config") or {},
                             capture=log.get("capture", "fx"), records=records,
                             fallbacks=dict(log.get("fallbacks", {})))
    raise TypeError(f"model.{LOG_ATTRIBUTE} must be a ConversionLog, got {type(log).__name__}")


def first_sentence(text: str, limit: int = 120) -> str:
    """The first sentence of an error message, at most ``limit`` characters."""
    text = " ".join(text.split())
    head = text.split(". ")[0].rstrip(".")
    return head if len(head) <= limit else head[: limit - 3] + "..."


def fallback_notes(fallbacks: dict[str, str], shown: int = 4) -> list[str]:
    """One note per distinct trace error: which submodules were converted by module swap."""
    groups: dict[str, list[str]] = {}
    for name, error in fallbacks.items():
        groups.setdefault(first_sentence(error), []).append(name or "(model)")
    notes = []
    for error, names in groups.items():
        listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                             if len(names) > shown else "")
        notes.append(f"converted by module swap, not traced ({len(names)} submodule(s): "
                     f"{listed}): {error}")
    return notes


def _most_common_config(layers: dict[str, AnalogLayerBase]) -> dict[str, Any] | None:
    configs = [layer.rpu_config.to_json(sort_keys=True) for layer in layers.values()]
    if not configs:
        return None
    text = Counter(configs).most_common(1)[0][0]
    return next(layer.rpu_config.to_dict() for layer in layers.values()
                if layer.rpu_config.to_json(sort_keys=True) == text)


def _analog_row(name: str, layer: AnalogLayerBase, record: LayerRecord | None,
                global_config: dict[str, Any] | None) -> LayerRow:
    plan = layer.analog_module.plan
    kind = type(layer).__name__
    if record is not None and record.source_type and kind != f"Analog{record.source_type}":
        kind = f"{kind} <- {record.source_type}"
    rows, cols = physical_tile(plan, layer.rpu_config.mapping)
    used = plan.groups * plan.in_features * plan.out_features
    return LayerRow(name=name, layer_type=kind, status="analog",
                    weight_shape=tuple(layer._weight_shape()), groups=plan.groups,
                    in_sizes=tuple(plan.in_sizes), out_sizes=tuple(plan.out_sizes),
                    tile_shape=(rows, cols), tile_count=plan.tile_count, used_cells=used,
                    utilization=used / (plan.tile_count * rows * cols),
                    config_diff=config_diff(global_config, layer.rpu_config.to_dict()))


def _digital_row(model: nn.Module, name: str, source_type: str, reason: str) -> LayerRow:
    module = _module_or_none(model, name)
    weight = getattr(module, "weight", None) if module is not None else None
    if module is None:  # a raw parameter used in a product that stayed digital
        try:
            weight = model.get_parameter(name)
        except AttributeError:
            weight = None
    shape = tuple(weight.shape) if weight is not None and hasattr(weight, "shape") else None
    return LayerRow(name=name, layer_type=source_type, status="digital", weight_shape=shape,
                    reason=reason)


def _digital_modules(model: nn.Module, analog: dict[str, AnalogLayerBase]) -> dict[str, nn.Module]:
    """Digital ``nn.Linear``/``nn.Conv*`` modules outside every analog layer."""
    out = {}
    for name, module in model.named_modules():
        inside = any(name == a or name.startswith(a + ".") for a in analog if a)
        if isinstance(module, DIGITAL_MATRIX_TYPES) and not inside:
            out[name] = module
    return out


def _build_rows(model: nn.Module, log: ConversionLog | None, analog: dict[str, AnalogLayerBase],
                global_config: dict[str, Any] | None, notes: list[str]) -> list[LayerRow]:
    records = log.records if log is not None else []
    by_name = {r.name: r for r in records if r.status == "analog"}
    rows: list[LayerRow] = []
    seen: set[str] = set()
    for rec in records:
        if rec.status == "analog":
            if rec.name in analog:
                rows.append(_analog_row(rec.name, analog[rec.name], rec, global_config))
                seen.add(rec.name)
            else:
                notes.append(f"the conversion log lists {rec.name!r} as analog, but the model has "
                             "no analog layer of that name")
        elif rec.name not in seen:
            rows.append(_digital_row(model, rec.name, rec.source_type, rec.reason or "digital"))
            seen.add(rec.name)
    for name, layer in analog.items():
        if name not in seen:
            rows.append(_analog_row(name, layer, by_name.get(name), global_config))
            seen.add(name)
    reason = ("not mapped (missing from the conversion log)" if log is not None
              else "not mapped (the model has no conversion log)")
    for name, module in _digital_modules(model, analog).items():
        if name not in seen:
            rows.append(_digital_row(model, name, type(module).__name__, reason))
            seen.add(name)
    return rows


def _apply_counts(rows: list[LayerRow], analog: dict[str, AnalogLayerBase],
                  counts: ForwardCounts) -> None:
    for row in rows:
        if row.status == "analog":
            work = vector_work(analog[row.name].analog_module.plan)
            n = counts.vectors.get(row.name, 0)
            row.vectors, row.macs = n, n * work.macs
            row.tile_mvms, row.adc_conversions = n * work.tile_mvms, n * work.adc_conversions
        elif row.name in counts.digital_module_macs:
            row.macs = counts.digital_module_macs[row.name]


def _totals(rows: list[LayerRow], counts: ForwardCounts | None) -> ReportTotals:
    mapped = [r for r in rows if r.status == "analog"]
    t = ReportTotals(analog_layers=len(mapped), digital_layers=len(rows) - len(mapped))
    t.tiles = sum(r.tile_count for r in mapped)
    t.used_cells = sum(r.used_cells for r in mapped)
    t.physical_cells = sum(r.tile_count * r.tile_shape[0] * r.tile_shape[1] for r in mapped
                           if r.tile_shape)
    t.utilization = t.used_cells / t.physical_cells if t.physical_cells else None
    if counts is not None:
        t.analog_macs = sum(r.macs or 0 for r in mapped)
        t.digital_macs = counts.digital_macs
        total = t.analog_macs + t.digital_macs
        t.analog_share = t.analog_macs / total if total else None
        t.tile_mvms = sum(r.tile_mvms or 0 for r in mapped)
        t.adc_conversions = sum(r.adc_conversions or 0 for r in mapped)
    return t


def recurrent_notes(rows: list[LayerRow], recurrent: dict[str, nn.Module],
                    counts: ForwardCounts | None) -> list[str]:
    """One note per recurrent layer: its analog work per time step of one sequence (static:
    every matrix reads one vector per step and direction) and, with ``counts``, per sequence
    (the forward's work over its sequences; the mean for sequences of different lengths)."""
    notes = []
    fmt = "{:,.0f} MACs, {:,.0f} tile MVMs, {:,.0f} ADC conversions".format
    for name, module in recurrent.items():
        prefix = f"{name}." if name else ""
        mine = [r for r in rows if r.status == "analog" and r.name.startswith(prefix)]
        if not mine:
            continue
        per_step = [sum(r.used_cells for r in mine), sum(r.tile_count for r in mine),
                    sum(r.groups * r.in_splits * sum(r.out_sizes) for r in mine)]
        head = f"{name or '(model)'} ({type(module).__name__}, " \
               f"{sum(r.tile_count for r in mine)} tiles): "
        seq_steps, seqs = counts.sequences.get(name, (0, 0)) if counts is not None else (0, 0)
        if not seq_steps:
            notes.append(f"{head}per time step {fmt(*per_step)}")
            continue
        work = [sum(r.macs or 0 for r in mine), sum(r.tile_mvms or 0 for r in mine),
                sum(r.adc_conversions or 0 for r in mine)]
        notes.append(f"{head}{seqs} sequence(s) of {seq_steps / seqs:g} time steps; per "
                     f"sequence {fmt(*(w / seqs for w in work))}; per time step "
                     f"{fmt(*per_step)}")
    return notes


def layer_work(row: LayerRow, layer: AnalogLayerBase, hw: HardwareModel) -> LayerWork:
    """What the cost model needs of one analog row: tile sizes, vectors, ADC bits (from the
    layer's ``out_res``) and whether bound management may re-run vectors."""
    io = layer.rpu_config.forward
    bits = hw.adc_bits if io.is_perfect else resolution_bits(io.out_res, hw.adc_bits)
    return LayerWork(name=row.name, groups=row.groups, in_sizes=row.in_sizes,
                     out_sizes=row.out_sizes, vectors=row.vectors, adc_bits=bits,
                     bound_management=io.max_bm_rounds > 0 and not io.is_perfect)


def report(model: nn.Module, example_inputs: Any = None,
           hardware: HardwareModel | str | None = None, *, pack: bool = False,
           replicate: bool = True) -> TileReport:
    """Per-layer tile mapping of ``model``: one row per analog layer (tile grid, physical tile,
    utilization, config changes) and per matrix layer that stayed digital (with its reason).

    With ``example_inputs`` (a tensor, a tuple/list of positional inputs or a dict of keyword
    inputs: the rule of ``analog_compiler.inputs``) the model runs once (eval mode, no grad,
    RNG state restored) to count the input vectors of every layer, hence MACs, tile MVMs and
    ADC conversions per forward, and the digital MACs of everything else, for the analog share
    of all MACs.

    With ``hardware`` (a ``HardwareModel``, a preset name ``"hermes"``/``"speech"`` or a JSON
    path) the report's ``cost`` holds the placement on the chip's cores (``pack``: let small
    tiles of a layer share a core; ``replicate``: copy the pipeline's bottleneck layers onto
    spare cores), chips needed, core area and, with ``example_inputs``, the energy per layer
    (DAC, array, ADC, digital periphery), latency, throughput, TOPS/W and the analog share of
    the energy (formulas: ``analog_compiler.reporting.cost``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"report expects an nn.Module, got {type(model).__name__}")
    log = read_log(model)
    analog = dict(analog_layers(model))
    global_config = log.rpu_config if log is not None and log.rpu_config else \
        _most_common_config(analog)
    notes: list[str] = []
    configs = {layer.rpu_config.to_json(sort_keys=True) for layer in analog.values()}
    if log is None and len(configs) > 1:
        notes.append("no conversion log on the model: config differences are taken against the "
                     "most common layer config")
    rows = _build_rows(model, log, analog, global_config, notes)
    if log is not None:
        notes += fallback_notes(log.fallbacks)
    counts = None
    recurrent = {n: m for n, m in model.named_modules() if hasattr(m, "sequence_shape")}
    if example_inputs is not None:
        digital = {r.name: m for r in rows if r.status != "analog"
                   for m in [_module_or_none(model, r.name)]
                   if isinstance(m, DIGITAL_MATRIX_TYPES)}
        counts = count_forward(model, analog, digital, example_inputs, recurrent)
        _apply_counts(rows, analog, counts)
        ios = [layer.rpu_config.forward for layer in analog.values()]
        if any(io.max_bm_rounds > 0 and not io.is_perfect for io in ios):
            notes.append(BM_NOTE)
    elif analog:
        notes.append(STATIC_NOTE)
    notes += recurrent_notes(rows, recurrent, counts)
    if analog:
        notes.append(TILE_NOTE)
    else:
        notes.insert(0, NO_ANALOG_NOTE)
    totals = _totals(rows, counts)
    cost = None
    if hardware is not None:
        hw = as_hardware(hardware)
        works = [layer_work(r, analog[r.name], hw) for r in rows if r.status == "analog"]
        cost = estimate(works, {r.name: r.macs for r in rows if r.status != "analog"},
                        counts.digital_macs if counts is not None else None, totals.analog_macs,
                        hw, pack_tiles=pack, replicate=replicate)
    return TileReport(rows=rows, totals=totals, global_config=global_config,
                      capture=log.capture if log is not None else None,
                      input_shape=counts.batch_shape if counts is not None else None, notes=notes,
                      fallbacks=dict(log.fallbacks) if log is not None else {}, cost=cost)


def _module_or_none(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule called ``name`` (the model itself for ``""``), or None."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
