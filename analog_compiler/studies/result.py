"""``SweepResult``: the metric of a chip sweep per config, metric and drift time, with its
statistics over the chips and the raw values, as text, Markdown, JSON and a plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Units used by ``time_label``, largest first (a month is 30 days, a year 365 days).
_UNITS = (("year", 365 * 86400.0), ("month", 30 * 86400.0), ("week", 7 * 86400.0),
          ("day", 86400.0), ("hour", 3600.0), ("minute", 60.0))


def time_label(t: float) -> str:
    """A readable label of ``t`` seconds: ``0``, ``1 hour``, ``2 days``, ``1 year``, or
    ``"90 s"`` when ``t`` is no whole number of a unit."""
    if t == 0:
        return "0"
    for unit, seconds in _UNITS:
        count = t / seconds
        if count >= 1 and count == round(count):
            return f"{round(count)} {unit}{'s' if round(count) != 1 else ''}"
    return f"{t:g} s"


@dataclass(frozen=True)
class SweepStats:
    """The values of one (config, metric, time) cell over the chips.

    Attributes:
        config: label of the config.
        metric: name of the metric (``"value"`` when ``evaluate`` returns a number).
        time: seconds after programming.
        raw: the metric of every chip, in chip order (chip 0 first).
    """

    config: str
    metric: str
    time: float
    raw: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over the chips."""
        return statistics.fmean(self.raw)

    @property
    def std(self) -> float:
        """Sample standard deviation over the chips (0 for one chip)."""
        return statistics.stdev(self.raw) if len(self.raw) > 1 else 0.0

    @property
    def min(self) -> float:
        """Smallest value over the chips."""
        return min(self.raw)

    @property
    def max(self) -> float:
        """Largest value over the chips."""
        return max(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the statistics and the raw values."""
        return {"config": self.config, "metric": self.metric, "time": self.time,
                "mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
                "raw": list(self.raw)}


@dataclass
class SweepResult:
    """What ``analog_compiler.sweep`` measured.

    Attributes:
        times: drift times in seconds (ascending).
        configs: config labels, in the order they were swept.
        metrics: metric names (``["value"]`` when ``evaluate`` returns a number).
        chips: number of programmed chips.
        seed: the sweep's seed (chip ``i`` is programmed from ``(seed, i)`` alone).
        values: ``values[config][metric][time index][chip]``.
        world_size: number of processes that shared the chips.
    """

    times: list[float]
    configs: list[str]
    metrics: list[str]
    chips: int
    seed: int
    values: dict[str, dict[str, list[list[float]]]] = field(repr=False)
    world_size: int = 1

    # ------------------------------------------------------------ access
    def _pick(self, name: str | None, options: list[str], what: str) -> str:
        if name is None:
            if len(options) != 1:
                raise ValueError(f"SweepResult: give {what}= (one of {options})")
            return options[0]
        if name not in options:
            raise KeyError(f"SweepResult: no {what} {name!r} (have {options})")
        return name

    def get(self, time: float, config: str | None = None, metric: str | None = None
            ) -> SweepStats:
        """Statistics of one cell; ``config`` and ``metric`` may be left out when there is
        only one."""
        config = self._pick(config, self.configs, "config")
        metric = self._pick(metric, self.metrics, "metric")
        if time not in self.times:
            raise KeyError(f"SweepResult: no time {time!r} (have {self.times})")
        raw = self.values[config][metric][self.times.index(time)]
        return SweepStats(config, metric, float(time), tuple(raw))

    def rows(self) -> Iterator[SweepStats]:
        """Every cell: configs outermost, then metrics, then times."""
        for config in self.configs:
            for metric in self.metrics:
                for t in self.times:
                    yield self.get(t, config, metric)

    # ------------------------------------------------------------ formats
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: the sweep's settings and one entry per cell."""
        return {"chips": self.chips, "seed": self.seed, "world_size": self.world_size,
                "times": list(self.times), "configs": list(self.configs),
                "metrics": list(self.metrics), "cells": [r.to_dict() for r in self.rows()]}

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        """Rebuild a result from ``to_dict()`` output."""
        times = [float(t) for t in data["times"]]
        values: dict[str, dict[str, list[list[float]]]] = {
            c: {m: [[] for _ in times] for m in data["metrics"]} for c in data["configs"]}
        for cell in data["cells"]:
            values[cell["config"]][cell["metric"]][times.index(float(cell["time"]))] = \
                [float(v) for v in cell["raw"]]
        return cls(times, list(data["configs"]), list(data["metrics"]), int(data["chips"]),
                   int(data["seed"]), values, int(data.get("world_size", 1)))

    @classmethod
    def from_json(cls, text: str) -> SweepResult:
        """Rebuild a result from ``to_json()`` output."""
        return cls.from_dict(json.loads(text))

    def _columns(self) -> list[tuple[str, str, str]]:
        """``(header, config, metric)`` of every table column."""
        cols = []
        for config in self.configs:
            for metric in self.metrics:
                parts = [p for p, n in ((config, len(self.configs)),
                                        (metric, len(self.metrics))) if n > 1]
                cols.append((" / ".join(parts) or metric, config, metric))
        return cols

    def to_text(self, scale: float = 1.0, digits: int = 4, suffix: str = "",
                ranges: bool = True) -> str:
        """An aligned table: one row per time, one column per config (and metric), each cell
        ``mean +- std`` (and ``[min, max]`` with ``ranges``), values multiplied by ``scale``
        and printed with ``digits`` decimals and ``suffix`` (``scale=100, suffix=" %"`` for
        percentages)."""
        def cell(s: SweepStats) -> str:
            text = f"{scale * s.mean:.{digits}f} +- {scale * s.std:.{digits}f}"
            if ranges:
                text += f" [{scale * s.min:.{digits}f}, {scale * s.max:.{digits}f}]"
            return text + suffix

        cols = self._columns()
        body = [[time_label(t)] + [cell(self.get(t, c, m)) for _, c, m in cols]
                for t in self.times]
        heads = ["time"] + [h for h, _, _ in cols]
        widths = [max(len(r[i]) for r in body + [heads]) for i in range(len(heads))]
        line = " | ".join(f"{h:>{w}}" for h, w in zip(heads, widths))
        rule = "-+-".join("-" * w for w in widths)
        rows = [" | ".join(f"{v:>{w}}" for v, w in zip(r, widths)) for r in body]
        return "\n".join(f"  {x}" for x in [line, rule, *rows])

    def to_markdown(self) -> str:
        """A Markdown table, one row per (time, config, metric) with mean, std, min, max."""
        lines = [f"Sweep over {self.chips} chip(s), seed {self.seed}", "",
                 "| time | config | metric | mean | std | min | max |",
                 "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for t in self.times:
            for config in self.configs:
                for metric in self.metrics:
                    s = self.get(t, config, metric)
                    lines.append(f"| {time_label(t)} | {config} | {metric} | {s.mean:.4g} | "
                                 f"{s.std:.4g} | {s.min:.4g} | {s.max:.4g} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = (f"SweepResult: {self.chips} chip(s), seed {self.seed}, "
                f"{len(self.times)} time(s)")
        if len(self.metrics) == 1 and self.metrics[0] != "value":
            head += f", metric {self.metrics[0]!r}"
        if self.world_size > 1:
            head += f", {self.world_size} processes"
        return f"{head}\n{self.to_text()}"

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a PNG: each metric against time after programming (log axis; ``t = 0`` is
        drawn one decade left of the first positive time), one line per config with the mean
        and a band of +- one standard deviation over the chips. Returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        positive = [t for t in self.times if t > 0]
        zero_at = min(positive) / 10 if positive else 1.0
        xs = [t if t > 0 else zero_at for t in self.times]
        fig, axes = plt.subplots(len(self.metrics), 1, squeeze=False,
                                 figsize=(6.4, 3.6 * len(self.metrics)))
        for ax, metric in zip(axes[:, 0], self.metrics):
            for config in self.configs:
                stats = [self.get(t, config, metric) for t in self.times]
                means = [s.mean for s in stats]
                lo = [s.mean - s.std for s in stats]
                hi = [s.mean + s.std for s in stats]
                label = config if len(self.configs) > 1 else None
                (line,) = ax.plot(xs, means, "o-", label=label)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(xs, [time_label(t) for t in self.times])
            ax.set_xlabel("time after programming")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            if len(self.configs) > 1:
                ax.legend()
        axes[0, 0].set_title(title or f"{self.chips} chip(s): mean +- std")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

