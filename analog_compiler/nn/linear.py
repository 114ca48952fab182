"""AnalogLinear: ``nn.Linear`` on analog tiles."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import FloatingPointRPUConfig, InferenceRPUConfig, TileArray, hwa
from .base import AnalogLayerBase, resolve_rpu_config, resolve_tile_class, weights_set_later


class AnalogLinear(AnalogLayerBase):
    """Linear layer whose matrix product runs on analog tiles (aihwkit's AnalogLinear API).

    The weights live in ``self.analog_module`` (a ``TileArray``); read and write them with
    ``get_weights``/``set_weights``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        for field, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {field} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        rpu_config = resolve_rpu_config(rpu_config, name)
        cls = resolve_tile_class(tile_module_class, name, rpu_config)
        self.analog_module = cls(out_features, in_features, rpu_config, bias=bias, device=device,
                                 dtype=dtype)
        self.reset_parameters()

    # layout: [out, in] <-> [1, out, in]
    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def _to_array_layout(self, weight: Tensor) -> Tensor:
        return weight.reshape(1, self.out_features, self.in_features)

    def _from_array_layout(self, weight: Tensor) -> Tensor:
        return weight.reshape(self.out_features, self.in_features)

    def _digital_template(self) -> nn.Linear:
        return nn.Linear(self.in_features, self.out_features,
                         bias=self.analog_module.bias is not None,
                         device=self.analog_module.weight.device,
                         dtype=self.analog_module.weight.dtype)

    def forward(self, x_input: Tensor) -> Tensor:
        """``[..., in_features]`` -> ``[..., out_features]``."""
        if x_input.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: input has {x_input.shape[-1]} features, "
                             f"expected {self.in_features}")
        lead = x_input.shape[:-1]
        samples = hwa.sample_kwargs(self.analog_module, lead[0] if lead else 1)
        y = self.analog_module(x_input.reshape(-1, self.in_features), **samples)
        if y._base is None and y.is_contiguous():
            # y is the op's fresh result: reshaped as aten's matmul does it (a view of a
            # temporary that autograd does not track as a view), so the layer does not return
            # a view, which FSDP2 warns about (an in-place op on it would skip its hooks)
            return torch.ops.aten._unsafe_view(y, (*lead, self.out_features))
        return y.reshape(*lead, self.out_features)

    @classmethod
    def from_digital(cls, module: nn.Linear,
                     rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                     tile_module_class: type[TileArray] | None = None) -> AnalogLinear:
        """An AnalogLinear with ``module``'s shape, weights and bias."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"AnalogLinear.from_digital expects an nn.Linear, got "
                            f"{type(module).__name__}")
        with weights_set_later():
            layer = cls(module.in_features, module.out_features, module.bias is not None,
                        rpu_config, tile_module_class, device=module.weight.device,
                        dtype=module.weight.dtype)
        return layer._adopt_digital(module)

    @classmethod
    def to_digital(cls, module: AnalogLinear, realistic: bool = False) -> nn.Linear:
        """An ``nn.Linear`` with the layer's weights: the exact targets, or with ``realistic``
        the chip's current weights with every digital output scale folded in."""
        return module._digital_copy(realistic)

    def _digital_extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.analog_module.bias is not None}")
