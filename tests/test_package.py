"""The package's public names exist, and no test skips itself over one of our own verbs: a
missing verb must fail the suite, not skip its tests."""

from __future__ import annotations

import re
from pathlib import Path

import analog_compiler as ac

VERBS = ("convert", "convert_to_analog", "report", "program_analog_weights",
         "drift_analog_weights", "to_digital", "export_onnx", "analog_layers")

#: Ways a test could hide a missing name of ours: ``hasattr(ac, ...)`` / ``getattr(ac, ..., None)``
#: guards and ``importorskip`` of our own modules.
GUARDS = re.compile(r"hasattr\(\s*(ac|analog_compiler)\s*,"
                    r"|getattr\(\s*(ac|analog_compiler)\s*,[^,()]*,\s*None\s*\)"
                    r"|importorskip\(\s*[\"'](analog_compiler|runtime)")


def test_public_names_exist() -> None:
    missing = [name for name in ac.__all__ if not hasattr(ac, name)]
    assert not missing, f"analog_compiler.__all__ names missing from the package: {missing}"
    assert set(VERBS) <= set(ac.__all__)
    assert all(callable(getattr(ac, verb)) for verb in VERBS)


def test_no_test_skips_over_our_own_names() -> None:
    here = Path(__file__).resolve()
    found = [f"{path.relative_to(here.parent)}:{n}: {line.strip()}"
             for path in sorted(here.parent.rglob("*.py")) if path != here
             for n, line in enumerate(path.read_text().splitlines(), 1) if GUARDS.search(line)]
    assert not found, "tests guarded by the presence of our own names:\n" + "\n".join(found)
