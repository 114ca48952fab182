"""``analog::tile_conv2d``'s definition and reference kernel: an analog 2-D convolution.

``tile_conv2d(x, ..., padding, ...)`` is, by definition, ``analog::tile_forward`` over the rows of
``analog::im2col2d`` of ``x`` zero-padded by ``padding`` (one input vector per output position),
reshaped to ``[N, C_out, H_out, W_out]``. The reference kernel below is exactly that composition.
The C++ kernel gathers each receptive field straight from the image (zeros in the padding) into
the tile's DAC buffer, so neither the padded image nor the rows (``C_in * kh * kw`` values per
output position, 9x the input for a 3x3 kernel) go through memory. Its random keys are
tile_forward's: the same noise, and the same values up to the float summation order of the
matrix products. (Schema, fake kernel and autograd: ``ops.py``, ``op_autograd.py``.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def out_hw(x: Tensor, kernel: list[int], dilation: list[int], stride: list[int],
            padding: list[int] = (0, 0)) -> list[int]:
    return [(x.shape[2 + d] + 2 * padding[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
            for d in range(2)]


def padded(x: Tensor, padding: list[int]) -> Tensor:
    if not any(padding):
        return x
    return F.pad(x, [padding[1], padding[1], padding[0], padding[0]])


def conv2d_via_rows(rows_forward: Callable[[Tensor], Tensor], x: Tensor, kernel: list[int],
                    dilation: list[int], stride: list[int], padding: list[int]) -> Tensor:
    """``tile_conv2d``'s definition with any rows forward: zero-pad ``x``, im2col,
    ``rows_forward`` (``[N * H_out * W_out, C * kh * kw]`` -> ``[., C_out]``), back to
    ``[N, C_out, H_out, W_out]``."""
    xp = padded(x, padding)
    y = rows_forward(torch.ops.analog.im2col2d(xp, kernel, dilation, stride))
    ho, wo = out_hw(xp, kernel, dilation, stride)
    return y.view(x.shape[0], ho, wo, y.shape[1]).permute(0, 3, 1, 2).contiguous()


def tile_conv2d_reference(x: Tensor, weight: Tensor, out_scales: Tensor | None,
                          bias: Tensor | None, seed: Tensor, kernel: list[int],
                          dilation: list[int], stride: list[int], padding: list[int],
                          in_sizes: list[int], out_sizes: list[int], io_f: list[float],
                          io_i: list[int]) -> Tensor:
    """Reference kernel of ``analog::tile_conv2d``: tile_forward over the im2col rows."""
    return conv2d_via_rows(
        lambda rows: torch.ops.analog.tile_forward(rows, weight, out_scales, bias, seed, in_sizes,
                                                   out_sizes, io_f, io_i, False)[0],
        x, kernel, dilation, stride, padding)
