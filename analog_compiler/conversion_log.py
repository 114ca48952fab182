"""What a conversion did to each matrix layer: the contract between ``convert`` and ``report``.

``convert`` attaches a ``ConversionLog`` to the model it returns (attribute
``analog_conversion_log``; plain Python data, not part of ``state_dict``). ``report`` reads it to
list the layers that stayed digital, with their reasons, next to the mapped ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LOG_ATTRIBUTE = "analog_conversion_log"


@dataclass
class LayerRecord:
    """One matrix layer (module or functional call) that conversion looked at."""

    name: str
    """Qualified module name in the converted model (for a functional call: the new module's
    name if mapped, else the graph node name)."""
    source_type: str
    """What it was: ``Linear``, ``Conv2d``, ``F.linear``, ``matmul``, ``Conv1D``,
    ``MultiheadAttention.in_proj``, ..."""
    status: str
    """``analog`` (mapped) or ``digital`` (kept digital)."""
    reason: str = ""
    """Why it stayed digital: ``policy``, ``excluded``, ``unsupported: ...``,
    ``untraceable: ...``; empty when mapped."""
    rpu_config: dict[str, Any] | None = None
    """The layer's config (``to_dict``) when it differs from the global one, else None."""


@dataclass
class ConversionLog:
    """Everything ``convert`` decided, in graph order."""

    rpu_config: dict[str, Any]
    """The global config (``to_dict``)."""
    capture: str = "fx"
    """``fx`` (symbolic trace), ``module-swap`` (no graph), or ``dynamo`` (compile backend)."""
    records: list[LayerRecord] = field(default_factory=list)
    """One entry per matrix layer seen."""
    fallbacks: dict[str, str] = field(default_factory=dict)
    """Submodules converted by module swap because tracing failed: name -> the trace error."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)
