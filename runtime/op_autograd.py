"""Fake (meta) kernels and autograd formulas of the ``analog`` ops, registered by ``ops.py``.

The fake kernels give shapes and dtypes for tracing (``torch.compile``, ``opcheck``). The
gradients are straight-through: ``tile_forward``'s and ``tile_conv2d``'s call
``analog::tile_backward`` with the clip mask (outputs that stayed clipped after bound
management pass no gradient); ``tile_conv2d`` recomputes the mask with ``tile_forward`` on the
im2col rows (same seed, so the same noise and the same clipped outputs) rather than storing it:
the op serves inference, and training keeps the rows path, which saves the mask in the forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .conv_ops import out_hw, padded
from .im2col import out_size


def _nones(ctx: Any, grads: tuple) -> tuple:
    """``grads`` for the leading inputs, None for the rest of the op's inputs."""
    return grads + (None,) * (len(ctx.needs_input_grad) - len(grads))


# ------------------------------------------------------------------------- fake kernels
def _tile_forward_fake(x, weight, out_scales, bias, seed, in_sizes, out_sizes, io_f, io_i,
                       need_mask):
    groups, out_g, _ = weight.shape
    y = x.new_empty((x.shape[0], groups * out_g))
    if need_mask:
        mask = x.new_empty((groups, len(in_sizes), x.shape[0], out_g), dtype=torch.bool)
    else:
        mask = x.new_empty((0,), dtype=torch.bool)
    return y, mask


def _tile_backward_fake(grad_y, x, weight, out_scales, mask, in_sizes, out_sizes,
                        need_input_grad, need_weight_grad):
    gx = torch.empty_like(x) if need_input_grad else x.new_empty((0,))
    gw = torch.empty_like(weight) if need_weight_grad else x.new_empty((0,))
    return gx, gw


def _tile_conv2d_fake(x, weight, out_scales, bias, seed, kernel, dilation, stride, padding,
                      in_sizes, out_sizes, io_f, io_i):
    ho, wo = out_hw(x, kernel, dilation, stride, padding)
    return x.new_empty((x.shape[0], weight.shape[0] * weight.shape[1], ho, wo))


def _tile_readout_fake(weight, seed, out_sizes, io_f, io_i):
    return weight.new_empty((weight.shape[2], weight.shape[0] * weight.shape[1]))


def _tile_readout_mean_fake(weight, seed, out_sizes, io_f, io_i):
    return weight.new_empty((weight.shape[0] * weight.shape[1],))


def _im2col2d_fake(x, kernel, dilation, stride):
    n, c, h, w = x.shape
    ho = out_size(h, kernel[0], dilation[0], stride[0])
    wo = out_size(w, kernel[1], dilation[1], stride[1])
    return x.new_empty((n * ho * wo, c * kernel[0] * kernel[1]))


def _tile_update_fake(weight, state, x, d, lr, seed, in_sizes, out_sizes, device_kind,
                      device_params, pulse_type, update_params):
    return None


def _transfer_update_fake(*args):
    return None


def _agad_update_fake(*args):
    return None


def _pcm_chip_fake(weight, *args):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------- tile_forward
def _tile_forward_setup(ctx, inputs, output):
    x, weight, out_scales, bias, _seed, in_sizes, out_sizes = inputs[:7]
    _, mask = output
    ctx.in_sizes, ctx.out_sizes = list(in_sizes), list(out_sizes)
    ctx.has_bias = bias is not None
    ctx.use_mask = mask.numel() > 0
    ctx.save_for_backward(x, weight, out_scales, mask if ctx.use_mask else None)


def _tile_forward_backward(ctx, grad_y, _grad_mask):
    x, weight, out_scales, mask = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx = gw = None
    if need_x or need_w:
        gx_, gw_ = torch.ops.analog.tile_backward(
            grad_y.contiguous(), x, weight, out_scales, mask, ctx.in_sizes, ctx.out_sizes,
            need_x, need_w)
        gx = gx_ if need_x else None
        gw = gw_ if need_w else None
    gb = grad_y.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
    return _nones(ctx, (gx, gw, None, gb))


# ------------------------------------------------------------------------- tile_conv2d
def _tile_conv2d_setup(ctx, inputs, output):
    x, weight, out_scales, bias, seed, kernel, dilation, stride, padding = inputs[:9]
    ctx.geometry = (list(kernel), list(dilation), list(stride))
    ctx.padding = list(padding)
    ctx.sizes = (list(inputs[9]), list(inputs[10]))
    ctx.io = (list(inputs[11]), list(inputs[12]))
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, out_scales, bias, seed)


def _tile_conv2d_backward(ctx, grad):
    x, weight, out_scales, bias, seed = ctx.saved_tensors
    kernel, dilation, stride = ctx.geometry
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx = gw = gb = None
    if need_x or need_w:
        xp = padded(x.detach(), ctx.padding)
        rows = torch.ops.analog.im2col2d(xp, kernel, dilation, stride)
        _, mask = torch.ops.analog.tile_forward(rows, weight.detach(), out_scales, bias, seed,
                                                *ctx.sizes, *ctx.io, True)
        grad_rows = grad.permute(0, 2, 3, 1).reshape(rows.shape[0], -1).contiguous()
        g_rows, g_w = torch.ops.analog.tile_backward(grad_rows, rows, weight, out_scales, mask,
                                                     *ctx.sizes, need_x, need_w)
        if need_x:
            cols = g_rows.reshape(x.shape[0], -1, rows.shape[1]).transpose(1, 2)
            gx = F.fold(cols, tuple(xp.shape[2:]), kernel, dilation=dilation, stride=stride)
            ph, pw = ctx.padding
            gx = gx[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
        gw = g_w if need_w else None
    if ctx.has_bias and ctx.needs_input_grad[3]:
        gb = grad.sum((0, 2, 3))
    return _nones(ctx, (gx, gw, None, gb))


# ------------------------------------------------------------------------- im2col2d
def _im2col2d_setup(ctx, inputs, output):
    x, kernel, dilation, stride = inputs
    ctx.shape = tuple(x.shape)
    ctx.args = (list(kernel), list(dilation), list(stride))


def _im2col2d_backward(ctx, grad):
    n, c, h, w = ctx.shape
    kernel, dilation, stride = ctx.args
    cols = grad.reshape(n, -1, c * kernel[0] * kernel[1]).transpose(1, 2)
    gx = F.fold(cols, (h, w), kernel, dilation=dilation, stride=stride)
    return _nones(ctx, (gx,))


# ------------------------------------------------------------------------- registration
_FAKES: dict[str, Callable[..., Any]] = {
    "tile_forward": _tile_forward_fake, "tile_backward": _tile_backward_fake,
    "tile_conv2d": _tile_conv2d_fake, "tile_readout": _tile_readout_fake,
    "tile_readout_mean": _tile_readout_mean_fake,
    "im2col2d": _im2col2d_fake, "pcm_chip": _pcm_chip_fake, "device_chip": _pcm_chip_fake,
    "tile_update": _tile_update_fake,
    "transfer_update": _transfer_update_fake,
    "agad_update": _agad_update_fake,
}
_AUTOGRAD: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "tile_forward": (_tile_forward_backward, _tile_forward_setup),
    "tile_conv2d": (_tile_conv2d_backward, _tile_conv2d_setup),
    "im2col2d": (_im2col2d_backward, _im2col2d_setup),
}


def register(name: str) -> None:
    """Register the fake kernel and (where the op is differentiable) the autograd formula of
    ``analog::<name>`` (called by ``ops.py`` right after it defines the schema)."""
    torch.library.register_fake(f"analog::{name}", _FAKES[name])
    if name in _AUTOGRAD:
        backward, setup = _AUTOGRAD[name]
        torch.library.register_autograd(f"analog::{name}", backward, setup_context=setup)

