"""``analog-compiler export MODULE:FACTORY --input-shape ... --out model.onnx``: realistic
weights (or the whole noise-free analog periphery) as ONNX, checked with onnxruntime.

``MODULE:FACTORY`` is loaded as by ``report`` (an importable module or a ``.py`` path and a
callable returning an ``nn.Module``). A digital model is converted first with ``--config`` (or
the default ``InferenceRPUConfig``); an analog model is exported as it is (programmed chips
kept). Unprogrammed layers are programmed on a copy (``--seed``), drifted to ``--t-inference``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import CLIError
from .common import DTYPES, example_input, load_analog_model, parse_shape


def _seconds(text: str) -> float:
    """``--t-inference`` value: seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected seconds, e.g. 86400"
                                         ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: must be a finite number of "
                                         "seconds >= 0")
    return value


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export", help="export a model's realistic analog weights to ONNX",
        description="Convert a model (unless it is analog already), read its chip's weights "
                    "(programmed, optionally drifted) and write them as ONNX, verified with "
                    "onnxruntime; the rpu_config and tile plan go into the ONNX metadata.")
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="importable module or .py path, and a callable in it returning a model")
    p.add_argument("--input-shape", metavar="N,C,...", type=parse_shape, required=True,
                   help="shape of the example input (the first axis is exported as dynamic)")
    p.add_argument("--input-dtype", choices=sorted(DTYPES), default="float32",
                   help="dtype of the example input (int64: random token ids in [0, 100))")
    p.add_argument("--out", metavar="MODEL.onnx", type=Path, required=True,
                   help="the ONNX file to write (its folder must exist)")
    p.add_argument("--t-inference", metavar="SECONDS", type=_seconds, default=None,
                   help="drift the chip to this time after programming, e.g. 86400 (one day)")
    p.add_argument("--keep-quantization", action="store_true",
                   help="also export the DAC/ADC periphery (noise-free analog forward)")
    p.add_argument("--exact", action="store_true",
                   help="export the exact target weights instead of the chip's")
    p.add_argument("--config", metavar="CFG.json", type=Path,
                   help="RPU config as JSON (InferenceRPUConfig.to_json / to_dict format)")
    p.add_argument("--seed", type=int, default=0, help="seed of the chip sample (default 0)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``export`` subcommand."""
    import analog_compiler as ac

    out: Path = args.out
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name such as {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise CLIError(f"--out {out}: directory {out.parent} does not exist")
    x = example_input(args.input_shape, args.input_dtype)
    model = load_analog_model(args, "export", (x,))
    res = ac.export_onnx(model, (x,), out, realistic=not args.exact,
                         t_inference=args.t_inference, keep_quantization=args.keep_quantization,
                         verify=not args.no_verify, seed=args.seed)
    what = "exact target weights" if args.exact else "realistic chip weights" + (
        f" at t = {args.t_inference:g} s" if args.t_inference is not None else "")
    if args.keep_quantization:
        what += " with the DAC/ADC periphery"
    print(f"wrote {res.path} ({what}; {res.path.stat().st_size / 1024:.0f} kB)")
    if res.agreement is not None:  # quantized: per-layer check and end-to-end statistic
        print(res.agreement.summary())
    elif res.max_abs_diff is not None:
        print(f"onnxruntime matches PyTorch: max |diff| {res.max_abs_diff:.2e} "
              f"(relative {res.max_rel_diff:.2e})")
    return 0
