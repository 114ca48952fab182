"""Kernel arguments and reference kernel of ``analog::tile_update`` (the pulsed update of a
training tile array, in place; schema and call wrapper in ``runtime/ops.py``)::

    tile_update(Tensor(a!) weight, Tensor[] state, Tensor x, Tensor d, float lr, Tensor seed,
                int[] in_sizes, int[] out_sizes, int device_kind, float[] device_params,
                int pulse_type, float[] update_params) -> ()

``state`` are the per-device tensors in ``runtime.update.STATE_KEYS`` order. The device and the
update configs travel as numbers (``encode_device`` / ``encode_update``; the kernels' table):

- ``device_kind``: the index in ``DEVICE_KINDS``;
- ``device_params``: ``granularity, dw_min_std, mult_noise, A_up, A_down, gamma_up, gamma_down, a,
  b, dw_min_std_add, dw_min_std_slope`` then the piecewise nodes (up, then down); the first is
  the device's ``weight_granularity`` (aihwkit's ``calcWeightGranularity``, the ``dw_min`` of BL
  and update management), so the decoded config's ``dw_min`` is that granularity (the step
  sizes themselves are in ``state``);
- ``pulse_type``: the index in ``list(PulseType)``;
- ``update_params``: ``desired_bl, fixed_bl, update_bl_management, update_management,
  um_grad_scale, res, sto_round, x_res_implicit, d_res_implicit``.

The reference kernel (``tile_update_reference`` over ``runtime.update.pulsed_update``) defines
the semantics and is registered for every backend (``CompositeExplicitAutograd``);
``csrc/tile_update.cpp`` is the fused CPU kernel.
"""

from __future__ import annotations

from torch import Tensor

from .config.devices import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PiecewiseStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
)
from .config.update import PulseType, UpdateParameters
from .tiling import TilePlan
from .update import STATE_KEYS, pulsed_update

DeviceConfig = IdealDevice | PulsedDevice
"""A device config of ``analog::tile_update``."""

DEVICE_KINDS = (IdealDevice, ConstantStepDevice, LinearStepDevice, SoftBoundsDevice,
                ExpStepDevice, PowStepDevice, PiecewiseStepDevice)
"""Kernel codes of the device models (a plain ``PulsedDevice`` is the constant step)."""
_N_FIXED = 11
_UPDATE_FIELDS = ("desired_bl", "fixed_bl", "update_bl_management", "update_management",
                  "um_grad_scale", "res", "sto_round", "x_res_implicit", "d_res_implicit")


def encode_device(device: DeviceConfig,
                  granularity: float | None = None) -> tuple[int, list[float]]:
    """``(device_kind, device_params)`` of a device config; ``granularity`` overrides the
    device's ``weight_granularity`` (a compound's, e.g. ``OneSidedUnitCell``)."""
    # presets are subclasses of the device models: the model decides the kernel
    kind = next((k for k, cls in enumerate(DEVICE_KINDS) if isinstance(device, cls)), 1)
    if isinstance(device, IdealDevice):
        return kind, [0.0] * _N_FIXED
    exp = device if isinstance(device, ExpStepDevice) else ExpStepDevice()
    gran = device.weight_granularity if granularity is None else float(granularity)
    params = [gran, device.dw_min_std, float(getattr(device, "mult_noise", True)),
              exp.A_up, exp.A_down, exp.gamma_up, exp.gamma_down, exp.a, exp.b,
              exp.dw_min_std_add, exp.dw_min_std_slope]
    if isinstance(device, PiecewiseStepDevice):
        params += [float(v) for v in device.piecewise_up + device.piecewise_down]
    return kind, [float(v) for v in params]


def decode_device(kind: int, params: list[float]) -> DeviceConfig:
    """The device config the kernels see (only the fields the update uses; ``dw_min`` is the
    encoded weight granularity)."""
    cls = DEVICE_KINDS[kind]
    if cls is IdealDevice:
        return IdealDevice()
    kw = dict(dw_min=params[0], dw_min_std=params[1])
    if cls in (LinearStepDevice, SoftBoundsDevice):
        kw["mult_noise"] = bool(params[2])
    if cls is ExpStepDevice:
        kw.update(zip(("A_up", "A_down", "gamma_up", "gamma_down", "a", "b", "dw_min_std_add",
                       "dw_min_std_slope"), params[3:_N_FIXED]))
    if cls is PiecewiseStepDevice:
        nodes = list(params[_N_FIXED:])
        half = len(nodes) // 2
        kw.update(piecewise_up=nodes[:half], piecewise_down=nodes[half:])
    return cls(**kw)


def encode_update(update: UpdateParameters) -> tuple[int, list[float]]:
    """``(pulse_type, update_params)`` of an update config."""
    return (list(PulseType).index(update.pulse_type),
            [float(getattr(update, name)) for name in _UPDATE_FIELDS])


def decode_update(pulse_type: int, params: list[float]) -> UpdateParameters:
    """The update config the kernels see."""
    kw = dict(zip(_UPDATE_FIELDS, params))
    for name in ("fixed_bl", "update_bl_management", "update_management", "sto_round"):
        kw[name] = bool(kw[name])
    kw["desired_bl"] = int(kw["desired_bl"])
    return UpdateParameters(pulse_type=list(PulseType)[pulse_type], **kw)


def _tiles(groups: int, in_sizes: list[int], out_sizes: list[int]) -> list[tuple]:
    rows = [slice(o, o + s) for o, s in zip(TilePlan.offsets(tuple(out_sizes)), out_sizes)]
    cols = [slice(o, o + s) for o, s in zip(TilePlan.offsets(tuple(in_sizes)), in_sizes)]
    return [(g, rows[j], cols[i]) for g in range(groups) for i in range(len(in_sizes))
            for j in range(len(out_sizes))]


def tile_update_reference(weight: Tensor, state: list[Tensor], x: Tensor, d: Tensor, lr: float,
                           seed: Tensor, in_sizes: list[int], out_sizes: list[int],
                           device_kind: int, device_params: list[float], pulse_type: int,
                           update_params: list[float]) -> None:
    """Reference kernel of ``analog::tile_update``: ``weight`` updated in place."""
    tiles = _tiles(weight.shape[0], list(in_sizes), list(out_sizes))
    device = decode_device(device_kind, list(device_params))
    update = decode_update(pulse_type, list(update_params))
    new = pulsed_update(weight, dict(zip(STATE_KEYS, state)), x.to(weight.dtype),
                        d.to(weight.dtype), float(lr), device, update, tiles, int(seed))
    weight.copy_(new)
