"""Checks of plain arguments shared by the analog layers and the verbs above them.

One rule per argument, so that every caller accepts and rejects the same values; each caller
passes its own ``where`` (``"AnalogLinear.drift_analog_weights"``, ``"export_onnx"``), which
starts the error message.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch


def check_t_inference(t_inference: Any, where: str, *, allow_none: bool = False) -> float | None:
    """``t_inference`` (seconds after programming) as a float.

    Any finite real number >= 0 is accepted (Python or NumPy ints and floats, not bools);
    ``None`` only with ``allow_none`` (and returned as ``None``). Anything else is a
    ``ValueError`` starting with ``where``.
    """
    if t_inference is None and allow_none:
        return None
    if (isinstance(t_inference, bool) or not isinstance(t_inference, numbers.Real)
            or not math.isfinite(t_inference) or t_inference < 0):
        accepted = " or None" if allow_none else ""
        raise ValueError(f"{where}: t_inference must be a finite number of seconds >= 0"
                         f"{accepted}, got {t_inference!r}")
    return float(t_inference)


def check_finite(tensor: torch.Tensor, where: str, what: str) -> None:
    """A ``ValueError`` starting with ``where`` unless every value of ``tensor`` (named ``what``,
    e.g. ``weight``) is finite; it says how many values are NaN and how many infinite."""
    if tensor.is_floating_point() and tensor.numel() > 0:
        # min and max (NaN propagates) say it without a tensor-sized temporary: isfinite builds
        # |x| and three masks, 1.75x a float32 weight at its peak
        lo, hi = torch.aminmax(tensor.detach())
        if bool(torch.isfinite(lo) & torch.isfinite(hi)):
            return
    if tensor.is_floating_point() or tensor.is_complex():
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(tensor).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise ValueError(f"{where}: {what} has non-finite values ({n_nan} NaN, {n_inf} inf "
                             f"of {tensor.numel()}); analog tiles need finite {what} values")
