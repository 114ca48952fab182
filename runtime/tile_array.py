"""TileArray: the state and forward of all crossbar tiles of one (grouped) weight matrix.

State (all in ``state_dict``, tensors only):
- ``weight`` ``[G, out_g, in_g]``: the target tile weights (the logical weights divided by the
  mapping scales); the parameter that training updates.
- ``bias`` ``[G * out_g]``: the digital bias, added once after the tiles.
- ``mapping_scales`` ``[G, n_in, out_g]``: digital output scales of weight scaling (omega).
- ``current_weight``: the weights the chip holds now (programmed, drifted, read), or empty while
  the array is not programmed.
- ``program_seed``, ``t_inference``: the chip sample and its drift time (``-1`` = unprogrammed).
- ``drift_baseline``, ``drift_alpha`` ``[G, n_in, out_g]``: drift-compensation readout at
  programming time and the current compensation factors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import hwa
from .config import FloatingPointRPUConfig, InferenceRPUConfig
from .conv_ops import conv2d_via_rows
from .errors import ModuleError
from .ops import pcm_chip, tile_conv2d, tile_forward
from .periphery import KernelIO, kernel_io
from .programming import expand_row_values, per_row_absmax, per_tile_absmax
from .tiling import TilePlan


def new_seed() -> Tensor:
    """A fresh kernel seed from torch's default generator (so ``torch.manual_seed`` reproduces)."""
    return torch.randint(0, 2**62, (), dtype=torch.int64)


class TileArray(nn.Module):
    """All tiles of one layer: ``groups`` independent ``out_g x in_g`` matrices, each cut into an
    ``n_in x n_out`` grid of tiles as ``rpu_config.mapping`` prescribes."""

    def __init__(self, out_features: int, in_features: int,
                 rpu_config: InferenceRPUConfig | FloatingPointRPUConfig, bias: bool = True,
                 groups: int = 1, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(rpu_config, (InferenceRPUConfig, FloatingPointRPUConfig)):
            raise TypeError("rpu_config must be an InferenceRPUConfig or FloatingPointRPUConfig, "
                            f"got {type(rpu_config).__name__}")
        mp = rpu_config.mapping
        self.plan = TilePlan.build(in_features, out_features, mp.max_input_size,
                                   mp.max_output_size, groups)
        self.rpu_config = rpu_config
        kw = {"device": device, "dtype": dtype}
        g, n_in = groups, self.plan.n_in
        self.weight = nn.Parameter(torch.zeros(g, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.zeros(g * out_features, **kw)) if bias else None
        self.register_buffer("mapping_scales", torch.ones(g, n_in, out_features, **kw))
        self.register_buffer("current_weight", torch.empty(0, **kw))
        self.register_buffer("program_seed", torch.zeros((), dtype=torch.int64))
        self.register_buffer("t_inference", torch.full((), -1.0, dtype=torch.float64))
        self.register_buffer("drift_baseline", torch.ones(g, n_in, out_features, **kw))
        self.register_buffer("drift_alpha", torch.ones(g, n_in, out_features, **kw))
        # Set when a write scaled the weights with an explicit omega while the mapping's is 0.
        self._scaled = False
        hwa.sync_hwa_parameters(self)  # HWA training: input_range, out_scaling_alpha

    # ------------------------------------------------------------------ config
    @property
    def rpu_config(self) -> InferenceRPUConfig | FloatingPointRPUConfig:
        """The tile config; assigning a new one re-derives the kernel arguments."""
        return self._rpu_config

    @rpu_config.setter
    def rpu_config(self, value: InferenceRPUConfig | FloatingPointRPUConfig) -> None:
        self._rpu_config = value
        self._io_cache: tuple[int, KernelIO] | None = None

    @property
    def _io(self) -> KernelIO:
        """The kernel arguments of ``rpu_config.forward``, re-derived when it changed (fields
        assigned after construction, or a new ``forward`` object)."""
        io = self._rpu_config.forward
        cache = self._io_cache
        if cache is None or cache[0] != io.revision:
            cache = self._io_cache = (io.revision, kernel_io(io))
        return cache[1]

    @property
    def is_programmed(self) -> bool:
        """Whether the array holds programmed (chip) weights."""
        return self.current_weight.numel() > 0

    @property
    def uses_mapping_scales(self) -> bool:
        """Whether ``mapping_scales`` differ from 1 (weight scaling with omega > 0)."""
        return (self.rpu_config.mapping.weight_scaling_omega > 0 or self._scaled
                or hwa.remap_enabled(self))

    # ------------------------------------------------------------------ forward
    def output_scales(self) -> Tensor | None:
        """Per tile-row digital output scales of the current state, or None when all are 1."""
        scales = self.mapping_scales if self.uses_mapping_scales else None
        if not self.training and self.is_programmed and self.rpu_config.drift_compensation:
            scales = self.drift_alpha if scales is None else scales * self.drift_alpha
        return scales

    def active_weight(self) -> Tensor:
        """The weights the forward uses: the chip's in eval once programmed, else the targets."""
        if not self.training and self.is_programmed:
            return self.current_weight
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, G * in_g]`` -> ``[N, G * out_g]``."""
        if hwa.hwa_active(self):  # HWA training: modifier, input range, learned out scales
            return hwa.hwa_forward(self, x, new_seed())
        weight = self.active_weight()
        need_mask = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        y, _ = tile_forward(x, weight, self.output_scales(), self.bias, new_seed(),
                            list(self.plan.in_sizes), list(self.plan.out_sizes), self._io,
                            need_mask)
        return y

    def conv2d(self, x: Tensor, kernel: list[int], dilation: list[int], stride: list[int],
               padding: list[int]) -> Tensor:
        """Analog 2-D convolution of ``[N, C, H, W]`` zero-padded by ``padding`` -> ``[N, G *
        out_g, H_out, W_out]``: every receptive field is one input vector of the tiles.
        Inference gathers the fields inside the kernel (``analog::tile_conv2d``); training and
        HWA go through the im2col rows and ``forward``, whose autograd keeps the clip mask of
        the forward, and so does a tile array with forward hooks (they see the rows, as for
        every other layer: report's vector counts, input-range calibration)."""
        weight = self.active_weight()
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        hooked = bool(self._forward_pre_hooks or self._forward_hooks
                      or nn.modules.module._global_forward_pre_hooks
                      or nn.modules.module._global_forward_hooks)
        if needs_grad or hooked or hwa.hwa_active(self):
            return conv2d_via_rows(self, x, kernel, dilation, stride, padding)
        return tile_conv2d(x, weight, self.output_scales(), self.bias, new_seed(), kernel,
                           dilation, stride, padding, list(self.plan.in_sizes),
                           list(self.plan.out_sizes), self._io)

    # ------------------------------------------------------------------ weights
    def set_logical_weights(self, weight: Tensor, omega: float | None = None,
                            apply_weight_scaling: bool = True) -> None:
        """Store logical weights ``[G, out_g, in_g]``; with weight scaling (``omega > 0``) the
        tiles get ``W / alpha`` and ``mapping_scales`` get ``alpha``. Resets programming."""
        mp = self.rpu_config.mapping
        omega = mp.weight_scaling_omega if omega is None else float(omega)
        w = weight.detach().to(self.weight.device, self.weight.dtype)
        with torch.no_grad():
            if apply_weight_scaling and omega > 0:
                if mp.weight_scaling_columnwise:
                    alpha = per_row_absmax(w, self.plan)
                else:
                    tiles = per_tile_absmax(w, self.plan)  # [G, n_in*n_out]
                    tiles = tiles.view(-1, self.plan.n_in, self.plan.n_out)
                    alpha = tiles[:, :, self.plan.out_index.to(w.device)]
                alpha = alpha / omega
                alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
                self.mapping_scales.copy_(alpha)
                self.weight.copy_(w / expand_row_values(alpha, self.plan))
                self._scaled = True
            else:
                self.mapping_scales.fill_(1.0)
                self.weight.copy_(w)
                self._scaled = False
        hwa.reset_out_scaling(self)  # HWA: learned output scales back to 1 (aihwkit)
        self.reset_programming()

    def apply_weight_scaling(self, weight: Tensor) -> Tensor:
        """Tile weights ``[G, out_g, in_g]`` -> logical weights: times the mapping scales and
        the learned output scales (HWA), when the array has them."""
        if self.uses_mapping_scales:
            weight = weight * expand_row_values(self.mapping_scales, self.plan)
        return hwa.apply_out_scaling(self, weight)

    def logical_weights(self, apply_weight_scaling: bool = True, current: bool = False) -> Tensor:
        """``[G, out_g, in_g]`` target (or, with ``current``, the chip's) weights, times the
        digital scales when ``apply_weight_scaling``."""
        w = self.current_weight if current and self.is_programmed else self.weight
        w = w.detach()
        if apply_weight_scaling:
            w = self.apply_weight_scaling(w)
        return w.clone()

    def effective_weights(self, current: bool = True) -> Tensor:
        """``[G, out_g, in_g]`` weights whose plain matrix product equals the noise-free analog
        output (no DAC/ADC/noise): the chip's weights (or the targets) times the mapping scales
        and, in the current mode, the drift-compensation factors."""
        w = self.current_weight if current and self.is_programmed else self.weight
        scales = self.output_scales() if current else (
            self.mapping_scales if self.uses_mapping_scales else None)
        w = w.detach()
        if scales is not None:
            w = w * expand_row_values(scales, self.plan)
        w = hwa.apply_out_scaling(self, w)  # HWA: learned output scales
        return w.clone()

    # ------------------------------------------------------------------ chip state
    def reset_programming(self) -> None:
        """Forget the programmed chip (the forward uses the target weights again)."""
        self.current_weight = self.weight.new_empty(0)
        self.t_inference.fill_(-1.0)
        self.drift_alpha.fill_(1.0)
        self.drift_baseline.fill_(1.0)

    def read_chip(self, t_inference: float, read_noise: bool = True) -> Tensor | None:
        """The programmed chip's weights (``weight``, ``program_seed``) at ``t_inference`` s,
        with fresh read noise (seeded from torch's default generator) unless ``read_noise`` is
        False; None without a noise model. One ``analog::pcm_chip`` call."""
        model = self.rpu_config.noise_model
        if model is None:
            return None
        return pcm_chip(self.weight, self.plan, model, self.program_seed, t_inference,
                        new_seed() if read_noise else None)

    @torch.no_grad()
    def program(self, seed: int | None = None) -> None:
        """Program a new chip sample: programming noise and drift exponents (seeded), then the
        drift-compensation baseline from an identity readout."""
        self.program_seed.fill_(int(new_seed()) if seed is None else int(seed))
        chip = self.read_chip(0.0, read_noise=False)
        self.current_weight = chip if chip is not None else self.weight.detach().clone()
        self.t_inference.fill_(0.0)
        self.drift_alpha.fill_(1.0)
        if self.rpu_config.drift_compensation is not None:
            self.drift_baseline.copy_(self._readout())

    @torch.no_grad()
    def drift(self, t_inference: float) -> None:
        """Weights of the programmed chip at ``t_inference`` s (programs first if needed), with
        fresh read noise; updates the drift-compensation factors."""
        if not self.is_programmed:
            self.program()
        chip = self.read_chip(float(t_inference))
        if chip is not None:
            self.current_weight.copy_(chip)
        self.t_inference.fill_(float(t_inference))
        if self.rpu_config.drift_compensation is not None:
            now = self._readout()
            alpha = self.drift_baseline / now
            self.drift_alpha.copy_(torch.where(now > 0, alpha, torch.ones_like(alpha)))

    def _readout(self) -> Tensor:
        """Mean |output| of an identity readout through the analog forward, per tile and row
        (``[G, n_in, out_g]``), reduced as the drift compensation prescribes."""
        plan = self.plan
        g, out_g, _ = self.weight.shape
        w = self.current_weight
        means = []
        # One readout per input split, through that split's tiles only (as each tile reads out
        # its own identity). Row k drives input k of every group at once (groups are separate
        # tiles): rows instead of a (G * size)^2 identity, which grouped convolutions cannot
        # afford.
        for off, size in zip(plan.offsets(plan.in_sizes), plan.in_sizes):
            eye = torch.eye(size, device=w.device, dtype=w.dtype).repeat(1, g)
            y, _ = tile_forward(eye, w[:, :, off:off + size].contiguous(), None, None, new_seed(),
                                [size], list(plan.out_sizes), self._io, False)
            means.append(y.view(size, g, out_g).abs().mean(0))  # [G, out_g]
        return self.rpu_config.drift_compensation.reduce(
            torch.stack(means, 1), plan.out_index.to(w.device), plan.n_out)

    # ------------------------------------------------------------------ checkpoints
    #: Set by the layers' ``load_state_dict`` for the duration of one load.
    load_rpu_config: bool = True
    strict_rpu_config_check: bool = True

    def get_extra_state(self) -> dict[str, Any]:
        """The config as plain JSON-able data (no pickled objects in checkpoints)."""
        p = self.plan
        return {"format": 1, "rpu_config": self.rpu_config.to_dict(),
                "plan": {"groups": p.groups, "in_sizes": list(p.in_sizes),
                         "out_sizes": list(p.out_sizes)}}

    def set_extra_state(self, state: Any) -> None:
        """Handled before the tensors load, in ``_load_from_state_dict``."""

    def apply_rpu_config(self, rpu_config: InferenceRPUConfig | FloatingPointRPUConfig) -> None:
        """Adopt a new config; a new tile plan resizes the per-tile buffers (values reset)."""
        p = self.plan
        plan = TilePlan.build(p.in_features, p.out_features, rpu_config.mapping.max_input_size,
                              rpu_config.mapping.max_output_size, p.groups)
        self.rpu_config = rpu_config
        if plan != p:
            self.plan = plan
            shape = (plan.groups, plan.n_in, plan.out_features)
            self.mapping_scales = self.mapping_scales.new_ones(shape)
            self.drift_baseline = self.drift_baseline.new_ones(shape)
            self.drift_alpha = self.drift_alpha.new_ones(shape)
            self._scaled = False
        hwa.sync_hwa_parameters(self)  # HWA training parameters of the new config

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        extra = state_dict.get(prefix + "_extra_state")
        if isinstance(extra, dict) and "rpu_config" in extra:
            from .config import ConfigBase

            stored = ConfigBase.from_dict(extra["rpu_config"])
            if self.load_rpu_config:
                self.apply_rpu_config(stored)
            else:
                if self.strict_rpu_config_check and type(stored) is not type(self.rpu_config):
                    raise ModuleError(
                        f"{prefix or 'tile array'}: checkpoint rpu_config is "
                        f"{type(stored).__name__}, the layer's is {type(self.rpu_config).__name__}"
                        " (pass strict_rpu_config_check=False to load anyway)")
                sp = extra.get("plan", {})
                if (tuple(sp.get("in_sizes", ())), tuple(sp.get("out_sizes", ()))) != (
                        self.plan.in_sizes, self.plan.out_sizes):
                    raise ModuleError(
                        f"{prefix or 'tile array'}: mapping parameter mismatch: checkpoint tiles "
                        f"{sp.get('in_sizes')}x{sp.get('out_sizes')}, layer tiles "
                        f"{list(self.plan.in_sizes)}x{list(self.plan.out_sizes)}")
        key = prefix + "current_weight"
        if key in state_dict:  # programmed or not: adopt the stored shape
            self.current_weight = self.current_weight.new_empty(state_dict[key].shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        scales = state_dict.get(prefix + "mapping_scales")
        if isinstance(scales, Tensor) and scales.shape == self.mapping_scales.shape:
            self._scaled = bool((scales != 1).any())

    def _apply(self, fn, recurse: bool = True):
        # ``.half()`` / ``.to(dtype)`` would cast the drift time too (86400 s is inf in float16):
        # it only follows the device.
        t_inference = self.t_inference
        out = super()._apply(fn, recurse)
        if self.t_inference.dtype != torch.float64:
            self.t_inference = t_inference.to(device=self.t_inference.device)
        return out

    def extra_repr(self) -> str:
        p = self.plan
        return (f"groups={p.groups}, out_features={p.out_features}, in_features={p.in_features}, "
                f"tiles={p.tile_count} ({p.n_in}x{p.n_out} of {p.tile_shape[0]}x{p.tile_shape[1]})"
                f", programmed={self.is_programmed}")
