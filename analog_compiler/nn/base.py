"""AnalogLayerBase: the aihwkit layer API shared by every analog layer.

A layer owns one ``TileArray`` (``self.analog_module``) holding every tile of its weight
matrix. Subclasses define how inputs become matrix rows (``_matrix_forward``) and how the torch
weight shape maps to the array's ``[groups, out_g, in_g]`` layout.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import (
    RPU_CONFIG_TYPES,
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    ModuleError,
    TileArray,
)
from ..runtime.checks import check_finite, check_t_inference
from ..runtime.training_tile import TRAINING_RPU_CONFIG_TYPES, TrainingTileArray
from .tiles import AnalogTile, tiles_of

_SKIP_RESET = contextvars.ContextVar("analog_compiler_skip_reset", default=False)


@contextlib.contextmanager
def weights_set_later() -> Iterator[None]:
    """Build analog layers without the digital-style random initialisation (their tile
    weights stay zero): for ``from_digital``, which sets every weight right after. Saves a
    throw-away digital layer and two random fills per layer."""
    token = _SKIP_RESET.set(True)
    try:
        yield
    finally:
        _SKIP_RESET.reset(token)


def resolve_rpu_config(rpu_config: Any, layer: str) -> InferenceRPUConfig | FloatingPointRPUConfig:
    """``None`` -> a default InferenceRPUConfig; anything but an RPU config is a TypeError."""
    if rpu_config is None:
        return InferenceRPUConfig()
    if not isinstance(rpu_config, RPU_CONFIG_TYPES):
        raise TypeError(f"{layer}: rpu_config must be an InferenceRPUConfig, "
                        "FloatingPointRPUConfig, SingleRPUConfig, DigitalRankUpdateRPUConfig or "
                        "UnitCellRPUConfig, "
                        f"got {type(rpu_config).__name__}")
    return rpu_config


def resolve_tile_class(tile_module_class: Any, layer: str,
                       rpu_config: Any = None) -> type[TileArray]:
    """The tile-array class to build (``TileArray`` or a subclass); by default the one of the
    rpu_config (``TrainingTileArray`` for the training configs)."""
    if tile_module_class is None:
        return (TrainingTileArray if isinstance(rpu_config, TRAINING_RPU_CONFIG_TYPES)
                else TileArray)
    if not (isinstance(tile_module_class, type) and issubclass(tile_module_class, TileArray)):
        raise TypeError(f"{layer}: tile_module_class must be a TileArray subclass, "
                        f"got {tile_module_class!r}")
    return tile_module_class


class AnalogLayerBase(nn.Module):
    """Mixin of the analog layer API (aihwkit names). Subclasses set ``self.analog_module``."""

    analog_module: TileArray
    #: Realistic weight transfers (aihwkit's flag): ``set_weights`` programs the chip and
    #: ``get_weights`` estimates the weights from the analog forward, unless ``force_exact``.
    realistic_read_write: bool = False

    # ------------------------------------------------------------ torch weight layout
    def _to_array_layout(self, weight: Tensor) -> Tensor:
        """Torch-shaped weight -> ``[groups, out_g, in_g]``."""
        raise NotImplementedError

    def _from_array_layout(self, weight: Tensor) -> Tensor:
        """``[groups, out_g, in_g]`` -> torch-shaped weight."""
        raise NotImplementedError

    def _weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def rpu_config(self) -> InferenceRPUConfig | FloatingPointRPUConfig:
        """The tile config of this layer."""
        return self.analog_module.rpu_config

    @property
    def weight(self) -> Tensor:
        """The tile targets in the digital layer's shape: a view of the tile array's weight
        parameter (no copy), with its dtype, device and ``requires_grad``. It is there for code
        written for the digital layer that reads ``layer.weight.dtype`` or ``.device`` in its
        forward (Hugging Face's ViT, DINOv2, CLIP, SigLIP, T5, Qwen2-VL do). Its values are the
        tile side of the mapping: under weight scaling the targets divided by the output
        scales. Read the weights with ``get_weights()`` (what the chip holds) or
        ``get_target_weights()``, write them with ``set_weights``."""
        return self._from_array_layout(self.analog_module.weight)

    @weight.setter
    def weight(self, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__}.weight is read-only (a view of the tile "
                             "targets): write the weights with set_weights(weight, bias)")

    @property
    def bias(self) -> Tensor | None:
        """The bias parameter (digital, added to the tiles' output), or None."""
        return self.analog_module.bias

    @bias.setter
    def bias(self, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__}.bias is read-only: write it with "
                             "set_weights(weight, bias)")

    # ------------------------------------------------------------ weights
    def set_weights(self, weight: Tensor, bias: Tensor | None = None, force_exact: bool = False,
                    apply_weight_scaling: bool = True,
                    weight_scaling_omega: float | None = None) -> None:
        """Set new target weights (torch shape) and bias. With weight scaling (``omega > 0``
        here or in the mapping) the tiles get ``W / alpha`` and the digital output scales
        ``alpha``. A new target starts a new chip: any programmed or drifted chip is forgotten
        (the forward and ``get_weights`` use the new targets until the next
        ``program_analog_weights``). With ``realistic_read_write`` (and not ``force_exact``) the
        write is realistic: it programs a chip sample right away (aihwkit's
        ``program_weights``).

        Raises:
            TypeError: ``weight`` or ``bias`` is not a Tensor.
            ValueError: a wrong shape, a bias for a layer without one, NaN or infinite values
                in ``weight`` or ``bias`` (the message says which), a negative omega.
        """
        name = type(self).__name__
        if not isinstance(weight, Tensor):
            raise TypeError(f"{name}.set_weights: weight must be a Tensor, "
                            f"got {type(weight).__name__}")
        if tuple(weight.shape) != self._weight_shape():
            raise ValueError(f"{name}.set_weights: weight has shape {tuple(weight.shape)}, "
                             f"expected {self._weight_shape()}")
        check_finite(weight, f"{name}.set_weights", "weight")
        if weight_scaling_omega is not None and not weight_scaling_omega >= 0:  # NaN too
            raise ValueError(f"{name}.set_weights: weight_scaling_omega must be >= 0, "
                             f"got {weight_scaling_omega}")
        arr = self.analog_module
        if bias is not None:
            if arr.bias is None:
                raise ValueError(f"{name}.set_weights: the layer has no bias (bias=False)")
            if not isinstance(bias, Tensor):
                raise TypeError(f"{name}.set_weights: bias must be a Tensor, "
                                f"got {type(bias).__name__}")
            if bias.numel() != arr.bias.numel():
                raise ValueError(f"{name}.set_weights: bias has {bias.numel()} values, "
                                 f"expected {arr.bias.numel()}")
            check_finite(bias, f"{name}.set_weights", "bias")
            with torch.no_grad():
                arr.bias.copy_(bias.reshape(-1))
        arr.set_logical_weights(self._to_array_layout(weight), weight_scaling_omega,
                                apply_weight_scaling)
        if self.realistic_read_write and not force_exact:
            arr.program()

    def get_weights(self, force_exact: bool = False,
                    apply_weight_scaling: bool = True) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` in torch shape: what the chip holds now, as aihwkit reads its
        tiles. Before programming that is the target weights; after
        ``program_analog_weights()`` the programmed weights (programming noise), after
        ``drift_analog_weights(t)`` the drifted ones (with the read noise of that read). The
        targets stay readable with ``get_target_weights``.

        Args:
            force_exact: read the chip's weights exactly even when the layer's
                ``realistic_read_write`` is set. Without it such a layer reads realistically:
                the weights are estimated from the analog forward of random inputs (aihwkit's
                ``read_weights``; noisy, different at every call, and with every digital scale
                of the forward, the drift compensation included).
            apply_weight_scaling: map the tile weights back through the digital scales
                (weight-scaling mapping scales and learned output scales): the logical weights.
                ``False``: the tile-side weights, the normalised conductances the crossbar holds.
                The drift-compensation factor is a correction of the forward, not part of the
                weights: an exact read leaves it out, as aihwkit does.
        """
        arr = self.analog_module
        scales = "mapping" if apply_weight_scaling else "none"
        if self.realistic_read_write and not force_exact:
            w = arr.read_weights()  # logical, every forward scale applied
            if not apply_weight_scaling:  # aihwkit divides the mapping and learned scales out
                w = arr.from_logical(w, "mapping")
        else:
            w = arr.weights(chip=True, scales=scales)
        bias = arr.bias.detach().clone() if arr.bias is not None else None
        return self._from_array_layout(w.detach()), bias  # w is a fresh tensor

    def get_target_weights(self, apply_weight_scaling: bool = True
                           ) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` in torch shape: the target weights (what ``set_weights`` or the
        optimizer wrote), whatever the chip holds; ``apply_weight_scaling=False`` gives them on
        the tile side (divided by the mapping scales)."""
        arr = self.analog_module
        w = arr.weights(scales="mapping" if apply_weight_scaling else "none")
        bias = arr.bias.detach().clone() if arr.bias is not None else None
        return self._from_array_layout(w), bias

    def remap_weights(self, weight_scaling_omega: float | None = 1.0) -> None:
        """Re-set the target weights so that the mapping scales follow
        ``weight_scaling_omega`` (``None``: the mapping's value); resets programming."""
        weight, bias = self.get_target_weights(apply_weight_scaling=True)
        omega = self.rpu_config.mapping.weight_scaling_omega if weight_scaling_omega is None \
            else weight_scaling_omega
        self.set_weights(weight, bias, force_exact=True, apply_weight_scaling=True,
                         weight_scaling_omega=omega)

    def reset_parameters(self) -> None:
        """Re-initialise weight and bias as the digital torch layer does."""
        if _SKIP_RESET.get():
            return
        ref = self._digital_template()
        ref.reset_parameters()
        self.set_weights(ref.weight.detach(), None if ref.bias is None else ref.bias.detach(),
                         force_exact=True)

    def _digital_template(self) -> nn.Module:
        raise NotImplementedError

    def _adopt_digital(self, module: nn.Module) -> AnalogLayerBase:
        """Take ``module``'s weights, bias and train/eval mode exactly (``from_digital``)."""
        bias = getattr(module, "bias", None)
        self.set_weights(module.weight.detach(), None if bias is None else bias.detach(),
                         force_exact=True)
        return self.train(module.training)

    def _digital_copy(self, realistic: bool) -> nn.Module:
        """The digital twin of this layer (``to_digital``): exact targets, or with
        ``realistic`` the chip's current weights with every digital output scale folded in."""
        arr = self.analog_module
        digital = self._digital_template()
        with torch.no_grad():
            w = arr.weights(chip=realistic, scales="forward" if realistic else "mapping")
            digital.weight.copy_(self._from_array_layout(w))
            if digital.bias is not None:
                digital.bias.copy_(arr.bias.detach())
        return digital.train(self.training)

    # ------------------------------------------------------------ chip
    def _check_eval(self, verb: str) -> None:
        if self.training:
            raise ModuleError(f"{type(self).__name__}.{verb}: the layer is in training mode; "
                              "call .eval() first")

    def program_analog_weights(self) -> None:
        """Program a new chip sample (eval mode only)."""
        self._check_eval("program_analog_weights")
        self.analog_module.program()

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """(Program and) drift the chip to ``t_inference`` seconds (eval mode only)."""
        self._check_eval("drift_analog_weights")
        # NaN / inf would silently zero the weights.
        t = check_t_inference(t_inference, f"{type(self).__name__}.drift_analog_weights")
        self.analog_module.drift(t)

    # ------------------------------------------------------------ tiles
    def register_analog_tile(self, tile: TileArray, name: str | None = None,
                             update_only: bool = False) -> None:
        """Attach ``tile`` as this layer's tile array (as ``name``, default ``analog_module``)."""
        if not isinstance(tile, TileArray):
            raise TypeError(f"{type(self).__name__}.register_analog_tile: expected a TileArray, "
                            f"got {type(tile).__name__}")
        name = name or "analog_module"
        if update_only and not hasattr(self, name):
            raise ModuleError(f"{type(self).__name__}: no tile array named {name!r} to update")
        setattr(self, name, tile)

    def unregister_parameter(self, param_name: str) -> None:
        """Remove a parameter from this module (not from its tile array)."""
        if param_name not in self._parameters:
            raise ModuleError(f"{type(self).__name__}: no parameter named {param_name!r}")
        del self._parameters[param_name]

    def named_analog_tiles(self) -> Iterator[tuple[str, AnalogTile]]:
        """``(name, tile)`` for every physical tile, e.g. ``analog_module.g0.i1.j0``."""
        for tile in tiles_of(self.analog_module):
            yield f"analog_module.g{tile.group}.i{tile.in_split}.j{tile.out_split}", tile

    def analog_tiles(self) -> Iterator[AnalogTile]:
        """Every physical tile of the layer."""
        for _, tile in self.named_analog_tiles():
            yield tile

    def analog_tile_count(self) -> int:
        """Number of physical tiles."""
        return self.analog_module.plan.tile_count

    def get_analog_tile_devices(self) -> list[torch.device]:
        """The device of every tile."""
        return [t.device for t in self.analog_tiles()]

    # ------------------------------------------------------------ checkpoints
    def load_state_dict(self, state_dict, strict: bool = True, load_rpu_config: bool = True,
                        strict_rpu_config_check: bool = True, assign: bool = False):
        """torch's ``load_state_dict``; ``load_rpu_config=False`` keeps this layer's config
        (the checkpoint's tile plan must match; its class too if ``strict_rpu_config_check``)."""
        arrays = [m for m in self.modules() if isinstance(m, TileArray)]
        for arr in arrays:
            arr.load_rpu_config = load_rpu_config
            arr.strict_rpu_config_check = strict_rpu_config_check
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        finally:
            for arr in arrays:
                del arr.load_rpu_config, arr.strict_rpu_config_check

    def extra_repr(self) -> str:
        p = self.analog_module.plan
        return (f"{self._digital_extra_repr()}, tiles={p.tile_count} "
                f"({p.n_in}x{p.n_out} of {p.tile_shape[0]}x{p.tile_shape[1]}), "
                f"rpu_config={type(self.rpu_config).__name__}")

    def _digital_extra_repr(self) -> str:
        return ""
