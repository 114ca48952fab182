"""The compiler: capture, canonicalize, policy, rewrite, and the torch.compile backend."""

from . import backend  # registers the torch.compile backend "analog"
from .api import convert, convert_to_analog
from .layer_map import DEFAULT_LAYER_MAP
from .policy import LayerPolicy

__all__ = ["backend", "convert", "convert_to_analog", "DEFAULT_LAYER_MAP", "LayerPolicy"]
