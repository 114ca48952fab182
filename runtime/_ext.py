"""The compiled kernel library ``analog_compiler._C``: loading it, and which implementation
serves each op.

The library only registers CPU (and, where built with CUDA, CUDA) kernels for the schemas that
``runtime/ops.py`` defines; the dispatcher then prefers them over the ``CompositeExplicitAutograd``
reference kernels. ``load()`` (called once, by ``ops.py``, after the schemas exist) imports the
library, checks that it packs the periphery as ``runtime/periphery.py`` does (fields, order and
enum codes), and only then lets it register its kernels.

Without the library the reference kernels serve every op, with one warning:
``ANALOG_COMPILER_NO_EXT=1`` asks for that. ``ANALOG_COMPILER_REQUIRE_EXT=1`` (set by CI) turns
any reason the compiled kernels are not in charge (not built, failed to load, a CPU without
AVX2 for an x86-64 build, a periphery layout that disagrees) into an ``ImportError``.
"""

from __future__ import annotations

import importlib
import os
import platform
import warnings

import torch

from . import periphery

#: Devices ``backend()`` reports on, with the dispatch key a compiled kernel registers under.
DEVICES: dict[str, str] = {"cpu": "CPU", "cuda": "CUDA"}
_IMPL_NAMES: dict[str, str] = {"cpu": "cpp", "cuda": "cuda"}
#: What an x86-64 build of the library is compiled for (``setup.py``'s ``-mavx2 -mfma``).
X86_REQUIRED = ("AVX2", "AVX512")

_loaded: bool | None = None
_error: str | None = None


def required() -> bool:
    """Whether the compiled kernels must be in charge (``ANALOG_COMPILER_REQUIRE_EXT=1``)."""
    return os.environ.get("ANALOG_COMPILER_REQUIRE_EXT", "0") == "1"


def _cpu_problem() -> str | None:
    """Why this CPU cannot run the x86-64 build (compiled for AVX2/FMA), or None."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    cap = torch.backends.cpu.get_cpu_capability()
    if cap in X86_REQUIRED:
        return None
    return (f"this CPU lacks AVX2/FMA (torch reports capability {cap!r}), which the x86-64 "
            "build of analog_compiler._C is compiled for")


def _import_and_register() -> str | None:
    """Import the library and register its kernels; the reason it could not, or None."""
    problem = _cpu_problem()
    if problem is not None:
        return problem
    try:
        lib = importlib.import_module("analog_compiler._C")
    except Exception as exc:  # ImportError, or an OSError from a broken build
        return f"{type(exc).__name__}: {exc}"
    theirs, ours = lib.periphery_layout(), periphery.layout()
    if theirs != ours:
        return ("its periphery layout differs from runtime/periphery.py's (rebuild it: pip "
                f"install --no-build-isolation -e .):\n  compiled: {theirs}\n  python:   {ours}")
    lib.register_kernels()
    return None


def load() -> bool:
    """Load the compiled kernels once (unless ``ANALOG_COMPILER_NO_EXT=1``); True when they
    registered. A failure warns once and leaves the reference kernels in charge, or raises
    ``ImportError`` under ``ANALOG_COMPILER_REQUIRE_EXT=1``."""
    global _loaded, _error
    if _loaded is not None:
        return _loaded
    _loaded = False
    if os.environ.get("ANALOG_COMPILER_NO_EXT", "0") == "1":
        _error = "disabled by ANALOG_COMPILER_NO_EXT=1"
    else:
        _error = _import_and_register()
        _loaded = _error is None
    if _loaded:
        return True
    if required():
        raise ImportError("analog-compiler: ANALOG_COMPILER_REQUIRE_EXT=1 but the compiled "
                          f"kernels (analog_compiler._C) are not in charge: {_error}")
    if _error != "disabled by ANALOG_COMPILER_NO_EXT=1":
        warnings.warn("analog-compiler: the compiled kernels (analog_compiler._C) are not "
                      f"available ({_error}); the pure-PyTorch reference kernels are used",
                      RuntimeWarning, stacklevel=2)
    return False


def is_loaded() -> bool:
    """Whether the compiled library is loaded and its kernels registered."""
    return bool(_loaded)


def load_error() -> str | None:
    """Why the compiled library is not in charge (None when it is, or was not tried yet)."""
    return _error


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"analog::{op}", key)


def backend() -> dict[str, dict[str, str]]:
    """Which implementation serves each op on each device: ``"cpp"`` (the C++ CPU kernels),
    ``"cuda"`` (the CUDA kernels) or ``"reference"`` (the pure-PyTorch kernels of
    ``runtime/reference.py`` and friends).

    >>> backend()["tile_forward"]["cpu"] in ("cpp", "reference")
    True
    """
    from .ops import SCHEMAS

    return {op: {dev: (_IMPL_NAMES[dev] if _has_kernel(op, key) else "reference")
                 for dev, key in DEVICES.items()} for op in SCHEMAS}
