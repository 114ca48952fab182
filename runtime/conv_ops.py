"""``analog::tile_conv2d``: an analog 2-D convolution with no im2col buffer.

``tile_conv2d(x, ..., padding, ...)`` is, by definition, ``analog::tile_forward`` over the rows of
``analog::im2col2d`` of ``x`` zero-padded by ``padding`` (one input vector per output position),
reshaped to ``[N, C_out, H_out, W_out]``. The reference kernel below is exactly that composition.
The C++ kernel gathers each receptive field straight from the image (zeros in the padding) into
the tile's DAC buffer, so neither the padded image nor the rows (``C_in * kh * kw`` values per
output position, 9x the input for a 3x3 kernel) go through memory. Its random keys are
tile_forward's: the same noise, and the same values up to the float summation order of the
matrix products.

The autograd formula recomputes the clip mask with ``tile_forward`` on the rows (same seed, so
the same noise and the same clipped outputs) rather than storing it: the op serves inference,
and training keeps the rows path, which saves the mask in the forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import im2col, ops  # ops also defines analog::tile_forward, used below

_lib = torch.library.Library("analog", "FRAGMENT")
_IO_ARGS = ("is_perfect, int nm_type, float nm_thres, float inp_bound, float inp_step, "
            "bool inp_sto_round, float inp_noise, float out_bound, float out_step, "
            "bool out_sto_round, float out_noise, int w_noise_type, float w_noise, "
            "int bm_rounds")
_lib.define("tile_conv2d(Tensor x, Tensor weight, Tensor? out_scales, Tensor? bias, Tensor seed, "
            "int[] kernel, int[] dilation, int[] stride, int[] padding, int[] in_sizes, "
            "int[] out_sizes, bool "
            + _IO_ARGS + ") -> Tensor")
#: Names of the periphery arguments, in schema order (the keys of ``kernel_io``).
IO_NAMES = ("is_perfect", "nm_type", "nm_thres", "inp_bound", "inp_step", "inp_sto_round",
            "inp_noise", "out_bound", "out_step", "out_sto_round", "out_noise", "w_noise_type",
            "w_noise", "bm_rounds")


def _out_hw(x: Tensor, kernel: list[int], dilation: list[int], stride: list[int],
            padding: list[int] = (0, 0)) -> list[int]:
    return [(x.shape[2 + d] + 2 * padding[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
            for d in range(2)]


def _padded(x: Tensor, padding: list[int]) -> Tensor:
    if not any(padding):
        return x
    return F.pad(x, [padding[1], padding[1], padding[0], padding[0]])


def conv2d_via_rows(rows_forward: Callable[[Tensor], Tensor], x: Tensor, kernel: list[int],
                    dilation: list[int], stride: list[int], padding: list[int]) -> Tensor:
    """``tile_conv2d``'s definition with any rows forward: zero-pad ``x``, im2col,
    ``rows_forward`` (``[N * H_out * W_out, C * kh * kw]`` -> ``[., C_out]``), back to
    ``[N, C_out, H_out, W_out]``."""
    xp = _padded(x, padding)
    y = rows_forward(torch.ops.analog.im2col2d(xp, kernel, dilation, stride))
    ho, wo = _out_hw(xp, kernel, dilation, stride)
    return y.view(x.shape[0], ho, wo, y.shape[1]).permute(0, 3, 1, 2).contiguous()


def tile_conv2d_reference(x: Tensor, weight: Tensor, out_scales: Tensor | None,
                          bias: Tensor | None, seed: Tensor, kernel: list[int],
                          dilation: list[int], stride: list[int], padding: list[int],
                          in_sizes: list[int], out_sizes: list[int], *io_args) -> Tensor:
    """Reference kernel of ``analog::tile_conv2d``: tile_forward over the im2col rows."""
    return conv2d_via_rows(
        lambda rows: torch.ops.analog.tile_forward(rows, weight, out_scales, bias, seed, in_sizes,
                                                   out_sizes, *io_args, False)[0],
        x, kernel, dilation, stride, padding)


_lib.impl("tile_conv2d", tile_conv2d_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::tile_conv2d")
def _tile_conv2d_fake(x, weight, out_scales, bias, seed, kernel, dilation, stride, padding,
                      in_sizes, out_sizes, *io_args):
    ho, wo = _out_hw(x, kernel, dilation, stride, padding)
    return x.new_empty((x.shape[0], weight.shape[0] * weight.shape[1], ho, wo))


def _setup_context(ctx, inputs, output):
    x, weight, out_scales, bias, seed, kernel, dilation, stride, padding = inputs[:9]
    ctx.geometry = (list(kernel), list(dilation), list(stride))
    ctx.padding = list(padding)
    ctx.sizes = (list(inputs[9]), list(inputs[10]))
    ctx.io_args = tuple(inputs[11:])
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, out_scales, bias, seed)


def _backward(ctx, grad):
    x, weight, out_scales, bias, seed = ctx.saved_tensors
    kernel, dilation, stride = ctx.geometry
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx = gw = gb = None
    if need_x or need_w:
        xp = _padded(x.detach(), ctx.padding)
        rows = im2col.im2col2d(xp, kernel, dilation, stride)
        _, mask = torch.ops.analog.tile_forward(rows, weight.detach(), out_scales, bias, seed,
                                                *ctx.sizes, *ctx.io_args, True)
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
    return (gx, gw, None, gb) + (None,) * (7 + len(IO_NAMES))


torch.library.register_autograd("analog::tile_conv2d", _backward, setup_context=_setup_context)


def tile_conv2d(x: Tensor, weight: Tensor, out_scales: Tensor | None, bias: Tensor | None,
                seed: Tensor, kernel: list[int], dilation: list[int], stride: list[int],
                padding: list[int], in_sizes: list[int], out_sizes: list[int],
                io: dict) -> Tensor:
    """Call ``analog::tile_conv2d`` with the kernel arguments of ``io`` (see
    ``runtime.tile_array.kernel_io``); ``padding`` is zero padding ``[ph, pw]``."""
    args = (x, weight, out_scales, bias, seed, list(kernel), list(dilation), list(stride),
            list(padding), list(in_sizes), list(out_sizes), *(io[k] for k in IO_NAMES))
    with ops.dispatch_scope(False, x, weight, out_scales, bias):
        return torch.ops.analog.tile_conv2d(*args)

