"""``sweep``: a metric over many programmed chips, drift times and configs, on one process or
split across the ranks of ``torch.distributed``.

Chip ``i`` is programmed with torch's generator seeded from ``(seed, i)`` alone, and before the
drift to the ``k``-th time (and the metric that follows it) the generator is re-seeded from
``(seed, i, k)``; so a chip's values depend on neither the config order, the other chips, nor
the rank that measured them, and the same seeds give the same table whatever the world size.
The caller's model and torch's global random state are left as they were.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..chip import analog_layers
from ..progress import ProgressBar
from ..runtime import ModuleError
from ..runtime.config.rpu_config import RPU_CONFIG_TYPES
from .result import SweepResult, time_label

#: Metric name used when ``evaluate`` returns a single number.
VALUE = "value"
#: Config label used when ``configs`` is ``None`` (the model's own analog layers).
MODEL = "model"

Metrics = dict[str, float]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on ``parts`` alone (stable across processes and runs)."""
    digest = hashlib.blake2b("/".join(str(int(p)) for p in parts).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


# ---------------------------------------------------------------------- input checks
def _check_times(times: Iterable[Any]) -> list[float]:
    try:
        values = list(times)
    except TypeError:
        raise TypeError(f"sweep: times must be a sequence of seconds, got "
                        f"{type(times).__name__}") from None
    if not values:
        raise ValueError("sweep: times is empty; give at least one drift time in seconds")
    for t in values:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
            raise ValueError(f"sweep: times must be finite numbers of seconds, got {t!r}")
        if t < 0:
            raise ValueError(f"sweep: times must be >= 0 seconds, got {t!r}")
    out = [float(t) for t in values]
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"sweep: times must be sorted ascending without repeats, got {values}")
    return out


def _check_int(value: Any, name: str, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"sweep: {name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"sweep: {name} must be >= {minimum}, got {value}")
    return int(value)


def _check_configs(configs: Any) -> dict[str, Any] | None:
    if configs is None:
        return None
    if isinstance(configs, Mapping):
        items = list(configs.items())
    elif isinstance(configs, Sequence) and not isinstance(configs, str):
        items = [(f"config {j}", c) for j, c in enumerate(configs)]
    else:
        raise TypeError("sweep: configs must be None, a dict {label: rpu_config} or a list of "
                        f"rpu configs, got {type(configs).__name__}")
    if not items:
        raise ValueError("sweep: configs is empty")
    for label, cfg in items:
        if not isinstance(label, str):
            raise TypeError(f"sweep: config labels must be strings, got {label!r}")
        if not isinstance(cfg, RPU_CONFIG_TYPES):
            raise TypeError(f"sweep: configs[{label!r}] must be an InferenceRPUConfig or "
                            f"FloatingPointRPUConfig, got {type(cfg).__name__}")
    return dict(items)


def as_metrics(value: Any, where: str) -> Metrics:
    """``evaluate``'s return value as ``{name: float}``: a real number (or a one-element
    tensor) becomes ``{"value": x}``; a non-empty dict of those keeps its names."""
    def number(v: Any, what: str) -> float:
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.dtype.is_complex \
                and v.dtype != torch.bool:
            return float(v.item())
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"sweep: evaluate must return a number or a dict of numbers; "
                            f"{what} is {type(v).__name__} ({where})")
        return float(v)

    if isinstance(value, Mapping):
        if not value:
            raise TypeError(f"sweep: evaluate returned an empty dict ({where})")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"sweep: evaluate's dict keys must be strings, got {k!r} "
                                f"({where})")
            out[k] = number(v, f"its value for {k!r}")
        return out
    return {VALUE: number(value, "its return value")}


# ---------------------------------------------------------------------- one process's share
def _analog_model(model: nn.Module, config: Any, label: str) -> nn.Module:
    """The working copy: the analog model itself, or ``model`` converted with ``config``."""
    if config is None:
        work = copy.deepcopy(model)
    else:
        from ..compiler import convert

        work = convert(model, config)
        if not any(True for _ in analog_layers(work)):
            raise ModuleError(f"sweep: converting the model with config {label!r} mapped no "
                              "layer onto analog tiles")
    return work.eval()


def _model_devices(model: nn.Module) -> list[int]:
    return sorted({t.device.index or 0 for t in [*model.parameters(), *model.buffers()]
                   if t.device.type == "cuda"})


def _run_share(model: nn.Module, evaluate: Callable[[nn.Module], Any], times: list[float],
               my_chips: list[int], configs: dict[str, Any] | None, seed: int,
               bar: ProgressBar) -> dict[str, dict[int, list[Metrics]]]:
    """``{config label: {chip: [metrics per time]}}`` for this process's chips."""
    out: dict[str, dict[int, list[Metrics]]] = {}
    plan = configs if configs is not None else {MODEL: None}
    names: list[str] | None = None
    for label, config in plan.items():
        out[label] = {}
        if not my_chips:  # more ranks than chips: nothing to measure here
            continue
        work = _analog_model(model, config, label)
        devices = _model_devices(work)
        for chip in my_chips:
            values = []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(derive_seed(seed, chip))
                for _, layer in analog_layers(work):  # program in place, layer by layer
                    layer.program_analog_weights()
                for k, t in enumerate(times):
                    torch.manual_seed(derive_seed(seed, chip, k))
                    for _, layer in analog_layers(work):
                        layer.drift_analog_weights(t)
                    where = f"config {label!r}, chip {chip}, t = {time_label(t)}"
                    with torch.no_grad():
                        metrics = as_metrics(evaluate(work), where)
                    if names is None:
                        names = list(metrics)
                    elif list(metrics) != names:
                        raise ValueError(f"sweep: evaluate returned the metrics "
                                         f"{list(metrics)} at {where}, but {names} before")
                    values.append(metrics)
                    bar.update()
            out[label][chip] = values
        del work
    return out


def _gather(local: Any) -> tuple[list[Any], int]:
    """Every rank's ``local`` (all ranks get all), and the world size."""
    if not (dist.is_available() and dist.is_initialized()):
        return [local], 1
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return gathered, len(gathered)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------- the verb
def sweep(model: nn.Module, evaluate: Callable[[nn.Module], Any], times: Iterable[float],
          chips: int = 1, configs: Mapping[str, Any] | Sequence[Any] | None = None,
          seed: int = 0, *, progress: bool | None = None) -> SweepResult:
    """Measure ``evaluate`` over ``chips`` programmed chips at every drift time (and config).

    For every config, chip ``i`` (``0 <= i < chips``) is programmed from a seed derived from
    ``(seed, i)`` alone (the same chip sample under every config), drifted to each time of
    ``times`` and handed to ``evaluate`` (in eval mode, under ``torch.no_grad()``). When
    ``torch.distributed`` is initialised, rank ``r`` of ``W`` measures chips ``r, r + W, ...``
    and every rank returns the whole gathered result, identical to a one-process run (the
    gather is ``all_gather_object``: with NCCL, set each rank's CUDA device first).

    Args:
        model: with ``configs=None``, a model with analog layers (``convert``'s output); it is
            deep-copied once and the copy is programmed in place, layer by layer. With
            ``configs``, a digital model, converted once per config (one copy at a time).
            The caller's model is never changed.
        evaluate: ``evaluate(model) -> float | dict[str, float]``, the user's metric (a
            one-element tensor counts as a number); a dict's keys are the metric names.
        times: drift times in seconds after programming, ascending, >= 0.
        chips: number of chip samples (>= 1).
        configs: ``None``, a dict ``{label: rpu_config}`` or a list of rpu configs (labelled
            ``"config 0"``, ...).
        seed: the seed every chip's seed is derived from.
        progress: progress bar on stderr (rank 0 only): ``True`` always, ``False`` never,
            ``None`` when the run takes longer than two seconds.

    Returns:
        A ``SweepResult`` (mean, std, min, max and raw values per config, metric and time).

    Raises:
        ValueError / TypeError: bad ``times``, ``chips``, ``seed``, ``configs`` or an
            ``evaluate`` that returns something other than a number or a dict of numbers.
        ModuleError: a model without analog layers (``configs=None``), or a model that is
            analog already given with ``configs``.
        RuntimeError: on every rank, when any rank failed (naming the rank and the error).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"sweep: model must be an nn.Module, got {type(model).__name__}")
    if not callable(evaluate):
        raise TypeError(f"sweep: evaluate must be callable, got {type(evaluate).__name__}")
    times_ = _check_times(times)
    chips = _check_int(chips, "chips", 1)
    seed = _check_int(seed, "seed", None)
    configs_ = _check_configs(configs)
    has_analog = any(True for _ in analog_layers(model))
    if configs_ is None and not has_analog:
        raise ModuleError(f"sweep: the model ({type(model).__name__}) has no analog layers; "
                          "convert it first (ac.convert) or pass configs= to convert it")
    if configs_ is not None and has_analog:
        raise ModuleError("sweep: configs= converts a digital model, but this model has analog "
                          "layers already; pass the digital model, or configs=None")

    rank, world = _rank_and_world()
    my_chips = list(range(rank, chips, world))
    steps = len(configs_ or [MODEL]) * len(my_chips) * len(times_)
    bar = ProgressBar(steps, f"sweep ({world} processes)" if world > 1 else "sweep",
                      enabled=progress if rank == 0 else False)
    try:
        local: Any = ("ok", _run_share(model, evaluate, times_, my_chips, configs_, seed, bar))
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        if world == 1:
            raise
        local = ("error", f"{type(exc).__name__}: {exc}")
    finally:
        bar.close()
    shares, world = _gather(local)
    failed = [(r, s[1]) for r, s in enumerate(shares) if s[0] == "error"]
    if failed:
        raise RuntimeError("sweep failed on " + "; ".join(f"rank {r}: {m}" for r, m in failed))
    return _assemble([s[1] for s in shares], times_, list(configs_ or [MODEL]), chips, seed,
                     world)


def _assemble(shares: list[dict[str, dict[int, list[Metrics]]]], times: list[float],
              labels: list[str], chips: int, seed: int, world: int) -> SweepResult:
    """One ``SweepResult`` from every rank's share."""
    per_chip: dict[str, dict[int, list[Metrics]]] = {label: {} for label in labels}
    for share in shares:
        for label, chips_ in share.items():
            per_chip[label].update(chips_)
    first = per_chip[labels[0]][0][0]
    names = list(first)
    values: dict[str, dict[str, list[list[float]]]] = {}
    for label in labels:
        values[label] = {name: [[] for _ in times] for name in names}
        for chip in range(chips):
            for k, metrics in enumerate(per_chip[label][chip]):
                if list(metrics) != names:
                    raise ValueError(f"sweep: evaluate returned the metrics {list(metrics)} "
                                     f"for chip {chip}, but {names} for chip 0")
                for name in names:
                    values[label][name][k].append(metrics[name])
    return SweepResult(times, labels, names, chips, seed, values, world)
