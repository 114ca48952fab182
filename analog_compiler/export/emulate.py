"""Pure-torch, ONNX-exportable emulation of the deterministic analog periphery.

``export_onnx(keep_quantization=True)`` replaces every analog layer by one of these modules, so
the ONNX file computes what the analog chip computes without noise, not only with its weights:

per input split ``i`` of each group (one MatMul per split, partial sums added in float):
noise management (``ABS_MAX``: alpha = max|x| of the split per vector, capped by ``nm_thres``;
``MAX``: the signed max; ``ABS_MAX_NP_SUM``: aihwkit's sum bound; ``AVERAGE_ABS_MAX``: the batch
mean of the abs-max; ``CONSTANT``: ``nm_thres``; ``NONE``: 1) -> DAC
(``Round((x * (1 / alpha)) / step) * step``, ``Clip`` to ``+-inp_bound``) -> MatMul with the
chip's (programmed / drifted) tile weights -> IR drop (two more MatMuls) -> ``SHIFT`` (the
tile's largest output to ``out_bound``) -> ADC (``Round``/``Clip`` to ``+-out_bound``) ->
``ITERATIVE`` / ``ITERATIVE_WORST_CASE`` bound management, unrolled (each extra round recomputes
the split with the input halved, or at the worst-case scale, and keeps it, per vector and output
tile, where the previous round clipped beyond the bound) -> ``* alpha`` -> digital output scales
(mapping scales, drift compensation) -> sum over splits -> bias.
Arrays trained hardware-aware also get their learned input ranges (clip to ``+-r``, divide by
``r`` before the DAC, ``r`` back at the output) and learned output scales (before the bias).

What is left out, by design: every noise source (``inp_noise``, ``out_noise``, ``w_noise``, read
noise redrawn per forward, the column noise of ``out_noise_std``) and stochastic rounding
(``*_sto_round`` become round-to-nearest-even). The analog
forward and this emulation agree to float rounding except where a rounding boundary falls between
the two sums: then they differ by one ADC step (times the vector's input scale).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.base import AnalogLayerBase
from ..nn.conv import _AnalogConvNd
from ..nn.linear import AnalogLinear
from ..runtime import BoundManagementType, IOParameters, NoiseManagementType, hwa


class EmulatedTileArray(nn.Module):
    """The noise-free periphery and MVM of one tile array: ``[N, G * in_g] -> [N, G * out_g]``.

    Built from the array's state as it is (call it on a copy that holds the chip state you want:
    see ``realistic_copy``); the weights are copied, so later programming does not change it.
    """

    def __init__(self, array: nn.Module, realistic: bool = True) -> None:
        super().__init__()
        was_training = array.training
        array.eval()
        try:
            weight = array.weights(chip=realistic, scales="none")
            scales = array.digital_scales("forward" if realistic else "mapping")
        finally:
            array.train(was_training)
        plan = array.plan
        # HWA training: learned input ranges (clip to +-r per split, scale by 1/r, r back at the
        # output) and learned output scales (times alpha, before the bias), as hwa.forward does.
        self.has_input_range = hwa.input_range_config(array) is not None
        if self.has_input_range:
            r = array.input_range.detach()
            r_rows = r.unsqueeze(-1).expand(plan.groups, plan.n_in, plan.out_features)
            scales = r_rows if scales is None else scales * r_rows
        out_alpha = array.out_scaling_alpha
        self.register_buffer("out_alpha", None if out_alpha is None
                             else out_alpha.detach().clone())
        self.groups, self.out_g, self.in_g = (int(s) for s in weight.shape)
        self.in_sizes, self.out_sizes = list(plan.in_sizes), list(plan.out_sizes)
        io: IOParameters = array.rpu_config.forward
        self.is_perfect = bool(io.is_perfect)
        self.nm_type = io.noise_management
        self.nm_thres, self.inp_bound = float(io.nm_thres), float(io.inp_bound)
        self.inp_step, self.out_step = float(io.inp_step), float(io.out_step)
        self.out_bound, self.bm_rounds = float(io.out_bound), int(io.max_bm_rounds)
        self.bm_neg = bool(io.bm_test_negative_bound)
        self.worst_case = io.bound_management is BoundManagementType.ITERATIVE_WORST_CASE \
            and self.nm_type is not NoiseManagementType.ABS_MAX_NP_SUM and self.bm_rounds > 0
        self.shift = io.bound_management is BoundManagementType.SHIFT
        self.nm_assumed_wmax, self.max_bm_res = float(io.nm_assumed_wmax), float(io.max_bm_res)
        self.ir_drop, self.ir_drop_g_ratio = float(io.ir_drop), float(io.ir_drop_g_ratio)
        start = 0
        for i, size in enumerate(self.in_sizes):
            # [G, Ti, out_g]: x_split @ w gives the split's outputs
            w_i = weight.detach()[:, :, start:start + size].transpose(1, 2).contiguous()
            self.register_buffer(f"weight_{i}", w_i.clone())
            if scales is not None:
                self.register_buffer(f"scales_{i}", scales.detach()[:, i:i + 1, :].clone())
            if self.has_input_range:
                self.register_buffer(f"range_{i}", r[:, i].reshape(-1, 1, 1).clone())
            start += size
        self.has_scales = scales is not None
        self.register_buffer("bias", None if array.bias is None else array.bias.detach().clone())

    def _alpha(self, x: Tensor, nm: NoiseManagementType) -> Tensor:
        """Noise-management input scale per vector (``[G, N, 1]``; <= 0: the output is 0)."""
        NM = NoiseManagementType
        if nm is NM.CONSTANT:
            return torch.full_like(x[..., :1], self.nm_thres)
        if nm is NM.NONE:
            return torch.ones_like(x[..., :1])
        alpha = x.amax(-1, keepdim=True) if nm is NM.MAX else x.abs().amax(-1, keepdim=True)
        if nm is NM.AVERAGE_ABS_MAX:
            return alpha.mean(1, keepdim=True).expand_as(alpha)
        if self.nm_thres > 0:
            alpha = alpha.clamp_max(self.nm_thres)
        if nm is NM.ABS_MAX_NP_SUM:  # as runtime/reference.py
            total = torch.maximum(x.clamp_min(0).sum(-1, keepdim=True),
                                  -x.clamp_max(0).sum(-1, keepdim=True))
            np_scale = total * self.nm_assumed_wmax / (self.out_bound if self.out_bound > 0
                                                       else 1.0)
            if self.inp_step > 0:
                np_scale = torch.minimum(alpha / self.inp_step * self.max_bm_res, np_scale)
            alpha = torch.maximum(alpha, np_scale)
        return alpha

    def _mvm(self, x: Tensor, w: Tensor, alpha: Tensor, red: float) -> tuple[Tensor, Tensor]:
        """One DAC -> MatMul -> ADC pass with input reduction ``red``: ``(y, clipped)``."""
        scale = alpha * red
        if self.inp_step > 0:  # as the kernels (aihwkit's arithmetic, which decides the ties)
            xs = torch.round((x * (1.0 / scale)) / self.inp_step) * self.inp_step
        else:
            xs = x / scale
        xs = xs.clamp(-self.inp_bound, self.inp_bound)
        out = torch.matmul(xs, w)
        if self.ir_drop > 0:  # aihwkit's IR drop, as runtime/reference.py
            n = x.shape[-1]
            ramp = torch.tensor([1 - (1 - j / n) ** 2 for j in range(n)], dtype=x.dtype)
            a = (n / self.ir_drop_g_ratio) * torch.matmul(xs.abs(), w.abs())
            c = a * (a * (0.05 * a - 0.2) + 0.5)
            out = out - c * (self.ir_drop * torch.matmul(xs * ramp.to(x.device), w))
        if self.shift:  # the tile's largest output to out_bound
            out = out + (self.out_bound - self._per_tile(out))
        if self.out_step > 0:
            out = torch.round(out / self.out_step) * self.out_step
        clipped = out.new_zeros(())
        if self.out_bound > 0:  # beyond (not at) the bound, as aihwkit
            hit = out > self.out_bound
            if self.bm_neg:
                hit = hit | (out < -self.out_bound)
            clipped = hit.to(out.dtype)
            out = out.clamp(-self.out_bound, self.out_bound)
        return out * scale, clipped

    def _per_tile(self, v: Tensor) -> Tensor:
        """``[G, N, out_g]`` -> the max over each tile's outputs (output split), broadcast back
        (0/1 clip flags: 1 where any output of the same tile clipped)."""
        if len(self.out_sizes) == 1:
            return v.amax(-1, keepdim=True).expand_as(v)
        parts, start = [], 0
        for size in self.out_sizes:
            part = v[..., start:start + size]
            parts.append(part.amax(-1, keepdim=True).expand_as(part))
            start += size
        return torch.cat(parts, dim=-1)

    def _split_forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.is_perfect:
            return torch.matmul(x, w)
        alpha = self._alpha(x, self.nm_type)
        zero = alpha <= 0
        alpha = torch.where(zero, torch.ones_like(alpha), alpha)
        y, clipped = self._mvm(x, w, alpha, 1.0)
        rounds = self.bm_rounds + int(self.worst_case)
        if rounds and self.out_bound > 0 and not self.shift:
            redo = self._per_tile(clipped)
            red = 1.0
            for k in range(rounds):
                if self.worst_case and k == 0:  # aihwkit's worst case: the sum bound, red 1
                    if self.nm_type is not NoiseManagementType.NONE:
                        alpha = self._alpha(x, NoiseManagementType.ABS_MAX_NP_SUM)
                        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
                else:
                    red *= 2.0
                y_new, clipped_new = self._mvm(x, w, alpha, red)
                y = torch.where(redo > 0, y_new, y)
                redo = redo * self._per_tile(clipped_new)
        return torch.where(zero, torch.zeros_like(y), y)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, G * in_g]`` -> ``[N, G * out_g]``."""
        n = x.shape[0]
        xg = x.reshape(n, self.groups, self.in_g).transpose(0, 1)  # [G, N, in_g]
        total: Tensor | None = None
        start = 0
        for i, size in enumerate(self.in_sizes):
            x_i = xg[:, :, start:start + size]
            if self.has_input_range:
                r = getattr(self, f"range_{i}")
                x_i = torch.minimum(torch.maximum(x_i, -r), r) / r
            y = self._split_forward(x_i, getattr(self, f"weight_{i}"))
            if self.has_scales:
                y = y * getattr(self, f"scales_{i}")
            total = y if total is None else total + y
            start += size
        out = total.transpose(0, 1).reshape(n, self.groups * self.out_g)
        if self.out_alpha is not None:
            out = out * self.out_alpha
        if self.bias is not None:
            out = out + self.bias
        return out


class EmulatedLinear(nn.Module):
    """``AnalogLinear`` as plain torch ops: ``[..., in] -> [..., out]``."""

    def __init__(self, layer: AnalogLinear, realistic: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.array = EmulatedTileArray(layer.analog_module, realistic)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = self.array(x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)


class EmulatedConvNd(nn.Module):
    """``AnalogConv1d/2d/3d`` as plain torch ops: padding, im2col (strided slices), the emulated
    tile array, and back to ``[N, C_out, *spatial]`` (batched inputs only)."""

    def __init__(self, layer: _AnalogConvNd, realistic: bool = True) -> None:
        super().__init__()
        self.ndim = layer._ndim
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride = layer.kernel_size, layer.stride
        self.dilation, self.pads = layer.dilation, layer._pad_amounts()
        self.pad_mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        self.array = EmulatedTileArray(layer.analog_module, realistic)

    def forward(self, x: Tensor) -> Tensor:
        n = self.ndim
        if any(self.pads):
            x = F.pad(x, self.pads, mode=self.pad_mode)
        spatial = [int(s) for s in x.shape[2:]]
        out_spatial = [(spatial[d] - self.dilation[d] * (self.kernel_size[d] - 1) - 1)
                       // self.stride[d] + 1 for d in range(n)]
        # im2col by strided slicing (exact; exports with either ONNX exporter, unlike unfold):
        # one slice per kernel offset, in the weights' (channel, kernel row-major) order.
        patches = []
        for offset in itertools.product(*(range(k) for k in self.kernel_size)):
            index: list[slice] = [slice(None), slice(None)]
            for d in range(n):
                start = offset[d] * self.dilation[d]
                stop = start + self.stride[d] * (out_spatial[d] - 1) + 1
                index.append(slice(start, stop, self.stride[d]))
            patches.append(x[tuple(index)])
        cols = torch.stack(patches, dim=2)  # [N, C, K, *out]
        perm = [0, *range(3, 3 + n), 1, 2]
        rows = cols.permute(perm).reshape(-1, self.in_channels * math.prod(self.kernel_size))
        y = self.array(rows)
        y = y.reshape(-1, *out_spatial, self.out_channels)
        return y.permute(0, n + 1, *range(1, n + 1))


def emulated_layer(layer: AnalogLayerBase, realistic: bool = True) -> nn.Module:
    """The emulation module of one analog layer (``AnalogLinear``, ``AnalogConv1d/2d/3d``)."""
    if isinstance(layer, AnalogLinear):
        return EmulatedLinear(layer, realistic).train(layer.training)
    if isinstance(layer, _AnalogConvNd):
        return EmulatedConvNd(layer, realistic).train(layer.training)
    raise ValueError(f"keep_quantization: no emulation for analog layer type "
                     f"{type(layer).__name__}; export with keep_quantization=False")


def replace_with_emulation(model: nn.Module, realistic: bool = True) -> nn.Module:
    """Replace, in place, every analog layer of ``model`` by its emulation; returns the model."""
    from ..chip import analog_layers

    if isinstance(model, AnalogLayerBase):
        return emulated_layer(model, realistic)
    for name, layer in list(analog_layers(model)):
        model.set_submodule(name, emulated_layer(layer, realistic))
    return model
