"""Analog containers with aihwkit 1.2.0's names: ``AnalogSequential`` and ``AnalogWrapper``.

``AnalogContainerMixin`` is the one implementation of the model-level analog verbs
(``program_analog_weights``, ``drift_analog_weights``, ``analog_layers``, ``analog_tiles``, ...).
``AnalogSequential`` mixes it into ``nn.Sequential``; ``AnalogWrapper(module)`` gives any module
the verbs by re-classing it (as aihwkit does); ``convert_to_analog`` wraps a converted root the
same way, and the recurrent layers (``AnalogRNN``, ``AnalogLSTM``, ...) are containers too.

Naming, as in aihwkit: *analog layers* are the leaf layers that own tile arrays
(``AnalogLinear``, ``AnalogConv2d``, ...); *analog modules* are those plus the containers;
*analog tiles* are the physical crossbars (``AnalogTile`` views), named
``<layer>.analog_module.g<group>.i<in split>.j<out split>``.

Differences to aihwkit, on purpose: ``get_weights``/``set_weights`` key the weights by
``<layer>.analog_module`` (aihwkit's tile-module name for an unsplit layer) and hold each
layer's *whole* torch-shaped ``(weight, bias)``, also when the layer spans several physical
tiles; ``analog_tile_count`` is never cached (aihwkit counts once, on the first call).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor, nn

from ..runtime import ModuleError, TileArray
from .base import AnalogLayerBase, resolve_rpu_config
from .tiles import AnalogTile


class AnalogContainerMixin:
    """The model-level analog verbs of aihwkit's ``AnalogContainerBase`` for any ``nn.Module``
    subclass that mixes this in (before ``nn.Module`` in the bases)."""

    #: aihwkit's marker: containers hold analog layers but no tiles of their own.
    IS_CONTAINER: bool = True

    # ------------------------------------------------------------ iteration
    def named_analog_layers(self) -> Iterator[tuple[str, AnalogLayerBase]]:
        """``(name, layer)`` of every analog layer (tile owner) in this module."""
        for name, module in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, AnalogLayerBase):
                yield name, module

    def analog_layers(self) -> Iterator[AnalogLayerBase]:
        """Every analog layer (tile owner; containers excluded) in this module."""
        for _, layer in self.named_analog_layers():
            yield layer

    def named_analog_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """``(name, module)`` of every analog layer and analog container (this one included)."""
        for name, module in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, AnalogLayerBase | AnalogContainerMixin):
                yield name, module

    def analog_modules(self) -> Iterator[nn.Module]:
        """Every analog layer and analog container (this one included)."""
        for _, module in self.named_analog_modules():
            yield module

    def named_analog_tiles(self) -> Iterator[tuple[str, AnalogTile]]:
        """``(name, tile)`` of every physical tile, e.g. ``0.analog_module.g0.i1.j0``."""
        for name, layer in self.named_analog_layers():
            for tile_name, tile in layer.named_analog_tiles():
                yield (f"{name}.{tile_name}" if name else tile_name), tile

    def analog_tiles(self) -> Iterator[AnalogTile]:
        """Every physical tile of every analog layer."""
        for _, tile in self.named_analog_tiles():
            yield tile

    def analog_tile_count(self) -> int:
        """Physical tiles of every analog layer."""
        return sum(layer.analog_tile_count() for layer in self.analog_layers())

    def get_analog_tile_devices(self) -> list[Any]:
        """The device of every physical tile."""
        return [tile.device for tile in self.analog_tiles()]

    def apply_to_analog_layers(self, fn: Callable[[AnalogLayerBase], Any]) -> nn.Module:
        """Call ``fn(layer)`` on every analog layer; returns this module."""
        for layer in list(self.analog_layers()):
            fn(layer)
        return self  # type: ignore[return-value]

    def apply_to_analog_tiles(self, fn: Callable[[AnalogTile], Any]) -> nn.Module:
        """Call ``fn(tile)`` on every physical tile (``AnalogTile`` view); returns this module."""
        for tile in list(self.analog_tiles()):
            fn(tile)
        return self  # type: ignore[return-value]

    # ------------------------------------------------------------ chip
    def _check_eval(self, verb: str) -> None:
        if self.training:  # type: ignore[attr-defined]
            raise ModuleError(f"{type(self).__name__}.{verb}: the module is in training mode; "
                              "call .eval() first")

    def program_analog_weights(self) -> None:
        """Program a new chip sample for every analog layer (eval mode only)."""
        self._check_eval("program_analog_weights")
        for layer in self.analog_layers():
            layer.program_analog_weights()

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """(Program and) drift every analog layer to ``t_inference`` seconds (eval mode only)."""
        self._check_eval("drift_analog_weights")
        for layer in self.analog_layers():
            layer.drift_analog_weights(t_inference)

    def remap_analog_weights(self, weight_scaling_omega: float | None = 1.0) -> None:
        """``remap_weights(weight_scaling_omega)`` on every analog layer."""
        for layer in self.analog_layers():
            layer.remap_weights(weight_scaling_omega)

    def replace_rpu_config(self, rpu_config: Any) -> None:
        """Give every analog layer (a copy of) ``rpu_config``, keeping its target weights; a
        new tile plan re-tiles the layer and any programming is reset."""
        name = type(self).__name__
        rpu_config = resolve_rpu_config(rpu_config, f"{name}.replace_rpu_config")
        for layer in self.analog_layers():
            weight, bias = layer.get_target_weights()
            layer.analog_module.apply_rpu_config(copy.deepcopy(rpu_config))
            layer.set_weights(weight, bias, force_exact=True)

    # ------------------------------------------------------------ weights
    def get_weights(self, **kwargs: Any) -> OrderedDict[str, tuple[Tensor, Tensor | None]]:
        """``{"<layer>.analog_module": (weight, bias)}`` for every analog layer (torch shapes):
        what each chip holds now; ``kwargs`` go to each layer's ``get_weights``
        (``force_exact``, ``apply_weight_scaling``)."""
        return OrderedDict((_tile_key(name), layer.get_weights(**kwargs))
                           for name, layer in self.named_analog_layers())

    def get_target_weights(self, apply_weight_scaling: bool = True
                           ) -> OrderedDict[str, tuple[Tensor, Tensor | None]]:
        """``{"<layer>.analog_module": (weight, bias)}``: every analog layer's target weights
        (``get_target_weights``), whatever its chip holds."""
        return OrderedDict((_tile_key(name), layer.get_target_weights(apply_weight_scaling))
                           for name, layer in self.named_analog_layers())

    def set_weights(self, weights: dict[str, tuple[Tensor, Tensor | None]],
                    **kwargs: Any) -> None:
        """Set every analog layer from a ``get_weights`` dict; ``kwargs`` go to each layer's
        ``set_weights``. Raises ``ModuleError`` naming a layer missing from ``weights``."""
        if not isinstance(weights, dict):
            raise TypeError(f"{type(self).__name__}.set_weights: expected a dict of "
                            f"'<layer>.analog_module' -> (weight, bias), "
                            f"got {type(weights).__name__}")
        layers = list(self.named_analog_layers())
        for name, _ in layers:
            if _tile_key(name) not in weights:
                raise ModuleError(f"{type(self).__name__}.set_weights: no weights for "
                                  f"{_tile_key(name)!r} in the given dict")
        for name, layer in layers:
            weight, bias = weights[_tile_key(name)]
            layer.set_weights(weight, bias, **kwargs)

    # ------------------------------------------------------------ checkpoints
    def load_state_dict(self, state_dict: Any, strict: bool = True, load_rpu_config: bool = True,
                        strict_rpu_config_check: bool = True, assign: bool = False) -> Any:
        """torch's ``load_state_dict``; ``load_rpu_config=False`` keeps every layer's own config
        (the checkpoint's tile plans must match; the config class too if
        ``strict_rpu_config_check``)."""
        arrays = [m for m in self.modules() if isinstance(m, TileArray)]  # type: ignore
        for arr in arrays:
            arr.load_rpu_config = load_rpu_config
            arr.strict_rpu_config_check = strict_rpu_config_check
        try:
            return super().load_state_dict(state_dict, strict=strict,  # type: ignore[misc]
                                           assign=assign)
        finally:
            for arr in arrays:
                del arr.load_rpu_config, arr.strict_rpu_config_check


def _tile_key(layer_name: str) -> str:
    return f"{layer_name}.analog_module" if layer_name else "analog_module"


class AnalogSequential(AnalogContainerMixin, nn.Sequential):
    """``nn.Sequential`` with the analog verbs (aihwkit's ``AnalogSequential``).

    Example::

        model = ac.AnalogSequential(ac.AnalogLinear(8, 16), nn.ReLU(), ac.AnalogLinear(16, 2))
        model.eval()
        model.program_analog_weights()
        model.drift_analog_weights(3600.0)
    """

    @classmethod
    def from_digital(cls, module: nn.Sequential, *args: Any, **kwargs: Any) -> AnalogSequential:
        """An ``AnalogSequential`` holding ``module``'s children (the same objects; nothing is
        converted: use ``ac.convert`` for that)."""
        if not isinstance(module, nn.Sequential):
            raise TypeError(f"AnalogSequential.from_digital expects an nn.Sequential, got "
                            f"{type(module).__name__}")
        return cls(OrderedDict(module.named_children())).train(module.training)

    @classmethod
    def to_digital(cls, module: AnalogSequential, *args: Any, **kwargs: Any) -> nn.Sequential:
        """An ``nn.Sequential`` holding ``module``'s children (the same objects; use
        ``ac.to_digital`` to also turn the analog layers into digital ones)."""
        if not isinstance(module, AnalogSequential):
            raise TypeError(f"AnalogSequential.to_digital expects an AnalogSequential, got "
                            f"{type(module).__name__}")
        return nn.Sequential(OrderedDict(module.named_children())).train(module.training)


class AnalogWrapper(AnalogContainerMixin):
    """Give any module the analog verbs (aihwkit's ``AnalogWrapper``).

    ``AnalogWrapper(model)`` returns an object of the class ``AnalogWrapper<Class>`` (a subclass
    of ``AnalogWrapper`` and of ``model``'s class) that shares ``model``'s attributes,
    submodules and tensors (use it in ``model``'s place); ``state_dict`` keys do not change.
    ``convert_to_analog(..., ensure_analog_root=True)`` returns its result wrapped this way.
    Pickling (``torch.save``, ``copy.deepcopy``) stores the original class and re-wraps on load.
    """

    SUBCLASSES: dict[type, type] = {}
    """The generated ``AnalogWrapper<Class>`` classes, by wrapped class."""

    def __new__(cls, module: nn.Module | None = None, **_: Any) -> AnalogWrapper:
        if module is None:  # unpickling and copying
            return super().__new__(cls)
        if not isinstance(module, nn.Module):
            raise TypeError(f"AnalogWrapper expects an nn.Module, got {type(module).__name__}")
        return super().__new__(wrapper_class(type(module)))

    def __init__(self, module: nn.Module | None = None, **_: Any) -> None:
        if module is not None and module is not self:
            self.__dict__.update(module.__dict__)

    @classmethod
    def from_digital(cls, module: nn.Module, *args: Any, **kwargs: Any) -> AnalogWrapper:
        """``AnalogWrapper(module)``."""
        return cls(module)

    @classmethod
    def to_digital(cls, module: AnalogWrapper, *args: Any, **kwargs: Any) -> nn.Module:
        """An object of the wrapped class sharing ``module``'s attributes (the analog layers in
        it stay analog; ``ac.to_digital`` turns those into digital layers too)."""
        if not isinstance(module, AnalogWrapper):
            raise TypeError(f"AnalogWrapper.to_digital expects an AnalogWrapper, got "
                            f"{type(module).__name__}")
        base = wrapped_class(type(module))
        plain = base.__new__(base)
        plain.__dict__.update(module.__dict__)
        return plain

    def __reduce_ex__(self, protocol: Any) -> tuple:
        """Pickle as the wrapped class, re-wrapped on load (the generated class cannot be
        found by name)."""
        return _rewrap, (wrapped_class(type(self)), self.__dict__)


def wrapper_class(cls: type) -> type:
    """The ``AnalogWrapper<cls>`` class (created once per wrapped class)."""
    if issubclass(cls, AnalogWrapper):
        return cls
    new = AnalogWrapper.SUBCLASSES.get(cls)
    if new is None:
        new = type(f"AnalogWrapper{cls.__name__}", (AnalogWrapper, cls),
                   {"__module__": cls.__module__, "__doc__": cls.__doc__})
        AnalogWrapper.SUBCLASSES[cls] = new
        _WRAPPED[new] = cls
    return new


_WRAPPED: dict[type, type] = {}


def wrapped_class(cls: type) -> type:
    """The original class of an ``AnalogWrapper<Class>`` class (or of a subclass of one)."""
    for c in cls.__mro__:
        if c in _WRAPPED:
            return _WRAPPED[c]
    raise TypeError(f"{cls.__name__} is not an AnalogWrapper class")


def _rewrap(base: type, state: dict[str, Any]) -> nn.Module:
    obj = base.__new__(base)
    obj.__dict__.update(state)
    return AnalogWrapper(obj)


def ensure_analog_container(model: nn.Module) -> nn.Module:
    """``model`` itself if it already has the analog verbs (a container or an analog layer),
    else ``AnalogWrapper(model)``."""
    from .attention import AnalogMultiheadAttention

    if isinstance(model, AnalogContainerMixin | AnalogLayerBase | AnalogMultiheadAttention):
        return model
    return AnalogWrapper(model)
