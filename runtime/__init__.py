"""analog_compiler.runtime: the op library, tile-array state and physical models.

Knows nothing about FX or graphs; imported by the compiler layer above it.
"""

from . import ops
from ._ext import backend
from .config import *  # noqa: F403
from .config import __all__ as _config_all
from .errors import AnalogCompilerError, ModuleError
from .periphery import kernel_io
from .tile_array import TileArray
from .tiling import TilePlan, balanced_split
from .training_tile import TrainingTileArray

__all__ = [*_config_all, "ops", "backend", "AnalogCompilerError", "ModuleError", "TileArray",
           "kernel_io", "TilePlan", "balanced_split", "TrainingTileArray"]
