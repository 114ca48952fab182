"""Weights <-> conductances, and the programmed / drifted weights of a whole tile array.

Each tile maps its weights onto a pair of devices per weight (``G+`` for positive, ``G-`` for
negative values, ``g_min = 0``) with one scale per tile, ``s = g_max / max|W_tile|``.
Programming noise and drift exponents are drawn from a generator seeded with the array's
*program seed*, so the chip is defined by (target weights, seed): it can be rebuilt at any drift
time without storing per-device state, which keeps an analog layer at two weight-sized tensors
(target and current weights) however often it is drifted.

``ChipSample`` (torch generators) is the reference kernel of ``analog::pcm_chip``
(``runtime/chip_ops.py``), which the tile arrays call; the C++ kernel of that op computes the
same chip statistics in one fused pass per weight, from its own Philox streams.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config.noise import PCMLikeNoiseModel
from .tiling import TilePlan


def per_tile_absmax(weight: Tensor, plan: TilePlan) -> Tensor:
    """``[G, n_in * n_out]`` max|W| of each tile (index ``i * n_out + j``)."""
    groups = weight.shape[0]
    tid = plan.tile_index().to(weight.device).flatten().expand(groups, -1)
    out = weight.new_zeros(groups, plan.n_in * plan.n_out)
    return out.scatter_reduce(1, tid, weight.abs().flatten(1), "amax", include_self=True)


def per_row_absmax(weight: Tensor, plan: TilePlan) -> Tensor:
    """``[G, n_in, out_g]`` max|W| of each tile row (a row of the input split ``i``)."""
    groups, out_g, in_g = weight.shape
    idx = plan.in_index.to(weight.device).view(1, 1, in_g).expand(groups, out_g, in_g)
    out = weight.new_zeros(groups, out_g, plan.n_in)
    return out.scatter_reduce(2, idx, weight.abs(), "amax", include_self=True).transpose(1, 2)


def expand_tile_values(values: Tensor, plan: TilePlan) -> Tensor:
    """Per-tile ``[G, n_tiles]`` values broadcast to every weight ``[G, out_g, in_g]``."""
    tid = plan.tile_index().to(values.device)
    return values[:, tid]


def expand_row_values(values: Tensor, plan: TilePlan) -> Tensor:
    """Per tile-row ``[G, n_in, out_g]`` values broadcast to every weight ``[G, out_g, in_g]``."""
    idx = plan.in_index.to(values.device)
    return values[:, idx, :].transpose(1, 2)


class ChipSample:
    """The programmed conductances of one chip: ``G+``/``G-`` after programming noise, their
    drift exponents and the weight-to-conductance scale. Built from (weights, seed)."""

    def __init__(self, weight: Tensor, plan: TilePlan, model: PCMLikeNoiseModel, seed: int):
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        w = weight.detach().float()
        amax = expand_tile_values(per_tile_absmax(w, plan), plan)
        # (an all-zero tile gets a finite scale: g_max / tiny would overflow to inf -> NaN)
        self.scale = model.g_max / amax.clamp_min(1e-30)
        g_target = [(w * self.scale).clamp(0, model.g_max), (-w * self.scale).clamp(0, model.g_max)]

        def draw() -> Tensor:
            return torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.device)

        self.g_prog = [model.apply_programming_noise(g, draw()) for g in g_target]
        self.nu = [model.drift_exponent(g, draw()) for g in g_target]
        self.model = model
        self.dtype = weight.dtype

    def programmed(self) -> Tensor:
        """Weights right after programming (no drift, no read noise)."""
        return ((self.g_prog[0] - self.g_prog[1]) / self.scale).to(self.dtype)

    def at(self, t_inference: float, generator: torch.Generator | None = None,
           read_noise: bool = True) -> Tensor:
        """Weights read at ``t_inference`` seconds: drifted, with fresh 1/f read noise (unless
        ``read_noise`` is False)."""
        gs = []
        for g_p, nu in zip(self.g_prog, self.nu):
            g_d = self.model.apply_drift(g_p, nu, t_inference)
            if read_noise:
                xi = torch.randn(g_p.shape, generator=generator, dtype=g_p.dtype, device="cpu")
                g_d = self.model.apply_read_noise(g_d, g_p, t_inference, xi.to(g_p.device))
            gs.append(g_d)
        return ((gs[0] - gs[1]) / self.scale).to(self.dtype)
