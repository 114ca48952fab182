"""``analog::im2col2d``: the rows an analog 2-D convolution feeds to its tiles.

``x`` ``[N, C, H, W]`` (already padded) -> ``[N * H_out * W_out, C * kh * kw]``, one row per
output position, columns channel-major then kernel position (the layout of the tile weights).
The reference kernel below (strided views, one copy) defines it; the C++ library registers a
faster CPU kernel (a strided copy through torch's generic copy is dominated by its 3-long inner
loops). The backward is ``F.fold`` (col2im).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_lib = torch.library.Library("analog", "FRAGMENT")
_lib.define("im2col2d(Tensor x, int[] kernel, int[] dilation, int[] stride) -> Tensor")


def _out_size(size: int, k: int, d: int, s: int) -> int:
    return (size - d * (k - 1) - 1) // s + 1


def im2col2d_reference(x: Tensor, kernel: list[int], dilation: list[int],
                       stride: list[int]) -> Tensor:
    """Reference kernel of ``analog::im2col2d``."""
    n, c = x.shape[:2]
    src = x
    for d in range(2):
        span = dilation[d] * (kernel[d] - 1) + 1
        x = x.unfold(2 + d, span, stride[d])
        if dilation[d] > 1:
            x = x[..., :: dilation[d]]
    rows = x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel[0] * kernel[1])
    if rows.untyped_storage().data_ptr() == src.untyped_storage().data_ptr():
        rows = rows.clone()  # an op's output must not alias its input (1x1 kernels)
    return rows


_lib.impl("im2col2d", im2col2d_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::im2col2d")
def _im2col2d_fake(x, kernel, dilation, stride):
    n, c, h, w = x.shape
    ho = _out_size(h, kernel[0], dilation[0], stride[0])
    wo = _out_size(w, kernel[1], dilation[1], stride[1])
    return x.new_empty((n * ho * wo, c * kernel[0] * kernel[1]))


def _setup_context(ctx, inputs, output):
    x, kernel, dilation, stride = inputs
    ctx.shape = tuple(x.shape)
    ctx.args = (list(kernel), list(dilation), list(stride))


def _backward(ctx, grad):
    n, c, h, w = ctx.shape
    kernel, dilation, stride = ctx.args
    cols = grad.reshape(n, -1, c * kernel[0] * kernel[1]).transpose(1, 2)
    gx = F.fold(cols, (h, w), kernel, dilation=dilation, stride=stride)
    return gx, None, None, None


torch.library.register_autograd("analog::im2col2d", _backward, setup_context=_setup_context)


def im2col2d(x: Tensor, kernel: list[int], dilation: list[int], stride: list[int]) -> Tensor:
    """Rows ``[N * H_out * W_out, C * kh * kw]`` of a padded ``[N, C, H, W]`` input."""
    return torch.ops.analog.im2col2d(x, list(kernel), list(dilation), list(stride))
