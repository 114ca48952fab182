"""``analog::im2col2d``: the rows an analog 2-D convolution feeds to its tiles.

``x`` ``[N, C, H, W]`` (already padded) -> ``[N * H_out * W_out, C * kh * kw]``, one row per
output position, columns channel-major then kernel position (the layout of the tile weights).
The reference kernel below (strided views, one copy) defines it; the C++ library registers a
faster CPU kernel (a strided copy through torch's generic copy is dominated by its 3-long inner
loops). The backward is ``F.fold`` (col2im). (Schema, fake kernel and autograd: ``ops.py``,
``op_autograd.py``.)
"""

from __future__ import annotations

from torch import Tensor


def out_size(size: int, k: int, d: int, s: int) -> int:
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
