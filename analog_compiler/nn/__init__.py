"""Analog layers with aihwkit's layer API."""

from .base import AnalogLayerBase
from .containers import AnalogContainerMixin, AnalogSequential, AnalogWrapper
from .conv import AnalogConv1d, AnalogConv2d, AnalogConv3d
from .experts import AnalogExperts
from .linear import AnalogLinear
from .recurrent import AnalogRNN
from .recurrent_cells import (
    AnalogGRUCell,
    AnalogLSTMCell,
    AnalogLSTMCellCombinedWeight,
    AnalogVanillaRNNCell,
)
from .recurrent_torch import AnalogElmanRNN, AnalogGRU, AnalogLSTM
from .tiles import AnalogTile

__all__ = ["AnalogLayerBase", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d", "AnalogLinear",
           "AnalogTile", "AnalogContainerMixin", "AnalogSequential", "AnalogWrapper",
           "AnalogRNN", "AnalogLSTMCell", "AnalogLSTMCellCombinedWeight", "AnalogGRUCell",
           "AnalogVanillaRNNCell", "AnalogLSTM", "AnalogGRU", "AnalogElmanRNN", "AnalogExperts"]
