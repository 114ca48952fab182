"""AnalogConv1d/2d/3d: convolutions as im2col + analog tile matrix products.

Each output position's receptive field (``C_in / groups * prod(kernel)`` values) is one input
vector of the tiles, as in aihwkit. Grouped and depthwise convolutions map every group onto its
own tiles (``TileArray(groups=...)``). Non-zero padding modes are applied digitally before the
tiles (``reflect``, ``replicate``, ``circular``).

Inference of 1-D (as height-1 2-D) and 2-D convolutions runs ``analog::tile_conv2d``, which
gathers the fields inside the tile kernel (zero padding included); training, HWA and 3-D
convolutions feed the tiles the im2col rows. Both give the same numbers for the same seed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import FloatingPointRPUConfig, InferenceRPUConfig, TileArray, hwa
from .base import AnalogLayerBase, resolve_rpu_config, resolve_tile_class, weights_set_later

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value: Any, n: int, field: str, layer: str) -> tuple[int, ...]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(vals) != n or any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
        raise ValueError(f"{layer}: {field} must be an int or {n} ints, got {value!r}")
    return vals


class _AnalogConvNd(AnalogLayerBase):
    """Shared implementation; subclasses fix the number of spatial dimensions."""

    _ndim: int = 2
    _digital_cls: type[nn.Module] = nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros",
                 rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name, n = type(self).__name__, self._ndim
        for field, value in (("in_channels", in_channels), ("out_channels", out_channels),
                             ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {field} must be a positive integer, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode {padding_mode!r} cannot be mapped; "
                             f"expected one of {', '.join(PADDING_MODES)}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(kernel_size, n, "kernel_size", name)
        self.stride = _ntuple(stride, n, "stride", name)
        self.dilation = _ntuple(dilation, n, "dilation", name)
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be >= 1")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding {padding!r} must be 'same', 'valid' or ints")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' needs stride 1, got {self.stride}")
            self.padding: Any = padding
        else:
            self.padding = _ntuple(padding, n, "padding", name)
            if min(self.padding) < 0:
                raise ValueError(f"{name}: padding must be >= 0, got {padding!r}")
        self.padding_mode = padding_mode
        rpu_config = resolve_rpu_config(rpu_config, name)
        cls = resolve_tile_class(tile_module_class, name, rpu_config)
        in_g = in_channels // groups * math.prod(self.kernel_size)
        self.analog_module = cls(out_channels // groups, in_g, rpu_config, bias=bias,
                                 groups=groups, device=device, dtype=dtype)
        self.reset_parameters()

    # ------------------------------------------------------------ layout
    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _to_array_layout(self, weight: Tensor) -> Tensor:
        return weight.reshape(self.groups, self.out_channels // self.groups, -1)

    def _from_array_layout(self, weight: Tensor) -> Tensor:
        return weight.reshape(self._weight_shape())

    def _digital_template(self) -> nn.Module:
        w = self.analog_module.weight
        return self._digital_cls(self.in_channels, self.out_channels, self.kernel_size,
                                 self.stride, self.padding, self.dilation, self.groups,
                                 self.analog_module.bias is not None, self.padding_mode,
                                 device=w.device, dtype=w.dtype)

    # ------------------------------------------------------------ forward
    def _pad_amounts(self) -> list[int]:
        """``F.pad`` amounts (last dimension first)."""
        if self.padding == "valid":
            return [0] * (2 * self._ndim)
        amounts: list[int] = []
        for d in reversed(range(self._ndim)):
            if self.padding == "same":
                total = self.dilation[d] * (self.kernel_size[d] - 1)
                amounts += [total // 2, total - total // 2]
            else:
                amounts += [self.padding[d], self.padding[d]]
        return amounts

    def forward(self, x_input: Tensor) -> Tensor:
        """``[N, C_in, *spatial]`` (or unbatched) -> ``[N, C_out, *spatial_out]``."""
        n = self._ndim
        unbatched = x_input.dim() == n + 1
        x = x_input.unsqueeze(0) if unbatched else x_input
        if x.dim() != n + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected input [N, {self.in_channels}, "
                             f"{n} spatial dims], got shape {tuple(x_input.shape)}")
        pads = self._pad_amounts()
        inner = [0, 0]  # symmetric zero padding the 2-D tile kernel applies while gathering
        if n <= 2 and self.padding_mode == "zeros" and pads[0::2] == pads[1::2]:
            inner, pads = ([pads[2], pads[0]] if n == 2 else [0, pads[0]]), [0] * (2 * n)
        if any(pads):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pads, mode=mode)
        if n <= 2:  # receptive fields gathered inside the tile kernel (analog::tile_conv2d);
            # a 1-D convolution is a 2-D one over a height-1 image (same weight layout)
            one = (1,) if n == 1 else ()
            y = self.analog_module.conv2d(x.unsqueeze(2) if n == 1 else x,
                                          list(one + self.kernel_size),
                                          list(one + self.dilation), list(one + self.stride),
                                          inner)
            y = y.squeeze(2) if n == 1 else y
            return y.squeeze(0) if unbatched else y
        for d in range(n):
            span = self.dilation[d] * (self.kernel_size[d] - 1) + 1
            x = x.unfold(2 + d, span, self.stride[d])
            if self.dilation[d] > 1:
                x = x[..., :: self.dilation[d]]
        # x: [N, C, *out_spatial, *kernel] -> rows [N * L, C * K] (channel-major like weights)
        batch, out_spatial = x.shape[0], x.shape[2:2 + n]
        perm = [0, *range(2, 2 + n), 1, *range(2 + n, 2 + 2 * n)]
        rows = x.permute(perm).reshape(-1, self.in_channels * math.prod(self.kernel_size))
        y = self.analog_module(rows, **hwa.sample_kwargs(self.analog_module, batch))
        y = y.view(batch, *out_spatial, self.out_channels)
        y = y.permute(0, n + 1, *range(1, n + 1)).contiguous()
        return y.squeeze(0) if unbatched else y

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_digital(cls, module: nn.Module,
                     rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                     tile_module_class: type[TileArray] | None = None) -> _AnalogConvNd:
        """An analog convolution with ``module``'s hyper-parameters, weights and bias."""
        if not isinstance(module, cls._digital_cls):
            raise TypeError(f"{cls.__name__}.from_digital expects an "
                            f"{cls._digital_cls.__name__}, got {type(module).__name__}")
        with weights_set_later():
            layer = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                        module.padding, module.dilation, module.groups, module.bias is not None,
                        module.padding_mode, rpu_config, tile_module_class,
                        device=module.weight.device, dtype=module.weight.dtype)
        return layer._adopt_digital(module)

    @classmethod
    def to_digital(cls, module: _AnalogConvNd, realistic: bool = False) -> nn.Module:
        """The digital convolution with the layer's weights (see ``AnalogLinear.to_digital``)."""
        return module._digital_copy(realistic)

    def _digital_extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", bias={self.analog_module.bias is not None}"


class AnalogConv1d(_AnalogConvNd):
    """``nn.Conv1d`` on analog tiles."""

    _ndim, _digital_cls = 1, nn.Conv1d


class AnalogConv2d(_AnalogConvNd):
    """``nn.Conv2d`` on analog tiles."""

    _ndim, _digital_cls = 2, nn.Conv2d


class AnalogConv3d(_AnalogConvNd):
    """``nn.Conv3d`` on analog tiles."""

    _ndim, _digital_cls = 3, nn.Conv3d
