"""``analog-compiler report MODULE:FACTORY``: print the tile report of a model.

``MODULE`` is an importable module (``torchvision.models``) or a path to a ``.py`` file;
``FACTORY`` a callable in it that takes no arguments and returns an ``nn.Module``. A digital model
is converted first (``analog_compiler.convert`` with ``--config`` or the default
``InferenceRPUConfig``); a model that already has analog layers is reported as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import DTYPES, example_inputs, load_analog_model, parse_shape, write_outputs


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``report`` subcommand."""
    import analog_compiler as ac

    x = example_inputs(args.input_shape, args.input_dtype)
    model = load_analog_model(args, "report", x)
    rep = ac.report(model, x)  # a failing forward is a one-line ValueError already
    print(rep.to_markdown() if args.markdown else str(rep))
    write_outputs(args, rep)
    return 0
