"""TrainingTileArray: a tile array trained in memory (``SingleRPUConfig``).

Beside an inference ``TileArray`` it holds the state of its resistive devices and runs all three
passes of aihwkit's analog SGD on the tiles:

- forward: ``analog::tile_forward`` with ``rpu_config.forward``;
- backward: the same op on the transposed tiles with ``rpu_config.backward`` (the error ``d``
  goes in where the input went, the input gradient comes out);
- update: ``analog::tile_update`` (pulsed, in place) with the inputs and errors the backward
  saved, when the optimizer (``AnalogSGD``) calls ``apply_update(lr)``. Autograd gives the tile
  weights no ``.grad``: a digital optimizer leaves them alone.

State (``state_dict``, tensors only, loads with ``weights_only=True``): the inference tile
array's, plus ``dev_<key>`` for each key of ``runtime.update.STATE_KEYS`` (the per-device
parameters, drawn once from ``device_seed``) and ``update_count`` (update calls so far; with
``device_seed`` it seeds each update, so a seeded run is reproducible).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from . import unit_cell
from .chip_state import new_seed
from .compounds import mixed_precision_update
from .config import SingleRPUConfig
from .config.compounds import DigitalRankUpdateRPUConfig
from .config.devices import IdealDevice
from .config.transfer import UnitCellRPUConfig
from .ops import tile_forward, tile_update
from .tile_array import TileArray
from .update import STATE_KEYS, sample_device_state

TRAINING_RPU_CONFIG_TYPES = (SingleRPUConfig, DigitalRankUpdateRPUConfig, UnitCellRPUConfig)
"""The configs of training tiles."""

#: ``id(weight parameter) -> weakref(array)`` of the arrays that ran a training forward.
_ARRAYS: dict[int, weakref.ref] = {}


def training_array_of(param: Tensor) -> TrainingTileArray | None:
    """The training tile array whose ``weight`` is ``param`` (once it ran a training forward),
    else None."""
    ref = _ARRAYS.get(id(param))
    arr = ref() if ref is not None else None
    if arr is None or arr.weight is not param:
        _ARRAYS.pop(id(param), None)
        return None
    return arr


class _TrainingTileFunction(torch.autograd.Function):
    """Forward, analog backward, and the hand-over of ``(x, d)`` to the array's update."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None,
                arr: TrainingTileArray) -> Tensor:
        ctx.arr = arr
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        y, _ = tile_forward(x, weight, None, bias, new_seed(), list(arr.plan.in_sizes),
                            list(arr.plan.out_sizes), arr.kernel_io, False)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        arr: TrainingTileArray = ctx.arr
        d = grad_y.contiguous()
        gx = None
        if ctx.needs_input_grad[0]:
            gx = arr.backward_pass(d, weight)
        if ctx.needs_input_grad[1]:
            arr._pending.append((x.detach(), d.detach()))
        gb = d.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, None, gb, None


class TrainingTileArray(TileArray):
    """The tiles of one layer, trained in memory (``SingleRPUConfig``: pulsed updates;
    ``DigitalRankUpdateRPUConfig``: mixed precision, with the digital ``mp_chi`` matrix and the
    next transfer row ``mp_row`` in the state as well)."""

    def __init__(self, out_features: int, in_features: int,
                 rpu_config: SingleRPUConfig | DigitalRankUpdateRPUConfig, bias: bool = True,
                 groups: int = 1, device: Any = None, dtype: torch.dtype | None = None) -> None:
        if not isinstance(rpu_config, TRAINING_RPU_CONFIG_TYPES):
            raise TypeError("TrainingTileArray: rpu_config must be a SingleRPUConfig, "
                            "DigitalRankUpdateRPUConfig or UnitCellRPUConfig, "
                            f"got {type(rpu_config).__name__}")
        super().__init__(out_features, in_features, rpu_config, bias=bias, groups=groups,
                         device=device, dtype=dtype)
        kw = {"device": self.weight.device, "dtype": self.weight.dtype}
        for key in STATE_KEYS:
            self.register_buffer("dev_" + key, torch.zeros(self.weight.shape, **kw))
        self.register_buffer("device_seed", torch.zeros((), dtype=torch.int64))
        self.register_buffer("update_count", torch.zeros((), dtype=torch.int64))
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._sync_compound_state()
        self.sample_devices()

    # ------------------------------------------------------------------ config
    @property
    def rpu_config(self) -> SingleRPUConfig:
        """The training tile config."""
        return self._rpu_config

    @rpu_config.setter
    def rpu_config(self, value: Any) -> None:
        self._rpu_config = value
        self._io_cache = {}

    @property
    def pulsed_device(self) -> Any:
        """The device config of the analog devices (the compound's device for mixed
        precision)."""
        dev = self.rpu_config.device
        return dev.device if isinstance(self.rpu_config, DigitalRankUpdateRPUConfig) else dev

    @property
    def is_unit_cell(self) -> bool:
        """Whether the config is a ``UnitCellRPUConfig`` (two device arrays per weight)."""
        return isinstance(self.rpu_config, UnitCellRPUConfig)

    def _sync_compound_state(self) -> None:
        """Register (or drop) the mixed-precision or unit-cell state the config needs."""
        if self.is_unit_cell:
            unit_cell.check_simulated(self.rpu_config)
            if not unit_cell.registered(self):
                unit_cell.register(self)
        elif "tc_weights" in self._buffers:
            unit_cell.unregister(self)
            kw = {"device": self.weight.device, "dtype": self.weight.dtype}
            for key in STATE_KEYS:
                self.register_buffer("dev_" + key, torch.zeros(self.weight.shape, **kw))
        if isinstance(self.rpu_config, DigitalRankUpdateRPUConfig):
            if "mp_chi" not in self._buffers:
                self.register_buffer("mp_chi", torch.zeros_like(self.weight.detach()))
                self.register_buffer("mp_row", torch.zeros((), dtype=torch.int64))
        else:
            self._buffers.pop("mp_chi", None)
            self._buffers.pop("mp_row", None)

    def device_state(self) -> list[Tensor]:
        """The per-device parameter tensors in ``STATE_KEYS`` order."""
        return [getattr(self, "dev_" + key) for key in STATE_KEYS]

    @torch.no_grad()
    def sample_devices(self, seed: int | None = None) -> None:
        """Draw the per-device parameters (device-to-device variation) from ``seed`` (default:
        the device config's ``construction_seed``, or a fresh seed from torch's generator when
        that is 0), and clip the weights into the new bounds."""
        if self.is_unit_cell:
            cfg = self.rpu_config.device
            if seed is None:
                seed = (cfg.construction_seed or cfg.unit_cell_devices[0].construction_seed
                        or int(new_seed()))
            self.device_seed.fill_(int(seed))
            unit_cell.sample(self, int(seed))
            unit_cell.set_weights(self)
            return
        dev = self.pulsed_device
        if seed is None:
            seed = dev.construction_seed or int(new_seed())
        self.device_seed.fill_(int(seed))
        state = sample_device_state(dev, tuple(self.weight.shape), int(seed), self.weight.dtype,
                                    self.weight.device)
        for key, value in state.items():
            getattr(self, "dev_" + key).copy_(value)
        self.clip_to_bounds()

    @torch.no_grad()
    def clip_to_bounds(self) -> None:
        """Clip the tile weights into each device's ``[min_bound, max_bound]``."""
        if self.is_unit_cell:
            unit_cell.clip(self)
        elif not isinstance(self.pulsed_device, IdealDevice):
            self.weight.copy_(torch.minimum(torch.maximum(self.weight, self.dev_min_bound),
                                            self.dev_max_bound))

    def set_logical_weights(self, weight: Tensor, omega: float | None = None,
                            apply_weight_scaling: bool = True) -> None:
        """Store the weights (as ``TileArray`` does), clipped into the device bounds: a device
        cannot hold a conductance outside its range."""
        super().set_logical_weights(weight, omega, apply_weight_scaling)
        if self.is_unit_cell:
            unit_cell.set_weights(self)
        else:
            self.clip_to_bounds()

    def apply_rpu_config(self, rpu_config: Any) -> None:
        """Adopt a new training config (e.g. from a checkpoint; the device state tensors
        load afterwards)."""
        if not isinstance(rpu_config, TRAINING_RPU_CONFIG_TYPES):
            raise TypeError("TrainingTileArray: a checkpoint's rpu_config must be a "
                            "SingleRPUConfig, DigitalRankUpdateRPUConfig or UnitCellRPUConfig, "
                            f"got {type(rpu_config).__name__}")
        super().apply_rpu_config(rpu_config)
        self._sync_compound_state()

    # ------------------------------------------------------------------ passes
    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, G * in_g]`` -> ``[N, G * out_g]``; with gradients the backward runs on
        the tiles and records the update."""
        if not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return super().forward(x)
        key = id(self.weight)
        if key not in _ARRAYS:  # what AnalogSGD finds
            _ARRAYS[key] = weakref.ref(self, lambda _ref, k=key: _ARRAYS.pop(k, None))
        return _TrainingTileFunction.apply(x, self.weight, self.bias, self)

    def backward_pass(self, d: Tensor, weight: Tensor | None = None) -> Tensor:
        """The input gradient of the error ``d [N, G * out_g]``: the transposed tiles' forward
        with ``rpu_config.backward``."""
        w = (self.weight if weight is None else weight).detach()
        gx, _ = tile_forward(d, w.transpose(1, 2).contiguous(), None, None, new_seed(),
                             list(self.plan.out_sizes), list(self.plan.in_sizes),
                             self.packed_io("backward"), False)
        return gx

    @property
    def has_pending_update(self) -> bool:
        """Whether a backward recorded inputs and errors that ``apply_update`` has not used."""
        return bool(self._pending)

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float) -> None:
        """Pulsed update of ``W -= lr * d^T x`` for the batch ``x [N, G * in_g]``,
        ``d [N, G * out_g]`` (aihwkit's ``tile.update``)."""
        plan = self.plan
        n_in, n_out = plan.groups * plan.in_features, plan.groups * plan.out_features
        if x.dim() != 2 or x.shape[1] != n_in:
            raise ValueError(f"TrainingTileArray.update: x must be [N, {n_in}], "
                             f"got {list(x.shape)}")
        if d.dim() != 2 or tuple(d.shape) != (x.shape[0], n_out):
            raise ValueError(f"TrainingTileArray.update: d must be [{x.shape[0]}, {n_out}], "
                             f"got {list(d.shape)}")
        seed = (int(self.device_seed) * 1_000_003 + int(self.update_count) + 1) % 2**62
        if self.is_unit_cell:
            unit_cell.update(self, x, d, float(lr), seed)
        elif isinstance(self.rpu_config, DigitalRankUpdateRPUConfig):
            gen = torch.Generator(device=self.weight.device).manual_seed(seed)
            state = dict(zip(STATE_KEYS, self.device_state()))
            row = mixed_precision_update(self.weight, self.mp_chi, state, x, d, float(lr),
                                         self.rpu_config.device, int(self.update_count) + 1,
                                         int(self.mp_row), gen)
            self.mp_row.fill_(row)
        else:
            tile_update(self.weight, self.device_state(), x, d, float(lr),
                        torch.tensor(seed, dtype=torch.int64), plan, self.rpu_config.device,
                        self.rpu_config.update)
        self.update_count += 1

    def apply_update(self, lr: float) -> None:
        """Apply (and forget) every update the backward passes recorded since the last call."""
        pending, self._pending = self._pending, []
        for x, d in pending:
            self.update(x, d, lr)

    def discard_update(self) -> None:
        """Forget the updates recorded by backward passes (``AnalogSGD.zero_grad``)."""
        self._pending.clear()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, device={type(self.rpu_config.device).__name__}"
