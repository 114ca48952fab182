"""The ``analog`` op library: every op's schema, and its reference, fake and autograd kernels,
registered here and nowhere else; then the compiled kernels are loaded, once.

The schemas live in Python, so the ops exist without the compiled library; the C++/CUDA library
(``analog_compiler._C``) only registers faster CPU/CUDA kernels for the same schemas, which the
dispatcher prefers over the ``CompositeExplicitAutograd`` reference kernels. The forward ops take
the periphery packed by ``runtime/periphery.py`` (``float[] io_f, int[] io_i``).

Where the kernels are: the reference kernels in ``reference.py`` (tile forward and backward),
``conv_ops.py``, ``im2col.py`` and ``chip_ops.py``; the fake kernels and autograd formulas in
``op_autograd.py``; the C++ kernels in ``csrc/``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from . import (
    _ext,
    agad,
    chip_codec,
    chip_ops,
    conv_ops,
    im2col,
    op_autograd,
    reference,
    transfer,
    update_ops,
)
from .config.noise import PCMLikeNoiseModel
from .config.noise_base import NoiseModel
from .config.transfer import DynamicTransferCompound
from .periphery import KernelIO
from .tiling import TilePlan

_IO = "float[] io_f, int[] io_i"
_TILE = "Tensor x, Tensor weight, Tensor? out_scales, Tensor? bias, Tensor seed"
#: Every op of the ``analog`` namespace: name -> (schema, reference kernel).
SCHEMAS: dict[str, str] = {
    "tile_forward": f"({_TILE}, int[] in_sizes, int[] out_sizes, {_IO}, bool need_mask) "
                    "-> (Tensor, Tensor)",
    "tile_backward": "(Tensor grad_y, Tensor x, Tensor weight, Tensor? out_scales, Tensor? mask, "
                     "int[] in_sizes, int[] out_sizes, bool need_input_grad, "
                     "bool need_weight_grad) -> (Tensor, Tensor)",
    "tile_conv2d": f"({_TILE}, int[] kernel, int[] dilation, int[] stride, int[] padding, "
                   f"int[] in_sizes, int[] out_sizes, {_IO}) -> Tensor",
    "tile_readout": f"(Tensor weight, Tensor seed, int[] out_sizes, {_IO}) -> Tensor",
    "tile_readout_mean": f"(Tensor weight, Tensor seed, int[] out_sizes, {_IO}) -> Tensor",
    "im2col2d": "(Tensor x, int[] kernel, int[] dilation, int[] stride) -> Tensor",
    "pcm_chip": "(Tensor weight, int[] in_sizes, int[] out_sizes, Tensor seed, "
                "float t_inference, bool read_noise, Tensor read_seed, float g_max, "
                "float[] prog_coeff, float t_read, float t_0, float prog_noise_scale, "
                "float read_noise_scale, float drift_scale) -> Tensor",
    "device_chip": "(Tensor weight, int[] in_sizes, int[] out_sizes, Tensor seed, "
                   "float t_inference, bool read_noise, Tensor read_seed, int model_kind, "
                   "float[] model_params, int converter_kind, float[] converter_params) -> Tensor",
    # the pulsed update of training tiles (in place; arguments: runtime/update_ops.py)
    "tile_update": "(Tensor(a!) weight, Tensor[] state, Tensor x, Tensor d, float lr, "
                   "Tensor seed, int[] in_sizes, int[] out_sizes, int device_kind, "
                   "float[] device_params, int pulse_type, float[] update_params) -> ()",
    # the c-TTv2 update of a unit-cell tile array (in place; arguments: runtime/transfer.py)
    "transfer_update": "(Tensor(a!) fast, Tensor(b!) slow, Tensor(c!) buffer, "
                       "Tensor(d!) in_chop, Tensor(e!) out_chop, Tensor(f!) tile_state, "
                       "Tensor[] fast_state, Tensor[] slow_state, Tensor x, Tensor d, float lr, "
                       "Tensor seed, int counter, int[] in_sizes, int[] out_sizes, "
                       "int fast_kind, float[] fast_params, int slow_kind, float[] slow_params, "
                       "int pulse_type, float[] update_params, int t_pulse_type, "
                       f"float[] t_update_params, {_IO}, float[] transfer_params) -> ()",
    # the AGAD update of a unit-cell tile array (in place; arguments: runtime/agad.py)
    "agad_update": "(Tensor(a!) fast, Tensor(b!) slow, Tensor(c!) buffer, Tensor(d!) mean, "
                   "Tensor(e!) past, Tensor(f!) switched, Tensor(g!) in_chop, Tensor out_chop, "
                   "Tensor(h!) tile_state, Tensor[] fast_state, Tensor[] slow_state, Tensor x, "
                   "Tensor d, float lr, Tensor seed, int counter, int[] in_sizes, "
                   "int[] out_sizes, int fast_kind, float[] fast_params, int slow_kind, "
                   "float[] slow_params, int pulse_type, float[] update_params, "
                   f"int t_pulse_type, float[] t_update_params, {_IO}, "
                   "float[] transfer_params, float[] agad_params) -> ()",
}
_REFERENCE = {
    "tile_forward": reference.tile_forward, "tile_backward": reference.tile_backward,
    "tile_conv2d": conv_ops.tile_conv2d_reference, "tile_readout": reference.tile_readout,
    "tile_readout_mean": reference.tile_readout_mean,
    "im2col2d": im2col.im2col2d_reference,
    "pcm_chip": chip_ops.pcm_chip_reference, "device_chip": chip_ops.device_chip_reference,
    "tile_update": update_ops.tile_update_reference,
    "transfer_update": transfer.transfer_update_reference,
    "agad_update": agad.agad_update_reference,
}

_lib = torch.library.Library("analog", "FRAGMENT")
for _name, _schema in SCHEMAS.items():
    _lib.define(_name + _schema)
    _lib.impl(_name, _REFERENCE[_name], "CompositeExplicitAutograd")
    op_autograd.register(_name)

_ext.load()  # the compiled kernels register for the schemas above (once, after a layout check)


# ----------------------------------------------------------------------------- call wrappers
def dispatch_scope(need_mask: bool, *tensors: Tensor | None) -> AbstractContextManager:
    """Where to call an ``analog`` op on ``tensors``: below autograd when there is nothing to
    differentiate (skipping the Python autograd kernel's checks and redispatch, tens of
    microseconds, most of a batch-1 layer's overhead), else as usual. Traced code always takes
    the usual call, whose dispatch the compiler resolves at trace time."""
    if (need_mask or torch.compiler.is_compiling()
            or (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                for t in tensors))):
        return nullcontext()
    return torch._C._AutoDispatchBelowAutograd()


def tile_forward(x: Tensor, weight: Tensor, out_scales: Tensor | None, bias: Tensor | None,
                 seed: Tensor, in_sizes: list[int], out_sizes: list[int], io: KernelIO,
                 need_mask: bool) -> tuple[Tensor, Tensor]:
    """``analog::tile_forward`` with the packed periphery ``io`` (``periphery.kernel_io``)."""
    with dispatch_scope(need_mask, x, weight, out_scales, bias):
        return torch.ops.analog.tile_forward(x, weight, out_scales, bias, seed, in_sizes,
                                             out_sizes, io.io_f, io.io_i, need_mask)


def tile_conv2d(x: Tensor, weight: Tensor, out_scales: Tensor | None, bias: Tensor | None,
                seed: Tensor, kernel: list[int], dilation: list[int], stride: list[int],
                padding: list[int], in_sizes: list[int], out_sizes: list[int],
                io: KernelIO) -> Tensor:
    """``analog::tile_conv2d`` with the packed periphery ``io``; ``padding`` is zero padding
    ``[ph, pw]``."""
    args = (x, weight, out_scales, bias, seed, list(kernel), list(dilation), list(stride),
            list(padding), list(in_sizes), list(out_sizes), io.io_f, io.io_i)
    with dispatch_scope(False, x, weight, out_scales, bias):
        return torch.ops.analog.tile_conv2d(*args)


def tile_readout(weight: Tensor, seed: Tensor, out_sizes: list[int], io: KernelIO) -> Tensor:
    """``analog::tile_readout``: the analog forward of the identity through one input split
    (``[in_g, G * out_g]``, row ``k`` is what input ``k`` driven alone reads out)."""
    with dispatch_scope(False, weight):
        return torch.ops.analog.tile_readout(weight, seed, list(out_sizes), io.io_f, io.io_i)


def tile_readout_mean(weight: Tensor, seed: Tensor, out_sizes: list[int],
                      io: KernelIO) -> Tensor:
    """``analog::tile_readout_mean``: the mean ``|y|`` per output (``[G * out_g]``) of
    ``tile_readout``, without the readout itself (drift compensation's readout)."""
    with dispatch_scope(False, weight):
        return torch.ops.analog.tile_readout_mean(weight, seed, list(out_sizes), io.io_f,
                                                  io.io_i)


def im2col2d(x: Tensor, kernel: list[int], dilation: list[int], stride: list[int]) -> Tensor:
    """Rows ``[N * H_out * W_out, C * kh * kw]`` of a padded ``[N, C, H, W]`` input."""
    return torch.ops.analog.im2col2d(x, list(kernel), list(dilation), list(stride))


def pcm_chip(weight: Tensor, plan: TilePlan, model: NoiseModel, seed: int | Tensor,
             t_inference: float, read_seed: Tensor | None = None) -> Tensor:
    """Weights of the chip (``weight``, ``seed``) of ``model`` read at ``t_inference`` s;
    ``read_seed`` ``None`` reads without read noise (the programmed / drifted conductances
    only). ``PCMLikeNoiseModel`` runs ``analog::pcm_chip``, every other model of the noise
    family ``analog::device_chip``."""
    model.check_time(float(t_inference))
    seed_t = torch.as_tensor(int(seed), dtype=torch.int64)
    read = read_seed is not None
    rs = read_seed if read else torch.zeros((), dtype=torch.int64)
    args = (weight.detach(), list(plan.in_sizes), list(plan.out_sizes), seed_t,
            float(t_inference), read, rs)
    if type(model) is PCMLikeNoiseModel:
        return torch.ops.analog.pcm_chip(*args, **chip_ops.model_args(model))
    return torch.ops.analog.device_chip(*args, *chip_codec.encode(model, float(t_inference)))


def tile_update(weight: Tensor, state: list[Tensor], x: Tensor, d: Tensor, lr: float,
                seed: Tensor, plan: TilePlan, device: update_ops.DeviceConfig,
                update: update_ops.UpdateParameters, granularity: float | None = None) -> None:
    """Apply the pulsed update of the batch ``x [N, G*in_g]``, ``d [N, G*out_g]`` with learning
    rate ``lr`` to ``weight [G, out_g, in_g]`` in place (``analog::tile_update``; ``state``: the
    per-device tensors in ``runtime.update.STATE_KEYS`` order; ``granularity``: BL management's
    weight granularity, default the device's ``weight_granularity``)."""
    kind, dev_params = update_ops.encode_device(device, granularity)
    pulse_type, up_params = update_ops.encode_update(update)
    with torch.no_grad():
        torch.ops.analog.tile_update(weight, state, x.contiguous(), d.contiguous(), float(lr),
                                     seed, list(plan.in_sizes), list(plan.out_sizes), kind,
                                     dev_params, pulse_type, up_params)


def _transfer_args(arr: Any) -> tuple:
    """The encoded config arguments of ``arr``'s transfer op (c-TTv2's; AGAD's add
    ``agad_params``), cached on ``arr`` until a config changes."""
    rc = arr.rpu_config
    cfg = rc.device
    fast, slow = cfg.unit_cell_devices
    parts = (cfg, rc.update, cfg.transfer_update, cfg.transfer_forward, fast, slow)
    key = tuple(p.revision for p in parts)  # revisions are unique: any change re-encodes
    hit = arr._io_cache.get("transfer")
    if hit is None or hit[0] != key:
        io_f, io_i = transfer.quiet_io(cfg)
        args = (*update_ops.encode_device(fast), *update_ops.encode_device(slow),
                *update_ops.encode_update(rc.update), *update_ops.encode_update(
                    cfg.transfer_update), list(io_f), list(io_i), transfer.encode_transfer(cfg))
        if isinstance(cfg, DynamicTransferCompound):
            args = (*args, agad.encode_agad(cfg))
        hit = arr._io_cache["transfer"] = (key, args)
    return hit[1]


def transfer_update(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """The c-TTv2 update (``analog::transfer_update``) of the unit-cell tile array ``arr``
    (``runtime/unit_cell.py`` names its buffers) for the batch ``x``, ``d``, in place."""
    states = [getattr(arr, "dev_" + name) for name in update_ops.STATE_KEYS]
    with torch.no_grad():
        torch.ops.analog.transfer_update(
            arr.tc_weights[0], arr.tc_weights[1], arr.tc_buffer, arr.tc_in_chop,
            arr.tc_out_chop, arr.tc_tile, [s[0] for s in states], [s[1] for s in states],
            x.contiguous(), d.contiguous(), float(lr), torch.tensor(int(seed)),
            int(arr.tc_vectors), list(arr.plan.in_sizes), list(arr.plan.out_sizes),
            *_transfer_args(arr))


def agad_update(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """The AGAD update (``analog::agad_update``) of the unit-cell tile array ``arr`` (its
    buffers: ``runtime/unit_cell.py``, ``runtime/agad.py``) for the batch ``x``, ``d``, in
    place."""
    states = [getattr(arr, "dev_" + name) for name in update_ops.STATE_KEYS]
    with torch.no_grad():
        torch.ops.analog.agad_update(
            arr.tc_weights[0], arr.tc_weights[1], arr.tc_buffer, arr.tc_mean, arr.tc_past,
            arr.tc_switched, arr.tc_in_chop, arr.tc_out_chop, arr.tc_tile,
            [s[0] for s in states], [s[1] for s in states], x.contiguous(), d.contiguous(),
            float(lr), torch.tensor(int(seed)), int(arr.tc_vectors), list(arr.plan.in_sizes),
            list(arr.plan.out_sizes), *_transfer_args(arr))
