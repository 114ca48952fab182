"""An independent, deliberately plain oracle of one tile array's noise-free forward.

Loops over groups, tiles and input vectors and follows the reference document step by step
(noise management -> DAC -> MVM -> ADC -> ITERATIVE bound management -> undo scaling -> digital
scales -> sum over input splits -> bias). It never calls the kernel under test.
"""

from __future__ import annotations

import torch
from torch import Tensor

import analog_compiler as ac


def _quant(v: Tensor, step: float) -> Tensor:
    return v if step <= 0 else torch.round(v / step) * step


def _dac(x: Tensor, scale: float, step: float) -> Tensor:
    """``x / scale`` on the DAC grid, as aihwkit computes it: ``round((x * (1 / scale)) / step)
    * step`` in the input's precision (a halved input can land exactly on a half step, so the
    order of the operations decides the rounding)."""
    if step <= 0:
        return x / scale
    inv = 1.0 / torch.tensor(scale, dtype=x.dtype)
    return torch.round((x * inv) / step) * step


def oracle_forward(x: Tensor, weight: Tensor, io: ac.IOParameters, in_sizes: list[int],
                   out_sizes: list[int], out_scales: Tensor | None = None,
                   bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Noise-free forward. Returns ``(y [N, G*out_g], keep [G, n_in, N, out_g], red [G, n_in,
    n_out, N])``: the output, the not-clipped mask and the final input reduction per vector."""
    groups, out_g, in_g = weight.shape
    n = x.shape[0]
    xg = x.reshape(n, groups, in_g)
    y = torch.zeros(n, groups, out_g, dtype=x.dtype)
    keep = torch.ones(groups, len(in_sizes), n, out_g, dtype=torch.bool)
    reds = torch.ones(groups, len(in_sizes), len(out_sizes), n, dtype=x.dtype)
    def f32(v: float) -> Tensor:
        return torch.tensor(v, dtype=torch.float32)

    # aihwkit's steps, in float32: float(res) (or 1 / float(res)) times float(2 * bound); no
    # ADC without an output bound
    in_step = 0.0 if io.inp_res <= 0 else float(
        (f32(io.inp_res) if io.inp_res < 1 else 1 / f32(io.inp_res)) * f32(2 * io.inp_bound))
    out_step = 0.0 if io.out_res <= 0 or io.out_bound <= 0 else float(
        (f32(io.out_res) if io.out_res < 1 else 1 / f32(io.out_res)) * f32(2 * io.out_bound))
    # Bound management (aihwkit's C++ loop) accepts the round whose reduction exceeds
    # max_bm_factor or max_bm_res / DAC step, or that did not clip.
    col0 = 0
    for i, cols in enumerate(in_sizes):
        row0 = 0
        for j, rows in enumerate(out_sizes):
            for g in range(groups):
                w = weight[g, row0:row0 + rows, col0:col0 + cols]
                batch_abs_max = xg[:, g, col0:col0 + cols].abs().amax(-1)
                for v in range(n):
                    xv = xg[v, g, col0:col0 + cols]
                    nm = io.noise_management
                    if io.is_perfect:
                        yv, red, alpha = w @ xv, 1.0, 1.0
                        clipped = torch.zeros(rows, dtype=torch.bool)
                    else:
                        if nm is ac.NoiseManagementType.ABS_MAX:
                            alpha = float(xv.abs().max())
                            if io.nm_thres > 0:
                                alpha = min(alpha, io.nm_thres)
                        elif nm is ac.NoiseManagementType.AVERAGE_ABS_MAX:
                            alpha = float(batch_abs_max.mean())
                        elif nm is ac.NoiseManagementType.CONSTANT:
                            alpha = io.nm_thres
                        else:
                            alpha = 1.0
                        if alpha == 0.0:
                            continue  # an all-zero vector gives 0
                        red = 1.0
                        while True:
                            xs = _dac(xv, alpha * red, in_step)
                            xs = xs.clamp(-io.inp_bound, io.inp_bound)
                            yv = _quant(w @ xs, out_step)
                            if io.out_bound > 0:  # beyond the bound, not at it (aihwkit)
                                clipped = yv.abs() > io.out_bound
                                yv = yv.clamp(-io.out_bound, io.out_bound)
                            else:
                                clipped = torch.zeros(rows, dtype=torch.bool)
                            last = (red > io.max_bm_factor
                                    or (in_step > 0 and red > io.max_bm_res / in_step))
                            may_redo = (io.bound_management is ac.BoundManagementType.ITERATIVE
                                        and io.out_bound > 0 and not last)
                            if bool(clipped.any()) and may_redo:
                                red = 2 * red
                                continue
                            break
                        yv = yv * alpha * red
                    reds[g, i, j, v] = red
                    keep[g, i, v, row0:row0 + rows] = ~clipped
                    if out_scales is not None:
                        yv = yv * out_scales[g, i, row0:row0 + rows]
                    y[v, g, row0:row0 + rows] += yv
            row0 += rows
        col0 += cols
    y = y.reshape(n, groups * out_g)
    if bias is not None:
        y = y + bias
    return y, keep, reds


def quiet_io(**changes) -> ac.IOParameters:
    """Default inference periphery with every noise source off."""
    return ac.IOParameters(out_noise=0.0, **changes)
