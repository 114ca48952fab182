"""AGAD (``DynamicTransferCompound``, aihwkit 1.2.0's ``DynamicTransferRPUDevice``) on a tile
array: c-TTv2 (``runtime/transfer.py``) with a dynamic reference; the reference kernel of
``analog::agad_update`` (schema in ``runtime/ops.py``, fused C++ in ``csrc/agad_update.cpp``).

The fast array's update, its learning rate (``count_lr``, ``auto_scale``), the column schedule
and ``lr_scale`` are c-TTv2's (``transfer.fast_updates``). The transfer of column ``k`` differs
(per row ``j``, read ``v`` with noise and bound management off, *not* chopper-corrected):

- ``n_s = max(ceil(1 / in_chop_prob), 2)`` (2 when ``in_chop_prob = 0``) reads per chopper
  period; ``s = sweeps % n_s + 1`` is the current one;
- if the column's input chopper flipped at its previous read: ``past = mean`` (the reference
  becomes the running mean of the period that just ended);
- ``H += c * lr_scale * (v - past)`` with ``c = -1`` where the column's and the row's choppers
  differ (``experimental_correct_accumulation``: ``lr_scale / min(s, 1 / dw_min_A)``);
- where ``|H| >= 1``: ``n = clip(trunc(H), +-desired_bl)``, ``H *= momentum``
  (``forget_buffer``) or ``H -= (1 - momentum) n`` clipped to ``+-buffer_cap * desired_bl``
  (if ``buffer_cap > 0``); the slow array gets the pulsed write of ``-n`` as in c-TTv2, but only
  once ``sweeps > n_s``;
- ``mean = (1 - mu) mean + mu v`` with ``mu = min(tail_weightening / n_s, 1)``;
- the input chopper flips when ``s == n_s`` (and, with ``in_chop_random``, also with
  probability ``in_chop_prob``); output choppers never flip; after the last column ``sweeps``
  grows by one.

State: c-TTv2's buffers plus ``tc_mean``, ``tc_past`` ``[G, out_g, in_g]`` and ``tc_switched
[G, n_out, in_g]`` (0/1: the column's chopper flipped at its last read). The kernel arguments
are c-TTv2's plus these three buffers and ``agad_params`` (``AGAD_FIELDS``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .config.transfer import DynamicTransferCompound
from .config.update import UpdateParameters
from .transfer import (
    TileScalars,
    decode_transfer,
    fast_updates,
    lr_scale,
    read_column,
    tiles,
)
from .update import STATE_KEYS, update_tile

BUFFERS = ("tc_mean", "tc_past", "tc_switched")
"""AGAD's buffers besides c-TTv2's."""
AGAD_FIELDS = ("experimental_correct_accumulation", "buffer_cap", "tail_weightening")
"""The numbers of ``analog::agad_update``'s ``agad_params``, in order."""


def register(arr: Any) -> None:
    """Create AGAD's extra buffers (zeros)."""
    w = arr.weight
    arr.register_buffer("tc_mean", torch.zeros(w.shape, dtype=w.dtype, device=w.device))
    arr.register_buffer("tc_past", torch.zeros(w.shape, dtype=w.dtype, device=w.device))
    arr.register_buffer("tc_switched", torch.zeros_like(arr.tc_in_chop))


def encode_agad(cfg: DynamicTransferCompound) -> list[float]:
    """``agad_params`` of an AGAD compound."""
    return [float(getattr(cfg, name)) for name in AGAD_FIELDS]


def n_samples(in_chop_prob: float) -> int:
    """Reads per chopper period (aihwkit's ``getNumInChopSamples``)."""
    return max(math.ceil(1.0 / in_chop_prob), 2) if in_chop_prob > 0 else 2


def agad_tile(t: dict[str, float], g: dict[str, float], dev_a: Any, dev_c: Any,
              up: UpdateParameters, tu: UpdateParameters, io: tuple, a: Tensor, c: Tensor,
              h: Tensor, mean: Tensor, past: Tensor, switched: Tensor, in_chop: Tensor,
              out_chop: Tensor, ts: Tensor, st_a: dict[str, Tensor], st_c: dict[str, Tensor],
              x: Tensor, d: Tensor, lr: float, counter: int, gen: torch.Generator) -> None:
    """The AGAD update of one tile, in place (``t``: the transfer params, ``g``: the AGAD
    params, named; shapes as ``transfer.chopped_tile``; ``mean``, ``past`` ``[rows, cols]``,
    ``switched [cols]``)."""
    cols = a.shape[1]
    tile = TileScalars.of(ts)
    max_steps = float(tu.desired_bl)
    cap = max_steps * g["buffer_cap"]
    ns = n_samples(t["in_chop_prob"])
    mu = min(g["tail_weightening"] / ns, 1.0)
    momentum = t["momentum"]
    for c_lr in fast_updates(t, tile, dev_a, up, a, st_a, in_chop, out_chop, x, d, lr, counter,
                             gen):
        k, sweeps = tile.slice, tile.sweeps
        s = sweeps % ns + 1
        scale = lr_scale(t, lr, c_lr, dev_a.dw_min, dev_c.dw_min, cols)
        if g["experimental_correct_accumulation"]:
            scale /= min(float(s), 1.0 / dev_a.dw_min)
        v = read_column(a[:, k], io[0], io[1], gen)
        if bool(switched[k]):
            past[:, k] = mean[:, k]
        switched[k] = 0
        dw = v - past[:, k]
        dw = torch.where(out_chop != in_chop[k], -dw, dw)
        omega = h[:, k] + dw * scale
        big = omega.abs() >= 1.0
        steps = torch.where(big, omega.trunc().clamp(-max_steps, max_steps),
                            torch.zeros_like(omega))
        if t["forget_buffer"]:
            omega = torch.where(big, omega * momentum, omega)
        else:
            omega = torch.where(big, omega - (1.0 - momentum) * steps, omega)
            if cap > 0:
                omega = torch.where(big, omega.clamp(-cap, cap), omega)
        h[:, k] = omega
        mean[:, k] = mean[:, k] * (1.0 - mu) + v * mu
        if bool(big.any()) and sweeps > ns:
            sub = {key: val[:, k:k + 1] for key, val in st_c.items()}
            c[:, k:k + 1] = update_tile(dev_c, tu, c[:, k:k + 1].clone(), sub,
                                        torch.ones(1, 1, dtype=c.dtype), -steps[None],
                                        t["step"] * dev_c.dw_min, gen)
        flip = s == ns
        if t["in_chop_random"] and float(torch.rand((), generator=gen, dtype=torch.float64)) \
                < t["in_chop_prob"]:
            flip = True
        if flip:
            in_chop[k] = 1 - in_chop[k]
            switched[k] = 1
    tile.store(ts)


def agad_update_reference(fast: Tensor, slow: Tensor, buffer: Tensor, mean: Tensor,
                          past: Tensor, switched: Tensor, in_chop: Tensor, out_chop: Tensor,
                          tile_state: Tensor, fast_state: list[Tensor], slow_state: list[Tensor],
                          x: Tensor, d: Tensor, lr: float, seed: Tensor, counter: int,
                          in_sizes: list[int], out_sizes: list[int], fast_kind: int,
                          fast_params: list[float], slow_kind: int, slow_params: list[float],
                          pulse_type: int, update_params: list[float], t_pulse_type: int,
                          t_update_params: list[float], io_f: list[float], io_i: list[int],
                          transfer_params: list[float], agad_params: list[float]) -> None:
    """Reference kernel of ``analog::agad_update``: the AGAD update of a tile array ``[G,
    out_g, in_g]`` in place (tile after tile, one generator seeded with ``seed``)."""
    from .update_ops import decode_device, decode_update

    dev_a, dev_c = decode_device(fast_kind, fast_params), decode_device(slow_kind, slow_params)
    up, tu = decode_update(pulse_type, update_params), decode_update(t_pulse_type,
                                                                     t_update_params)
    t = decode_transfer(transfer_params)
    g_params = dict(zip(AGAD_FIELDS, (float(v) for v in agad_params)))
    gen = torch.Generator().manual_seed(int(seed))
    g_count, out_g, in_g = fast.shape
    xg = x.to(fast.dtype).reshape(x.shape[0], g_count, in_g)
    dg = d.to(fast.dtype).reshape(d.shape[0], g_count, out_g)
    for g, i, j, rows, cols in tiles(g_count, in_sizes, out_sizes):
        sa = {k: v[g, rows, cols] for k, v in zip(STATE_KEYS, fast_state)}
        sc = {k: v[g, rows, cols] for k, v in zip(STATE_KEYS, slow_state)}
        a, c = fast[g, rows, cols].clone(), slow[g, rows, cols].clone()
        h, mn, ps = buffer[g, rows, cols], mean[g, rows, cols], past[g, rows, cols]
        sw, ic = switched[g, j, cols].clone(), in_chop[g, j, cols].clone()
        ts = tile_state[g, i, j].clone()
        agad_tile(t, g_params, dev_a, dev_c, up, tu, (list(io_f), list(io_i)), a, c, h, mn, ps,
                  sw, ic, out_chop[g, i, rows], ts, sa, sc, xg[:, g, cols], dg[:, g, rows],
                  float(lr), int(counter), gen)
        fast[g, rows, cols], slow[g, rows, cols] = a, c
        switched[g, j, cols], in_chop[g, j, cols] = sw, ic
        tile_state[g, i, j] = ts
