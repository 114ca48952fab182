"""Weight modifiers of hardware-aware training: the noisy / quantized weights of a training
forward (``WeightModifierParameter``), with aihwkit 1.2.0's formulas (its CPU
``weight_modifier.cpp``; PCM_NOISE, which only its CUDA tile has, from
``weight_modifier_cuda.cu``).

``amax`` is max|W| of each tile (``rel_to_actual_wmax``, 1 for an all-zero tile) or
``assumed_wmax``; ``xi`` standard normal and ``u`` uniform draws, fresh at every forward. The
forward uses the modified weights straight-through (``modify_weight``): forward and input
gradient see them, the weight gradient goes to the clean weights.

With ``per_batch_sample`` the modifier draws ``samples`` independent modified weights
``[S, G, out_g, in_g]`` (``amax`` from the clean weights, shared), one per sample of the batch;
``hwa.forward`` runs them as one op call with the samples as extra tile groups.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .config.training import WeightModifierParameter, WeightModifierType
from .programming import expand_tile_values, per_tile_absmax
from .tiling import TilePlan

MT = WeightModifierType
#: PCM_NOISE: the read time (s) of its 1/f noise and its programming-noise polynomial (uS) in
#: ``|g| / g_max`` (aihwkit's ``PCM_T_READ``, ``PCM_P0..2``).
PCM_T_READ = 250.0e-9
PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)


def weight_amax(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter) -> Tensor | float:
    """``amax`` of every weight: max|W| of its tile (``[G, out_g, in_g]``; 1 where a tile is all
    zero) with ``rel_to_actual_wmax``, else ``assumed_wmax``."""
    if not mod.rel_to_actual_wmax:
        return float(mod.assumed_wmax)
    amax = expand_tile_values(per_tile_absmax(weight, plan), plan)
    return torch.where(amax > 0, amax, torch.ones_like(amax))


def _step(res: float) -> float:
    """The discretization step of ``res``: a step (< 1) or a number of steps (>= 1)."""
    return 1.0 / res if res >= 1 else res


def _round(v: Tensor, sto_round: bool) -> Tensor:
    """``round(v)``, or stochastically ``floor(v + u)`` (unbiased)."""
    return torch.floor(v + torch.rand_like(v)) if sto_round else torch.round(v)


def _poly(w_rel: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    out = torch.full_like(w_rel, float(coeffs[0]))
    power = torch.ones_like(w_rel)
    for c in coeffs[1:]:
        power = power * w_rel
        out = out + float(c) * power
    return out


def _discretize(w: Tensor, amax: Tensor | float, res: float, sto_round: bool) -> Tensor:
    """``amax * round(w / amax / step) * step``."""
    if res <= 0:
        return w
    step = _step(res)
    return amax * _round(w / amax / step, sto_round) * step


def _dorefa(w: Tensor, amax: Tensor | float, mod: WeightModifierParameter) -> Tensor:
    """DoReFa: ``round(tanh(w) * |dorefa_clip / tanh(amax)| / step) * step`` (aihwkit: not
    re-scaled by ``amax``; ``amax`` maps to ``dorefa_clip``)."""
    if mod.res <= 0:
        return w
    step = _step(float(mod.res))
    tanh_amax = torch.tanh(amax) if isinstance(amax, Tensor) else math.tanh(amax)
    scale = abs(float(mod.dorefa_clip) / tanh_amax)
    return _round(torch.tanh(w) * scale / step, mod.sto_round) * step


def pcm_noise(w: Tensor, amax: Tensor | float, mod: WeightModifierParameter) -> Tensor:
    """aihwkit's PCM_NOISE (``kernelModifyWeightsPCMNoise``): ``g = clip(w, +-amax) * g_max /
    amax`` (0 below ``pcm_zero_thres * std_dev * P0``), stuck-at faults, programming noise
    ``std_dev * (P0 + P1 |g|/g_max + P2 (|g|/g_max)^2) * xi`` (uS), the drift *variation*
    ``(t/t0)^-|nu|`` with ``nu ~ N(0, clip(-0.0125 ln(|g_p|/g_max) - 0.0059, 0.008, 0.045))``
    (mean drift excluded; ``t = pcm_t_inference + t0``, only if ``t > t0``), 1/f read noise
    ``std_dev * |g_d| * min(0.0088 / max((|g_p|/g_max)^0.65, 1e-3), 0.2) *
    sqrt(ln((t + t_read) / (2 t_read))) * xi``, then back to weights keeping the target's sign;
    unprogrammed (zero) conductances stay exactly 0."""
    gmax, scale = float(mod.g_max), float(mod.std_dev)
    p0, p1, p2 = PCM_PROG_COEFF
    g = torch.clamp(w, -amax, amax) * gmax / amax
    zero = torch.zeros_like(g)
    g = torch.where(g.abs() > mod.pcm_zero_thres * scale * p0, g, zero)
    negative = g < 0
    if mod.pcm_prob_at_reset > 0:
        g = torch.where(torch.rand_like(g) < mod.pcm_prob_at_reset, zero, g)
    if mod.pcm_prob_at_gmax > 0:  # one device of the pair stuck at g_max
        hit = torch.rand_like(g) < mod.pcm_prob_at_gmax
        g = torch.where(hit, torch.where(torch.rand_like(g) > 0.5, g - gmax, g + gmax), g)
    if mod.pcm_prob_at_random > 0:
        hit = torch.rand_like(g) < mod.pcm_prob_at_random
        v = torch.rand_like(g) * gmax
        g = torch.where(hit, torch.where(g > 0, v, -v), g)
    g = g.clamp(-gmax, gmax)
    programmed = g.abs() > 0
    a = (g / gmax).abs()
    g_prog = g + scale * (p0 + p1 * a + p2 * a * a) * torch.randn_like(g)
    a_prog = (g_prog / gmax).abs()
    t0 = float(mod.pcm_t0)
    t = float(mod.pcm_t_inference) + t0
    g_drift = g_prog
    if t > t0:
        sig_drift = (-0.0125 * torch.log(a_prog.clamp_min(1e-6)) - 0.0059).clamp(0.008, 0.045)
        nu = (torch.randn_like(g) * sig_drift).abs()
        g_drift = g_prog * torch.pow(t / t0, -nu)
    log_sqrt = math.sqrt(math.log((t + PCM_T_READ) / (2.0 * PCM_T_READ)))
    q_s = (0.0088 / a_prog.pow(0.65).clamp_min(1e-3)).clamp_max(0.2)
    g_final = g_drift + scale * g_drift.abs() * q_s * log_sqrt * torch.randn_like(g)
    w_final = (g_final / gmax * amax).abs()
    w_final = torch.where(negative, -w_final, w_final)
    return torch.where(programmed, w_final, zero)


def modified_weight(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter,
                    samples: int = 0) -> Tensor:
    """The modified weights (no gradient) of ``weight`` ``[G, out_g, in_g]``: one draw, or
    ``samples`` > 0 independent draws ``[samples, G, out_g, in_g]`` (``per_batch_sample``)."""
    w = weight.detach()
    amax = weight_amax(w, plan, mod)
    if samples > 0:  # a broadcast view: every draw below has the full [S, ...] shape
        w = w.unsqueeze(0).expand(samples, *w.shape)
    kind, std = mod.type, float(mod.std_dev)
    if kind in (MT.DISCRETIZE, MT.DISCRETIZE_ADD_NORMAL):
        w = _discretize(w, amax, float(mod.res), mod.sto_round)
    if kind in (MT.ADD_NORMAL, MT.DISCRETIZE_ADD_NORMAL):
        if std > 0:
            w = torch.randn_like(w).mul_(std * amax).add_(w)
    elif kind is MT.MULT_NORMAL:
        if std > 0:
            w = w + w * std * amax * torch.randn_like(w)
    elif kind is MT.POLY:
        if std > 0:
            w = w + amax * std * _poly(w.abs() / amax, mod.coeffs) * torch.randn_like(w)
    elif kind is MT.PROG_NOISE:
        if std > 0:
            sig = std / float(mod.g_max) * _poly(w.abs() / amax, mod.coeffs)
            noisy = (w + amax * sig * torch.randn_like(w)).abs()
            w = torch.where(w < 0, -noisy, noisy)
    elif kind is MT.DOREFA:
        w = _dorefa(w, amax, mod)
    elif kind is MT.PCM_NOISE:
        w = pcm_noise(w, amax, mod)
    if mod.pdrop > 0:
        w = w * (torch.rand_like(w) >= mod.pdrop).to(w.dtype)
    return w


class _StraightThrough(torch.autograd.Function):
    """The values of ``modified``, the gradient to ``weight`` (summed over the samples)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, modified: Tensor) -> Tensor:
        ctx.per_sample = modified.dim() > weight.dim()
        return modified

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return (grad.sum(0) if ctx.per_sample else grad), None


def modify_weight(weight: Tensor, plan: TilePlan, mod: WeightModifierParameter,
                  samples: int = 0) -> Tensor:
    """Straight-through modified weights: the values of ``modified_weight``, the gradient of
    ``weight`` (summed over the samples with ``samples`` > 0)."""
    modified = modified_weight(weight, plan, mod, samples)
    if not weight.requires_grad:
        return modified
    return _StraightThrough.apply(weight, modified)
