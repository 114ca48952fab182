"""Reference (pure-PyTorch) kernels of the pulsed update: they define its semantics.

Device state. ``sample_device_state`` draws the per-device parameters of a tile array once, from
one seed, in this order of standard-normal draws over the weight shape: gain (``dw_min_dtod``),
asymmetry (``up_down_dtod``), upper bound, lower bound, then the model's own (LinearStep: up and
down slopes; PowStep: exponent asymmetry, exponent spread). Six tensors of the weight's shape:
``scale_up``/``scale_down`` (step sizes ``dw^+``, ``dw^-`` >= 0), ``max_bound``/``min_bound``
and ``shape_up``/``shape_down`` (LinearStep/SoftBounds: slopes ``gamma^d_ij``; PowStep:
exponents ``gamma^d_ij``; other models: 0).

Update. ``pulsed_update`` applies ``W -= lr * d^T x`` for a batch ``x [N, in]``, ``d [N, out]``
to every tile of a layer (tile by tile, each with its own pulse trains), one input vector after
the other. Per tile and vector: ``BL``, ``A``, ``B`` from ``UpdateParameters`` (see
``bit_line_params``), probabilities ``p = min(1, A|x|)``, ``q = min(1, B|d|)`` (optionally
quantized to ``res``), coincidence counts ``c_ji`` (STOCHASTIC*: ``sum_t bit_x[t, i] bit_d[t, j]``
with Bernoulli trains, ``x`` bits drawn before ``d`` bits; MEAN_COUNT: ``BL p_i q_j``;
DETERMINISTIC_IMPLICIT: ``round(BL p_i q_j)``) and then ``ceil(max c)`` pulse rounds: round
``k`` applies one pulse, scaled by ``clamp(c - k, 0, 1)``, in direction ``-sign(x_i d_j)`` to
every device with ``c_ji > k`` (see ``apply_pulse``). Pulse type NONE (and an ``IdealDevice``)
is the floating-point update; NONE_WITH_DEVICE also clips to the device bounds.

Granularity. BL and update management divide by the device's weight granularity (aihwkit's
``calcWeightGranularity``: ``dw_min``, but ``dw_min * 0.5 ** pow_gamma`` for PowStep, the middle
up node for PiecewiseStep, the down step at 0 for ExpStep). The kernels' device configs
(``update_ops.decode_device``) carry it in ``dw_min``, which is what ``update_tile`` reads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .config.devices import (
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PiecewiseStepDevice,
    PowStepDevice,
    SoftBoundsDevice,
)
from .config.update import PulseType, UpdateParameters

STATE_KEYS = ("scale_up", "scale_down", "max_bound", "min_bound", "shape_up", "shape_down")
"""Names of the per-device parameter tensors (``dev_<key>`` buffers of a training tile)."""


def sample_device_state(device: Any, shape: tuple[int, ...], seed: int,
                        dtype: torch.dtype = torch.float32,
                        where: torch.device | str | None = None) -> dict[str, Tensor]:
    """The per-device parameters of ``shape`` devices of ``device``'s model, drawn from ``seed``
    (see the module docstring for the order of the draws)."""
    gen = torch.Generator().manual_seed(int(seed))

    def xi() -> Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    zeros = torch.zeros(shape, dtype=torch.float64)
    if isinstance(device, IdealDevice):
        state = {"scale_up": zeros, "scale_down": zeros,
                 "max_bound": torch.full(shape, math.inf, dtype=torch.float64),
                 "min_bound": torch.full(shape, -math.inf, dtype=torch.float64),
                 "shape_up": zeros, "shape_down": zeros}
    else:
        gain = 1.0 + device.dw_min_dtod * xi()
        beta = device.up_down + device.up_down_dtod * xi()
        up, down = device.dw_min * (gain + beta), device.dw_min * (gain - beta)
        hi = device.w_max + abs(device.w_max) * device.w_max_dtod * xi()
        lo = device.w_min + abs(device.w_min) * device.w_min_dtod * xi()
        if device.enforce_consistency:
            up, down = up.abs(), down.abs()
            hi, lo = torch.maximum(hi, lo), torch.minimum(hi, lo)
        shape_up, shape_down = zeros, zeros
        if isinstance(device, LinearStepDevice):
            g_up = device.gamma_up + device.gamma_up_dtod * xi()
            g_down = device.gamma_down + device.gamma_down_dtod * xi()
            if not device.allow_increasing:
                g_up, g_down = g_up.abs(), g_down.abs()
            ref_hi = device.w_max if device.mean_bound_reference else hi
            ref_lo = device.w_min if device.mean_bound_reference else lo
            shape_up, shape_down = -g_up / ref_hi, -g_down / ref_lo
        elif isinstance(device, SoftBoundsDevice):
            shape_up, shape_down = -1.0 / hi, -1.0 / lo
        elif isinstance(device, PowStepDevice):
            b = device.pow_up_down + device.pow_up_down_dtod * xi()
            spread = device.pow_gamma_dtod * xi()
            shape_up = (device.pow_gamma * (1.0 + b + spread)).clamp_min(0.0)
            shape_down = (device.pow_gamma * (1.0 - b + spread)).clamp_min(0.0)
        state = {"scale_up": up, "scale_down": down, "max_bound": hi, "min_bound": lo,
                 "shape_up": shape_up, "shape_down": shape_down}
    return {k: v.to(device=where, dtype=dtype) for k, v in state.items()}


def response(device: Any, w: Tensor, up: Tensor, state: dict[str, Tensor]) -> Tensor:
    """Mean signed weight change of one pulse at weights ``w`` (``up``: direction +1, else -1):
    ``d * dw^d_ij * f^d(w)``."""
    scale = torch.where(up, state["scale_up"], -state["scale_down"])
    hi, lo = state["max_bound"], state["min_bound"]
    if isinstance(device, (LinearStepDevice, SoftBoundsDevice)):
        slope = torch.where(up, state["shape_up"], state["shape_down"])
        return scale * (1.0 + slope * w).clamp_min(0.0)
    if isinstance(device, ExpStepDevice):
        z = 2.0 * device.a * w / (hi - lo) + device.b
        y = torch.where(up, 1.0 - device.A_up * torch.exp(device.gamma_up * z),
                        1.0 - device.A_down * torch.exp(-device.gamma_down * z))
        return scale * y.clamp_min(0.0)
    if isinstance(device, PowStepDevice):
        omega = ((hi - w) / (hi - lo)).clamp(0.0, 1.0)
        base = torch.where(up, omega, 1.0 - omega)
        return scale * base.pow(torch.where(up, state["shape_up"], state["shape_down"]))
    if isinstance(device, PiecewiseStepDevice):
        return scale * _piecewise(device, w, up, hi, lo)
    return scale


def _piecewise(device: PiecewiseStepDevice, w: Tensor, up: Tensor, hi: Tensor,
               lo: Tensor) -> Tensor:
    nodes = torch.tensor([device.piecewise_up, device.piecewise_down], dtype=w.dtype,
                         device=w.device)
    m = nodes.shape[1]
    if m == 1:
        return torch.where(up, nodes[0, 0], nodes[1, 0])
    pos = ((w - lo) / (hi - lo)).clamp(0.0, 1.0) * (m - 1)
    k = pos.floor().clamp_max(m - 2)
    q = pos - k
    k = k.long()
    v = torch.where(up, nodes[0][k], nodes[1][k])
    v1 = torch.where(up, nodes[0][k + 1], nodes[1][k + 1])
    return (1.0 - q) * v + q * v1


def apply_pulse(device: Any, w: Tensor, up: Tensor, factor: Tensor, state: dict[str, Tensor],
                gen: torch.Generator | None) -> Tensor:
    """``w`` after one pulse scaled by ``factor`` (0 where no pulse), with cycle-to-cycle
    noise, clipped to the bounds: ``clip(w + factor * (dw + noise), b^min, b^max)``."""
    dw = response(device, w, up, state)
    std = device.dw_min_std
    if std > 0:
        xi = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
        if isinstance(device, ExpStepDevice):
            dw = dw + std * (device.dw_min_std_add + dw.abs()
                             + device.dw_min_std_slope * w.abs()) * xi
        elif isinstance(device, (LinearStepDevice, SoftBoundsDevice)) and not device.mult_noise:
            dw = dw + torch.where(up, state["scale_up"], -state["scale_down"]) * std * xi
        else:
            dw = dw * (1.0 + std * xi)
    w = w + factor * dw
    return torch.minimum(torch.maximum(w, state["min_bound"]), state["max_bound"])


def bit_line_params(up: UpdateParameters, lr: float, dw_min: float, x_amax: Tensor,
                    d_amax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(BL, A, B)`` per input vector (aihwkit's BL and update management)."""
    if up.update_bl_management:
        bl = torch.ceil(lr * x_amax * d_amax / dw_min).clamp(1, up.desired_bl)
        a = torch.sqrt(lr / (dw_min * bl))
    else:
        bl = torch.full_like(x_amax, float(up.desired_bl))
        a = torch.sqrt(lr / (dw_min * bl))
        if not up.fixed_bl and dw_min * up.desired_bl < lr:
            bl = torch.full_like(x_amax, float(math.ceil(lr / dw_min)))
            a = torch.ones_like(x_amax)
    b = a.clone()
    if up.update_management or up.update_bl_management:
        gamma = torch.sqrt(d_amax * up.um_grad_scale / x_amax)
        a, b = a * gamma, b / gamma
    return bl, a, b


def _quantize(p: Tensor, res: float, sto_round: bool, gen: torch.Generator) -> Tensor:
    if res <= 0:
        return p
    step = res if res < 1 else 1.0 / res
    if sto_round:
        return torch.floor(p / step + torch.rand(p.shape, generator=gen, dtype=p.dtype)) * step
    return torch.round(p / step) * step


def coincidences(up: UpdateParameters, bl: int, p: Tensor, q: Tensor,
                 gen: torch.Generator) -> Tensor:
    """Coincidence counts ``[out, in]`` of one input vector with probabilities ``p [in]``,
    ``q [out]`` and trains of length ``bl``."""
    if up.pulse_type is PulseType.MEAN_COUNT:
        return bl * torch.outer(q, p)
    if up.pulse_type is PulseType.DETERMINISTIC_IMPLICIT:
        pq = _quantize(p, up.x_res_implicit, False, gen)
        qq = _quantize(q, up.d_res_implicit, False, gen)
        return torch.round(bl * torch.outer(qq, pq))
    xb = (torch.rand((bl, p.numel()), generator=gen, dtype=p.dtype) < p).to(p.dtype)
    db = (torch.rand((bl, q.numel()), generator=gen, dtype=q.dtype) < q).to(q.dtype)
    return db.T @ xb


def update_tile(device: Any, up: UpdateParameters, w: Tensor, state: dict[str, Tensor],
                x: Tensor, d: Tensor, lr: float, gen: torch.Generator) -> Tensor:
    """One tile's ``w [out, in]`` after the update of the batch ``x [N, in]``, ``d [N, out]``
    (``device.dw_min``: the weight granularity, see the module docstring)."""
    if isinstance(device, IdealDevice) or up.pulse_type in (PulseType.NONE,
                                                            PulseType.NONE_WITH_DEVICE):
        w = w - lr * d.T @ x
        if up.pulse_type is PulseType.NONE_WITH_DEVICE:
            w = torch.minimum(torch.maximum(w, state["min_bound"]), state["max_bound"])
        return w
    x_amax, d_amax = x.abs().amax(1), d.abs().amax(1)
    bls, a, b = bit_line_params(up, lr, device.dw_min, x_amax.clamp_min(1e-30),
                                d_amax.clamp_min(1e-30))
    for n in range(x.shape[0]):
        if x_amax[n] == 0 or d_amax[n] == 0:
            continue
        bl = int(bls[n])
        p = _quantize((a[n] * x[n].abs()).clamp_max(1.0), up.res, up.sto_round, gen)
        q = _quantize((b[n] * d[n].abs()).clamp_max(1.0), up.res, up.sto_round, gen)
        counts = coincidences(up, bl, p, q, gen)
        direction = torch.outer(d[n], x[n]) < 0  # W -= lr d x^T: up where x d < 0
        for k in range(math.ceil(float(counts.max()))):
            factor = (counts - k).clamp(0.0, 1.0)
            w = apply_pulse(device, w, direction, factor, state, gen)
    return w


def pulsed_update(weight: Tensor, state: dict[str, Tensor], x: Tensor, d: Tensor, lr: float,
                  device: Any, up: UpdateParameters, tiles: list[tuple[int, slice, slice]],
                  seed: int) -> Tensor:
    """Reference update of a tile array: ``weight [G, out_g, in_g]`` after the batch
    ``x [N, G * in_g]``, ``d [N, G * out_g]``; ``tiles`` lists ``(group, rows, cols)`` in
    storage order; one generator seeded with ``seed`` serves every draw, tile after tile."""
    g_count, out_g, in_g = weight.shape
    gen = torch.Generator().manual_seed(int(seed))
    w = weight.clone()
    xg = x.reshape(x.shape[0], g_count, in_g)
    dg = d.reshape(d.shape[0], g_count, out_g)
    for g, rows, cols in tiles:
        tile_state = {k: v[g, rows, cols] for k, v in state.items()}
        w[g, rows, cols] = update_tile(device, up, w[g, rows, cols], tile_state,
                                       xg[:, g, cols], dg[:, g, rows], lr, gen)
    return w
