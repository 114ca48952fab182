"""TileArray: all crossbar tiles of one (grouped) weight matrix, and their forward.

The matrices of a tile array, by one name each (used everywhere in the code and the docs):

- **target weights** ``weight`` ``[G, out_g, in_g]``: what was written (``set_weights``, or the
  optimizer in training), on the tile side: the layer's weights divided by the mapping scales.
  The parameter that training updates.
- **chip weights** ``chip_weight`` (same shape; empty until programmed): what the programmed
  chip holds now, on the tile side: the targets with programming noise, drift and read noise
  (``chip_state.py``).
- **forward weights** (``forward_weight()``): what the forward multiplies: the chip weights in
  eval once programmed, the target weights otherwise.
- **digital scales**, one per tile row ``[G, n_in, out_g]``: the mapping scales
  (``mapping_scales``, weight scaling with omega), the drift-compensation factors
  (``drift_alpha``, in eval once programmed) and, with hardware-aware training, the learned
  output scales (``hwa.py``). ``digital_scales(kind)`` gives their product.
- **logical weights**: tile-side weights mapped back through the digital scales, the matrix a
  digital layer would need to compute the same thing (``weights(...)``, ``to_logical(...)``).

Other state: ``bias`` (digital, added once after the tiles); the chip's seed and drift time
(``chip_state.py``); the HWA parameters ``input_range`` and ``out_scaling_alpha`` (None unless
the config enables them; ``hwa.py``). Checkpoints: ``tile_checkpoint.py``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from . import hwa
from .chip_state import ChipState, new_seed
from .config import RPU_CONFIG_TYPES, RPUConfig
from .conv_ops import conv2d_via_rows
from .ops import tile_conv2d, tile_forward
from .periphery import KernelIO, kernel_io, with_chip_seed
from .programming import expand_row_values, per_row_absmax, per_tile_absmax
from .tile_checkpoint import TileCheckpoint
from .tiling import TilePlan

__all__ = ["TileArray", "new_seed"]

#: Which digital scales ``digital_scales`` / ``weights`` apply: none (tile side), the mapping
#: scales and learned output scales (the logical weights), or every scale the forward applies.
Scales = Literal["none", "mapping", "forward"]


class TileArray(ChipState, TileCheckpoint, nn.Module):
    """All tiles of one layer: ``groups`` independent ``out_g x in_g`` matrices, each cut into an
    ``n_in x n_out`` grid of tiles as ``rpu_config.mapping`` prescribes (see the module
    docstring for the names of its matrices)."""

    def __init__(self, out_features: int, in_features: int,
                 rpu_config: RPUConfig, bias: bool = True,
                 groups: int = 1, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(rpu_config, RPU_CONFIG_TYPES):
            raise TypeError("rpu_config must be an InferenceRPUConfig or FloatingPointRPUConfig, "
                            f"got {type(rpu_config).__name__}")
        mp = rpu_config.mapping
        self.plan = TilePlan.build(in_features, out_features, mp.max_input_size,
                                   mp.max_output_size, groups)
        self.rpu_config = rpu_config
        kw = {"device": device, "dtype": dtype}
        shape = (groups, self.plan.n_in, out_features)
        self.weight = nn.Parameter(torch.zeros(groups, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.zeros(groups * out_features, **kw)) if bias else None
        self.register_buffer("mapping_scales", torch.ones(shape, **kw))
        self._init_chip_state(shape, **kw)
        # Set when a write scaled the weights with an explicit omega while the mapping's is 0.
        self._scaled = False
        hwa.init_parameters(self)
        self._sync_hwa()

    # ------------------------------------------------------------------ config
    @property
    def rpu_config(self) -> RPUConfig:
        """The tile config; assigning a new one re-derives the kernel arguments."""
        return self._rpu_config

    @rpu_config.setter
    def rpu_config(self, value: RPUConfig) -> None:
        self._rpu_config = value
        self._io_cache: dict[str, tuple[int, KernelIO]] = {}

    def packed_io(self, name: str = "forward") -> KernelIO:
        """The packed periphery of ``rpu_config.<name>`` (an ``IOParameters``: ``forward``, or
        ``backward`` for training tiles), re-derived when it changed (fields assigned after
        construction, or a new object: revisions are unique)."""
        io = getattr(self._rpu_config, name)
        hit = self._io_cache.get(name)
        if hit is None or hit[0] != io.revision:
            hit = self._io_cache[name] = (io.revision, kernel_io(io))
        return hit[1]

    @property
    def kernel_io(self) -> KernelIO:
        """The packed periphery of ``rpu_config.forward`` (``packed_io("forward")``), for this
        chip (``program_seed``: ``out_noise_std``'s column noise)."""
        return with_chip_seed(self.packed_io("forward"), self.program_seed)

    def _sync_hwa(self) -> None:
        hwa.sync_parameters(self)  # the HWA parameters the config asks for

    @property
    def uses_mapping_scales(self) -> bool:
        """Whether ``mapping_scales`` may differ from 1 (weight scaling with omega > 0, an
        explicit omega at the last write, or remapping during HWA training)."""
        return (self.rpu_config.mapping.weight_scaling_omega > 0 or self._scaled
                or hwa.remap_enabled(self))

    # ------------------------------------------------------------------ forward
    def digital_scales(self, kind: Scales = "forward") -> Tensor | None:
        """Per tile-row digital scales ``[G, n_in, out_g]`` (None when all are 1): the mapping
        scales (``"mapping"``), times the drift-compensation factors in eval once programmed
        (``"forward"``, the output scales the forward op applies). Learned output scales are
        per column and apply after the op (``hwa.py``)."""
        scales = self.mapping_scales if kind != "none" and self.uses_mapping_scales else None
        if (kind == "forward" and not self.training and self.is_programmed
                and self.rpu_config.drift_compensation):
            scales = self.drift_alpha if scales is None else scales * self.drift_alpha
        return scales

    def output_scales(self) -> Tensor | None:
        """The forward op's output scales: ``digital_scales("forward")``."""
        return self.digital_scales("forward")

    def forward_weight(self) -> Tensor:
        """The forward weights: the chip weights in eval once programmed, else the targets."""
        if not self.training and self.is_programmed:
            return self.chip_weight
        return self.weight

    def forward(self, x: Tensor, samples: int | None = None) -> Tensor:
        """``x`` ``[N, G * in_g]`` -> ``[N, G * out_g]``; ``samples``: the batch samples the
        rows belong to, for ``per_batch_sample`` (None: one per row; ``hwa.sample_kwargs``)."""
        if hwa.active(self):  # HWA training: modifier, input range, learned out scales
            return hwa.forward(self, x, new_seed(), samples)
        weight = self.forward_weight()
        need_mask = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        y, _ = tile_forward(x, weight, self.output_scales(), self.bias, new_seed(),
                            list(self.plan.in_sizes), list(self.plan.out_sizes), self.kernel_io,
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
        weight = self.forward_weight()
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        hooked = bool(self._forward_pre_hooks or self._forward_hooks
                      or nn.modules.module._global_forward_pre_hooks
                      or nn.modules.module._global_forward_hooks)
        if needs_grad or hooked or hwa.active(self):
            rows_forward = partial(self, **hwa.sample_kwargs(self, x.shape[0]))
            return conv2d_via_rows(rows_forward, x, kernel, dilation, stride, padding)
        return tile_conv2d(x, weight, self.output_scales(), self.bias, new_seed(), kernel,
                           dilation, stride, padding, list(self.plan.in_sizes),
                           list(self.plan.out_sizes), self.kernel_io)

    # ------------------------------------------------------------------ weights
    def set_logical_weights(self, weight: Tensor, omega: float | None = None,
                            apply_weight_scaling: bool = True) -> None:
        """Write logical weights ``[G, out_g, in_g]`` as the new targets; with weight scaling
        (``omega > 0``) the targets get ``W / alpha`` and ``mapping_scales`` get ``alpha``
        (learned output scales go back to 1, as aihwkit's ``set_scales``). Resets programming."""
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
                self.weight.copy_(w)
                # split by split in place (as w / alpha broadcast, without a weight-sized
                # temporary of the broadcast alpha and of the quotient)
                for i, (off, size) in enumerate(zip(self.plan.offsets(self.plan.in_sizes),
                                                    self.plan.in_sizes)):
                    self.weight[:, :, off:off + size].div_(alpha[:, i, :, None])
                self._scaled = True
            else:
                self.mapping_scales.fill_(1.0)
                self.weight.copy_(w)
                self._scaled = False
        hwa.reset_out_scaling(self)
        self.reset_programming()

    def to_logical(self, weight: Tensor, scales: Scales = "mapping") -> Tensor:
        """Tile-side weights ``[G, out_g, in_g]`` (targets, chip weights, or a chip read) times
        the digital ``scales`` and the learned output scales (unless ``scales="none"``)."""
        if scales == "none":
            return weight
        rows = self.digital_scales(scales)
        if rows is not None:
            weight = weight * expand_row_values(rows, self.plan)
        return hwa.apply_out_scaling(self, weight)

    def from_logical(self, weight: Tensor, scales: Scales = "mapping") -> Tensor:
        """The inverse of ``to_logical``: logical weights ``[G, out_g, in_g]`` divided by the
        learned output scales and the digital ``scales`` (tile side)."""
        if scales == "none":
            return weight
        alpha = self.out_scaling_alpha
        if alpha is not None:
            groups, out_g = weight.shape[:2]
            weight = weight / alpha.detach().expand(groups * out_g).view(groups, out_g, 1)
        rows = self.digital_scales(scales)
        if rows is not None:
            weight = weight / expand_row_values(rows, self.plan)
        return weight

    def weights(self, *, chip: bool = False, scales: Scales = "mapping") -> Tensor:
        """A copy of the target weights, or with ``chip`` (once programmed) the chip weights,
        times the digital ``scales``: ``"none"`` (tile side), ``"mapping"`` (the logical
        weights) or ``"forward"`` (every scale the forward applies in the current mode: a plain
        matrix product with it gives the noise-free analog output)."""
        w = self.chip_weight if chip and self.is_programmed else self.weight
        return self.to_logical(w.detach(), scales).clone()

    def extra_repr(self) -> str:
        p = self.plan
        return (f"groups={p.groups}, out_features={p.out_features}, in_features={p.in_features}, "
                f"tiles={p.tile_count} ({p.n_in}x{p.n_out} of {p.tile_shape[0]}x{p.tile_shape[1]})"
                f", programmed={self.is_programmed}")
