"""The digital-to-analog layer map: plain data a user can copy and extend.

Keys are digital module types, values analog classes with a ``from_digital(module, rpu_config,
tile_module_class)`` classmethod. Lookup walks the module's MRO, so subclasses of a key (e.g.
``NonDynamicallyQuantizableLinear``, a subclass of ``nn.Linear``) are mapped too; an exact
subclass key wins over its base.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..nn import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogElmanRNN,
    AnalogGRU,
    AnalogLinear,
    AnalogLSTM,
)
from ..nn.attention import AnalogMultiheadAttention

LayerMap = Mapping[type, type]

DEFAULT_LAYER_MAP: dict[type, type] = {
    nn.Linear: AnalogLinear,
    nn.Conv1d: AnalogConv1d,
    nn.Conv2d: AnalogConv2d,
    nn.Conv3d: AnalogConv3d,
    nn.MultiheadAttention: AnalogMultiheadAttention,
    nn.LSTM: AnalogLSTM,
    nn.GRU: AnalogGRU,
    nn.RNN: AnalogElmanRNN,
}
"""Default map; ``convert(..., layer_map={**DEFAULT_LAYER_MAP, MyLinear: MyAnalogLinear})``."""

#: Matrix layers that have no analog counterpart: reported as digital with this reason.
UNSUPPORTED_MATRIX_LAYERS: tuple[type, ...] = (
    nn.Bilinear, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.RNNBase,
    nn.RNNCellBase, nn.MultiheadAttention,  # the last only when a layer map leaves it out
)


def lookup(layer_map: LayerMap, module_type: type) -> tuple[type, type] | None:
    """``(key, analog class)`` for the most specific key in ``module_type``'s MRO, or None.

    A subclass that overrides ``forward`` (e.g. a LoRA ``nn.Linear``) is not the key's layer:
    None, so its code is traced and the products in it are mapped one by one."""
    for base in module_type.__mro__:
        if base in layer_map:
            if base is not module_type and getattr(module_type, "forward", None) is not getattr(
                    base, "forward", None):
                return None
            return base, layer_map[base]
    return None


def check_layer_map(layer_map: object) -> dict[type, type]:
    """Validate a user layer map (a mapping of types to classes with ``from_digital``)."""
    if not isinstance(layer_map, Mapping):
        raise TypeError(f"layer_map must be a dict of module types to analog classes, "
                        f"got {type(layer_map).__name__}")
    for key, value in layer_map.items():
        if not isinstance(key, type) or not issubclass(key, nn.Module):
            raise TypeError(f"layer_map key {key!r} must be an nn.Module subclass")
        if not callable(getattr(value, "from_digital", None)):
            raise TypeError(f"layer_map[{key.__name__}] = {value!r} has no from_digital "
                            "classmethod")
    return dict(layer_map)
