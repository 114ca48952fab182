"""TrainingTileArray: a tile array trained in memory (``SingleRPUConfig``).

Beside an inference ``TileArray`` it holds the state of its resistive devices and runs all three
passes of aihwkit's analog SGD on the tiles:

- forward: ``analog::tile_forward`` with ``rpu_config.forward``;
- backward: the same op on the transposed tiles with ``rpu_config.backward`` (the error ``d``
  goes in where the input went, the input gradient comes out);
- update: ``analog::tile_update`` (pulsed, in place) with the inputs and errors the backward
  saved, when the optimizer (``AnalogSGD``) calls ``apply_update(lr)``. Autograd gives the tile
  weights no ``.grad``: a digital optimizer leaves them alone.

Weight scaling (``mapping.weight_scaling_omega > 0``, aihwkit's ``TileWithPeriphery``): the tile
weights are the logical weights divided by the mapping scales ``alpha`` (per tile, or per tile
row with ``weight_scaling_columnwise``); the forward multiplies each tile's output by ``alpha``,
the backward feeds ``alpha * d`` into each tile, and the update writes ``d / alpha``, so the
logical weights change by ``-lr d^T x`` as without scaling. Where the input splits of a row
have different scales, backward and update run split by split (``UnitCellRPUConfig`` needs one
input split). Learned output scales (``learn_out_scaling``) multiply the output before the
digital bias and are trained by the digital optimizer, as in aihwkit.

State (``state_dict``, tensors only, loads with ``weights_only=True``): the inference tile
array's, plus ``dev_<key>`` for each key of ``runtime.update.STATE_KEYS`` (the per-device
parameters, drawn once from ``device_seed``) and ``update_count`` (update calls so far; with
``device_seed`` it seeds each update, so a seeded run is reproducible).
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
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
        y, _ = tile_forward(x, weight, arr.digital_scales("mapping"), bias, new_seed(),
                            list(arr.plan.in_sizes), list(arr.plan.out_sizes), arr.kernel_io,
                            False)
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
        self._check_scaling(rpu_config)
        kw = {"device": self.weight.device, "dtype": self.weight.dtype}
        for key in STATE_KEYS:
            self.register_buffer("dev_" + key, torch.zeros(self.weight.shape, **kw))
        self.register_buffer("device_seed", torch.zeros((), dtype=torch.int64))
        self.register_buffer("update_count", torch.zeros((), dtype=torch.int64))
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._sync_compound_state()
        self.sample_devices()

    def _apply(self, fn: Any, recurse: bool = True) -> TrainingTileArray:
        # `model.float()` / `.half()` must not cast the transfer counters and running maxima
        # (the kernels keep them in float64): they follow the device move only.
        kept = {n: b for n, b in self._buffers.items() if n in unit_cell.FLOAT64_BUFFERS
                and b is not None}
        super()._apply(fn, recurse)
        for name, old in kept.items():
            moved = self._buffers[name]
            if moved is not None and moved.dtype != torch.float64:
                self._buffers[name] = old.to(device=moved.device)
        return self

    # ------------------------------------------------------------------ config
    @property
    def rpu_config(self) -> SingleRPUConfig:
        """The training tile config."""
        return self._rpu_config

    @rpu_config.setter
    def rpu_config(self, value: Any) -> None:
        self._rpu_config = value
        self._io_cache = {}

    def _check_scaling(self, rpu_config: Any) -> None:
        if (isinstance(rpu_config, UnitCellRPUConfig) and self.plan.n_in > 1
                and rpu_config.mapping.weight_scaling_omega > 0):
            raise ValueError("TrainingTileArray: UnitCellRPUConfig.mapping.weight_scaling_omega"
                             " > 0 needs one tile over the inputs (mapping.max_input_size >= "
                             f"{self.plan.in_features}, or 0)")

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
        self._check_scaling(rpu_config)
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
        alpha = self.out_scaling_alpha  # learned output scales: before the digital bias
        y = _TrainingTileFunction.apply(x, self.weight, self.bias if alpha is None else None,
                                        self)
        if alpha is not None:
            y = y * alpha
            if self.bias is not None:
                y = y + self.bias
        return y

    def _split_scales(self) -> list[tuple[slice | None, Tensor | None]]:
        """``(columns, row scales [G * out_g])`` per input split with its own mapping scales:
        one ``(None, scales)`` entry when every split has the same (or no) scales."""
        scales = self.digital_scales("mapping")
        if scales is None:
            return [(None, None)]
        if bool((scales == scales[:, :1]).all()):
            return [(None, scales[:, 0].reshape(-1))]
        offsets = self.plan.offsets(self.plan.in_sizes)
        return [(slice(o, o + n), scales[:, i].reshape(-1))
                for i, (o, n) in enumerate(zip(offsets, self.plan.in_sizes))]

    def backward_pass(self, d: Tensor, weight: Tensor | None = None) -> Tensor:
        """The input gradient of the error ``d [N, G * out_g]``: the transposed tiles' forward
        with ``rpu_config.backward`` (of ``alpha * d`` with weight scaling)."""
        w = (self.weight if weight is None else weight).detach()
        plan = self.plan
        io = self.packed_io("backward")
        splits = self._split_scales()
        if splits[0][0] is None:
            alpha = splits[0][1]
            gx, _ = tile_forward(d if alpha is None else d * alpha, w.transpose(1, 2).contiguous(),
                                 None, None, new_seed(), list(plan.out_sizes),
                                 list(plan.in_sizes), io, False)
            return gx
        n, g = d.shape[0], plan.groups
        gx = d.new_empty(n, g, plan.in_features)
        for cols, alpha in splits:
            part, _ = tile_forward(d * alpha, w[:, :, cols].transpose(1, 2).contiguous(), None,
                                   None, new_seed(), list(plan.out_sizes),
                                   [cols.stop - cols.start], io, False)
            gx[:, :, cols] = part.view(n, g, -1)
        return gx.view(n, -1)

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
        splits = self._split_scales()
        if splits[0][0] is None:
            alpha = splits[0][1]
            self._update_part(None, x, d if alpha is None else d / alpha, float(lr), seed)
        elif self.is_unit_cell:
            raise ValueError("TrainingTileArray.update: a UnitCellRPUConfig needs the same "
                             "mapping scales on every input split (one tile over the inputs)")
        else:  # each input split with its own scales (aihwkit: one tile each)
            xg = x.view(x.shape[0], plan.groups, plan.in_features)
            row = int(self.mp_row) if "mp_row" in self._buffers else 0
            for i, (cols, alpha) in enumerate(splits):
                xi = xg[:, :, cols].reshape(x.shape[0], -1)
                nxt = self._update_part(cols, xi, d / alpha, float(lr),
                                        (seed + 7919 * i) % 2**62, row)
            if "mp_row" in self._buffers:
                self.mp_row.fill_(nxt)
        self.update_count += 1

    def _update_part(self, cols: slice | None, x: Tensor, d: Tensor, lr: float, seed: int,
                     row: int | None = None) -> int:
        """The update of the input columns ``cols`` (None: all) for ``x``, ``d``; returns the
        next mixed-precision transfer row."""
        if self.is_unit_cell:
            unit_cell.update(self, x, d, lr, seed)
            return 0
        mp = isinstance(self.rpu_config, DigitalRankUpdateRPUConfig)
        full = cols is None
        cols = slice(None) if full else cols
        w = self.weight if full else self.weight[:, :, cols].contiguous()
        state = [s if full else s[:, :, cols].contiguous() for s in self.device_state()]
        if mp:
            chi = self.mp_chi if full else self.mp_chi[:, :, cols].contiguous()
            gen = torch.Generator(device=self.weight.device).manual_seed(seed)
            nxt = mixed_precision_update(w, chi, dict(zip(STATE_KEYS, state)), x, d, lr,
                                         self.rpu_config.device, int(self.update_count) + 1,
                                         int(self.mp_row) if row is None else row, gen)
            if full:
                self.mp_row.fill_(nxt)
            else:
                self.mp_chi[:, :, cols] = chi
        else:
            nxt = 0
            plan = self.plan if full else SimpleNamespace(
                in_sizes=(w.shape[2],), out_sizes=tuple(self.plan.out_sizes))
            tile_update(w, state, x, d, lr, torch.tensor(seed, dtype=torch.int64), plan,
                        self.rpu_config.device, self.rpu_config.update)
        if not full:
            with torch.no_grad():
                self.weight[:, :, cols] = w
        return nxt

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
