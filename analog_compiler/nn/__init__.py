"""Analog layers with aihwkit's layer API."""

from .base import AnalogLayerBase
from .conv import AnalogConv1d, AnalogConv2d, AnalogConv3d
from .linear import AnalogLinear
from .tiles import AnalogTile

__all__ = ["AnalogLayerBase", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d", "AnalogLinear",
           "AnalogTile"]
