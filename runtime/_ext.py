"""The compiled kernel library ``analog_compiler._C``: loading it, and which implementation
serves each op.

The library only registers CPU (and, where built with CUDA, CUDA) kernels for the schemas that
``runtime/ops.py`` defines; the dispatcher then prefers them over the ``CompositeExplicitAutograd``
reference kernels. ``ANALOG_COMPILER_NO_EXT=1`` keeps the reference kernels in charge; a library
that fails to load does the same, with one warning.
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

#: The ops of the ``analog`` namespace.
OPS: tuple[str, ...] = ("tile_forward", "tile_backward", "tile_conv2d", "im2col2d", "pcm_chip")
#: Devices ``backend()`` reports on, with the dispatch key a compiled kernel registers under.
DEVICES: dict[str, str] = {"cpu": "CPU", "cuda": "CUDA"}
_IMPL_NAMES: dict[str, str] = {"cpu": "cpp", "cuda": "cuda"}

_loaded: bool | None = None
_error: str | None = None


def load() -> bool:
    """Import ``analog_compiler._C`` once (unless ``ANALOG_COMPILER_NO_EXT=1``); True when it
    registered its kernels. A failure warns once and leaves the reference kernels in charge."""
    global _loaded, _error
    if _loaded is not None:
        return _loaded
    _loaded = False
    if os.environ.get("ANALOG_COMPILER_NO_EXT", "0") == "1":
        _error = "disabled by ANALOG_COMPILER_NO_EXT=1"
        return False
    try:
        importlib.import_module("analog_compiler._C")
    except Exception as exc:  # ImportError, or an OSError from a broken build
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn("analog-compiler: the compiled kernels (analog_compiler._C) are not "
                      f"available ({_error}); the pure-PyTorch reference kernels are used",
                      RuntimeWarning, stacklevel=2)
        return False
    _loaded = True
    return True


def is_loaded() -> bool:
    """Whether the compiled library is loaded."""
    return bool(_loaded)


def load_error() -> str | None:
    """Why the compiled library is not loaded (None when it is, or was not tried yet)."""
    return _error


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"analog::{op}", key)


def backend() -> dict[str, dict[str, str]]:
    """Which implementation serves each op on each device: ``"cpp"`` (the C++ CPU kernels),
    ``"cuda"`` (the CUDA kernels) or ``"reference"`` (the pure-PyTorch kernels of
    ``runtime/reference.py``).

    >>> backend()["tile_forward"]["cpu"] in ("cpp", "reference")
    True
    """
    from . import chip_ops, conv_ops, im2col  # noqa: F401  (define the other ops)

    return {op: {dev: (_IMPL_NAMES[dev] if _has_kernel(op, key) else "reference")
                 for dev, key in DEVICES.items()} for op in OPS}
