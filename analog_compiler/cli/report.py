"""``analog-compiler report MODULE:FACTORY``: print the tile report of a model.

``MODULE`` is an importable module (``torchvision.models``) or a path to a ``.py`` file;
``FACTORY`` a callable in it that takes no arguments and returns an ``nn.Module``. A digital model
is converted first (``analog_compiler.convert`` with ``--config`` or the default
``InferenceRPUConfig``); a model that already has analog layers is reported as it is.
``--hardware hermes|speech|HW.json`` adds the cost on that chip (energy, latency, area,
placement on its cores; ``--pack``, ``--no-replicate``) and ``--floorplan OUT.png`` draws it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import CLIError
from .common import (
    DTYPES,
    example_inputs,
    load_analog_model,
    parse_shape,
    run_user_code,
    write_outputs,
)


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report", help="per-layer tile mapping report of a model",
        description="Convert a model (unless it is analog already) and print its tile report.")
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="importable module or .py path, and a callable in it returning a model")
    p.add_argument("--input-shape", metavar="N,C,...", type=parse_shape, action="append",
                   help="shape of a random example input (enables MAC/MVM/ADC counts); repeat "
                        "it for a model with several positional inputs")
    p.add_argument("--input-dtype", choices=sorted(DTYPES), default="float32",
                   help="dtype of the example input (int64: random token ids in [0, 100))")
    p.add_argument("--config", metavar="CFG.json", type=Path,
                   help="RPU config as JSON (InferenceRPUConfig.to_json / to_dict format)")
    p.add_argument("--json", metavar="OUT.json", type=Path, help="also write the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", type=Path, help="also write the tile grid PNG")
    p.add_argument("--markdown", action="store_true", help="print Markdown instead of text")
    p.add_argument("--hardware", metavar="hermes|speech|HW.json",
                   help="estimate energy, latency, area and placement on a HardwareModel: a "
                        "preset name or a HardwareModel.to_json file")
    p.add_argument("--pack", action="store_true",
                   help="with --hardware: let small tiles of a layer share one core")
    p.add_argument("--no-replicate", action="store_true",
                   help="with --hardware: do not copy bottleneck layers onto spare cores")
    p.add_argument("--floorplan", metavar="OUT.png", type=Path,
                   help="with --hardware: also write the chip floorplan PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``report`` subcommand."""
    import analog_compiler as ac

    if args.hardware is None and (args.pack or args.no_replicate or args.floorplan):
        raise CLIError("--pack, --no-replicate and --floorplan need --hardware")
    hardware = None
    if args.hardware is not None:
        from ..reporting.hardware import as_hardware

        hardware = as_hardware(args.hardware)  # a bad name or file: a one-line ValueError
    x = example_inputs(args.input_shape, args.input_dtype)
    model = load_analog_model(args, "report", x)
    # a failing forward is a one-line ValueError already
    rep = ac.report(model, x, hardware=hardware, pack=args.pack,
                    replicate=not args.no_replicate)
    print(rep.to_markdown() if args.markdown else str(rep))
    write_outputs(args, rep)
    if args.floorplan is not None:
        run_user_code(lambda: rep.plot_floorplan(args.floorplan), f"writing {args.floorplan}")
        print(f"wrote {args.floorplan}", file=sys.stderr)
    return 0
