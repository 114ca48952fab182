"""Running the ``analog-compiler`` entry point in-process, for the command-line tests."""

from __future__ import annotations

from analog_compiler.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``analog-compiler *argv``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
