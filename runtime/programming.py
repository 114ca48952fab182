"""Weights <-> conductances, and the programmed / drifted weights of a whole tile array.

Each tile maps its weights onto a pair of devices per weight (``G+`` for positive, ``G-`` for
negative values, ``g_min = 0``) with one scale per tile, ``s = g_max / max|W_tile|``.
Programming noise and drift exponents are drawn from a generator seeded with the array's
*program seed*, so the chip is defined by (target weights, seed): it can be rebuilt at any drift
time without storing per-device state, which keeps an analog layer at two weight-sized tensors
(target and current weights) however often it is drifted.

The other noise models of the family (``HermesNoiseModel``, the ReRAM models, ...) and other
conductance converters are served by ``DeviceChipSample``, the same construction per tile and
per device of the model's converter (reference kernel of ``analog::device_chip``; its C++ kernel,
``csrc/device_chip.cpp``, computes the same statistics in one pass per weight).

``ChipSample`` (torch generators) is the reference kernel of ``analog::pcm_chip``
(``runtime/chip_ops.py``), which the tile arrays call; the C++ kernel of that op computes the
same chip statistics in one fused pass per weight, from its own random streams (Philox-seeded
xoshiro128+, ``csrc/pcm_chip.cpp``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .config.noise import PCMLikeNoiseModel
from .config.noise_base import NoiseModel
from .tiling import TilePlan


def per_tile_absmax(weight: Tensor, plan: TilePlan) -> Tensor:
    """``[G, n_in * n_out]`` max|W| of each tile (index ``i * n_out + j``)."""
    groups = weight.shape[0]
    tid = plan.tile_index().to(weight.device).flatten().expand(groups, -1)
    out = weight.new_zeros(groups, plan.n_in * plan.n_out)
    return out.scatter_reduce(1, tid, weight.abs().flatten(1), "amax", include_self=True)


def per_row_absmax(weight: Tensor, plan: TilePlan) -> Tensor:
    """``[G, n_in, out_g]`` max|W| of each tile row (a row of the input split ``i``)."""
    # split by split: |W| of one input split at a time, never a weight-sized temporary
    return torch.stack([weight[:, :, off:off + size].abs().amax(2)
                        for off, size in zip(plan.offsets(plan.in_sizes), plan.in_sizes)], 1)


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


class DeviceChipSample:
    """The programmed chip of any noise model of the family (``runtime/config/noise_base.py``),
    built from (weights, seed): per tile, the model's converter maps the tile's weights to the
    target conductances of every device of a unit cell; programming noise and the drift
    parameter are drawn per device from the program seed (all devices of all tiles as one flat
    vector, tile by tile and device by device); ``at`` reads every device at ``t`` with fresh
    per-read noise and maps each tile back. The reference kernel of ``analog::device_chip``."""

    def __init__(self, weight: Tensor, plan: TilePlan, model: NoiseModel, seed: int):
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        self.model, self.plan, self.dtype = model, plan, weight.dtype
        self.converter = model.converter()
        w = weight.detach().float()
        self.device = w.device
        # (tile slice, device shapes, converter parameters) per tile, and the flat targets
        self.tiles: list[tuple[tuple[int, slice, slice], list[torch.Size], Any]] = []
        flat: list[Tensor] = []
        for g in range(plan.groups):
            for c0, ci in zip(plan.offsets(plan.in_sizes), plan.in_sizes):
                for r0, ro in zip(plan.offsets(plan.out_sizes), plan.out_sizes):
                    where = (g, slice(r0, r0 + ro), slice(c0, c0 + ci))
                    targets, params = self.converter.to_conductances(w[where])
                    self.tiles.append((where, [t.shape for t in targets], params))
                    flat += [t.flatten() for t in targets]
        g_target = torch.cat(flat)
        xi_p = torch.randn(g_target.shape, generator=gen).to(self.device)
        xi_d = torch.randn(g_target.shape, generator=gen).to(self.device)
        self.g_prog = model.program(g_target, xi_p)
        self.param = model.drift_parameter(g_target, xi_d)

    def at(self, t_inference: float, generator: torch.Generator | None = None,
           read_noise: bool = True) -> Tensor:
        """Weights read at ``t_inference`` s; ``read_noise`` False leaves every per-read random
        out (relaxation and read noise)."""
        self.model.check_time(t_inference)
        xi_d = xi_r = None
        if read_noise:
            shape = self.g_prog.shape
            xi_d = torch.randn(shape, generator=generator).to(self.device)
            xi_r = torch.randn(shape, generator=generator).to(self.device)
        g = self.model.read(self.g_prog, self.param, t_inference, xi_d, xi_r)
        out = torch.empty(self.plan.groups, sum(self.plan.out_sizes), sum(self.plan.in_sizes),
                          device=self.device)
        start = 0
        for where, shapes, params in self.tiles:
            reads = []
            for shape in shapes:
                n = shape.numel()
                reads.append(g[start:start + n].view(shape))
                start += n
            out[where] = self.converter.from_conductances(reads, params)
        return out.to(self.dtype)
