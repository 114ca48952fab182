"""``analog-compiler sweep MODULE:FACTORY --eval MODULE:FUNC``: a metric over programmed chips
and drift times (``analog_compiler.sweep``), printed as a table.

``FACTORY`` returns the model (digital: converted with each ``--config``, or the default
``InferenceRPUConfig``; analog: swept as it is); ``FUNC(model) -> float | dict[str, float]`` is
the metric. Under ``torchrun`` (``WORLD_SIZE`` set) the command joins the process group (gloo on
CPU, NCCL when CUDA is available), the chips are split across the ranks and rank 0 prints and
writes the gathered result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import CLIError
from .common import load_config, load_model, load_module, run_user_code, write_outputs

#: Time suffixes -> seconds (a month is 30 days, a year 365 days).
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
         "mo": 30 * 86400.0, "y": 365 * 86400.0}


def parse_times(text: str) -> list[float]:
    """``"0,1h,1d,1y"`` -> seconds; a bare number is seconds."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        number, unit = part, "s"
        for suffix in sorted(UNITS, key=len, reverse=True):
            if part.endswith(suffix) and part[:-len(suffix)].strip():
                number, unit = part[:-len(suffix)], suffix
                break
        try:
            out.append(float(number) * UNITS[unit])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid time {part!r} in {text!r}: expected seconds or a number with a unit "
                f"({', '.join(UNITS)}), e.g. 0,1h,1d,1y") from None
    return out


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep", help="a metric over programmed chips and drift times",
        description="Program N chips, drift each to every time, print the metric's mean, std, "
                    "min and max per time (and config). Runs under torchrun too.")
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="importable module or .py path, and a callable in it returning a model")
    p.add_argument("--eval", required=True, metavar="MODULE:FUNC", dest="evaluate",
                   help="the metric: FUNC(model) returns a number or a dict of numbers")
    p.add_argument("--times", required=True, type=parse_times, metavar="T,...",
                   help="drift times, ascending: seconds or with a unit (s, min, h, d, w, mo, "
                        "y), e.g. 0,1h,1d,1y")
    p.add_argument("--chips", type=int, default=1, help="programmed chips (1)")
    p.add_argument("--seed", type=int, default=0, help="seed the chips' seeds derive from (0)")
    p.add_argument("--config", metavar="CFG.json", type=Path, action="append",
                   help="RPU config as JSON for a digital model; repeat it to compare configs")
    p.add_argument("--json", metavar="OUT.json", type=Path, help="also write the result as JSON")
    p.add_argument("--plot", metavar="OUT.png", type=Path, help="also write the metric plot")
    p.add_argument("--markdown", action="store_true", help="print Markdown instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def load_function(spec: str) -> Callable[..., Any]:
    """The callable ``FUNC`` of ``MODULE:FUNC``."""
    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name:
        raise CLIError(f"--eval: expected MODULE:FUNC, got {spec!r}")
    fn = getattr(load_module(module_name), name, None)
    if fn is None:
        raise CLIError(f"--eval: {module_name} has no attribute {name!r}")
    if not callable(fn):
        raise CLIError(f"--eval: {module_name}:{name} is not callable")
    return fn


def _join_process_group() -> bool:
    """Join the torchrun process group if this process was started by torchrun (and nothing
    joined it yet); returns whether this call created it."""
    import torch
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def run(args: argparse.Namespace) -> int:
    """The ``sweep`` subcommand."""
    import torch.distributed as dist

    import analog_compiler as ac

    evaluate_fn = load_function(args.evaluate)
    model = load_model(args.target).eval()
    configs = None
    if any(True for _ in ac.analog_layers(model)):
        if args.config:
            print("analog-compiler sweep: note: the model is analog already; --config is "
                  "ignored", file=sys.stderr)
    else:
        paths = args.config or []
        configs = {p.stem: load_config(p) for p in paths} or \
            {"InferenceRPUConfig": ac.InferenceRPUConfig()}
        if len(configs) < len(paths):
            raise CLIError("--config: two config files have the same name "
                           f"({', '.join(p.name for p in paths)})")

    def evaluate(m: Any) -> Any:
        return run_user_code(lambda: evaluate_fn(m), args.evaluate)

    created = _join_process_group()
    try:
        result = ac.sweep(model, evaluate, args.times, chips=args.chips, configs=configs,
                          seed=args.seed, progress=False if args.no_progress else None)
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return 0
    finally:
        if created:
            dist.destroy_process_group()
    print(result.to_markdown() if args.markdown else str(result))
    write_outputs(args, result)
    return 0
