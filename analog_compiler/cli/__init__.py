"""The ``analog-compiler`` command line (also ``python -m analog_compiler``).

Each subcommand lives in its own module of this package, which provides
``register(subparsers) -> None`` (adds its parser and sets ``func`` to a callable taking the
parsed args and returning an exit code). Errors a user can cause print one line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("report", "export", "sweep")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analog-compiler",
                                     description="Map PyTorch models onto analog tiles.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..runtime import AnalogCompilerError

    try:
        return int(args.func(args) or 0)
    except (CLIError, AnalogCompilerError, ValueError, TypeError, OSError, ImportError,
            AttributeError, RuntimeError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__  # always one line
        print(f"analog-compiler {args.command}: error: {message}", file=sys.stderr)
        return 2
