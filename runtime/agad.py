"""AGAD (``DynamicTransferCompound``, aihwkit 1.2.0's ``DynamicTransferRPUDevice``) on a tile
array: c-TTv2 (``runtime/transfer.py``) with a dynamic reference.

The fast array's update, its learning rate (``count_lr``, ``auto_scale``), the column schedule
and ``lr_scale`` are c-TTv2's. The transfer of column ``k`` differs (per row ``j``, read ``v``
with noise and bound management off, *not* chopper-corrected):

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

This is a PyTorch loop (the C++ ``analog::transfer_update`` runs c-TTv2 only). State:
c-TTv2's buffers plus ``tc_mean``, ``tc_past`` ``[G, out_g, in_g]`` and ``tc_switched [G,
n_out, in_g]`` (0/1: the column's chopper flipped at its last read).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .config.transfer import DynamicTransferCompound
from .transfer import (
    count_lr,
    decode_transfer,
    ema,
    encode_transfer,
    lr_scale,
    quiet_io,
    read_column,
    transfer_every,
)
from .update import STATE_KEYS, update_tile
from .update_ops import _tiles

BUFFERS = ("tc_mean", "tc_past", "tc_switched")
"""AGAD's buffers besides c-TTv2's."""


def register(arr: Any) -> None:
    """Create AGAD's extra buffers (zeros)."""
    w = arr.weight
    arr.register_buffer("tc_mean", torch.zeros(w.shape, dtype=w.dtype, device=w.device))
    arr.register_buffer("tc_past", torch.zeros(w.shape, dtype=w.dtype, device=w.device))
    arr.register_buffer("tc_switched", torch.zeros_like(arr.tc_in_chop))


def n_samples(cfg: DynamicTransferCompound) -> int:
    """Reads per chopper period (aihwkit's ``getNumInChopSamples``)."""
    return max(math.ceil(1.0 / cfg.in_chop_prob), 2) if cfg.in_chop_prob > 0 else 2


def agad_tile(cfg: DynamicTransferCompound, t: dict[str, float], dev_a: Any, dev_c: Any,
              up: Any, io: tuple, a: Tensor, c: Tensor, h: Tensor, mean: Tensor, past: Tensor,
              switched: Tensor, in_chop: Tensor, out_chop: Tensor, ts: Tensor,
              st_a: dict[str, Tensor], st_c: dict[str, Tensor], x: Tensor, d: Tensor,
              lr: float, counter: int, gen: torch.Generator) -> None:
    """The AGAD update of one tile, in place (shapes as ``transfer.chopped_tile``; ``mean``,
    ``past`` ``[rows, cols]``, ``switched [cols]``)."""
    rows, cols = a.shape
    n_vec = x.shape[0]
    slice_, sweeps, m_x, m_d = (float(v) for v in ts.tolist())
    slice_, sweeps = int(slice_), int(sweeps)
    every = transfer_every(bool(t["units_in_mbatch"]), t["every"], n_vec)
    tu = cfg.transfer_update
    max_steps = float(tu.desired_bl)
    cap = max_steps * cfg.buffer_cap
    ns = n_samples(cfg)
    mu = min(cfg.tail_weightening / ns, 1.0)
    for n in range(n_vec):
        if t["auto_scale"]:
            m_x = ema(m_x, float(x[n].abs().max()), n_vec, t["auto_momentum"])
            m_d = ema(m_d, float(d[n].abs().max()), n_vec, t["auto_momentum"])
        c_lr = count_lr(t, lr, up.desired_bl, dev_a.dw_min, m_x, m_d)
        sx = 1.0 - 2.0 * in_chop.to(x.dtype)
        sd = 1.0 - 2.0 * out_chop.to(d.dtype)
        a.copy_(update_tile(dev_a, up, a, st_a, (x[n] * sx)[None], (d[n] * sd)[None], c_lr, gen))
        counter += 1
        if every <= 0 or counter % every:
            continue
        k = slice_
        s = sweeps % ns + 1
        scale = lr_scale(t, lr, c_lr, dev_a.dw_min, dev_c.dw_min, cols)
        if cfg.experimental_correct_accumulation:
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
        if cfg.forget_buffer:
            omega = torch.where(big, omega * cfg.momentum, omega)
        else:
            omega = torch.where(big, omega - (1.0 - cfg.momentum) * steps, omega)
            if cap > 0:
                omega = torch.where(big, omega.clamp(-cap, cap), omega)
        h[:, k] = omega
        mean[:, k] = mean[:, k] * (1.0 - mu) + v * mu
        if bool(big.any()) and sweeps > ns:
            sub = {key: val[:, k:k + 1] for key, val in st_c.items()}
            c[:, k:k + 1] = update_tile(dev_c, tu, c[:, k:k + 1].clone(), sub,
                                        torch.ones(1, 1, dtype=c.dtype), -steps[None],
                                        cfg.step * dev_c.dw_min, gen)
        flip = s == ns
        if cfg.in_chop_random and float(torch.rand((), generator=gen, dtype=torch.float64)) \
                < cfg.in_chop_prob:
            flip = True
        if flip:
            in_chop[k] = 1 - in_chop[k]
            switched[k] = 1
        if k == cols - 1:
            sweeps += 1
        slice_ = (k + 1) % cols
    ts.copy_(torch.tensor([slice_, sweeps, m_x, m_d], dtype=ts.dtype))


@torch.no_grad()
def agad_update(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """The AGAD update of the unit-cell tile array ``arr`` for the batch ``x [N, G * in_g]``,
    ``d [N, G * out_g]``, tile after tile with one generator seeded with ``seed``."""
    rc = arr.rpu_config
    cfg: DynamicTransferCompound = rc.device
    dev_a, dev_c = cfg.unit_cell_devices
    t = decode_transfer(encode_transfer(cfg))
    io = quiet_io(cfg)
    gen = torch.Generator().manual_seed(int(seed))
    fast, slow = arr.tc_weights[0], arr.tc_weights[1]
    states = [getattr(arr, "dev_" + key) for key in STATE_KEYS]
    g_count, out_g, in_g = fast.shape
    xg = x.to(fast.dtype).reshape(x.shape[0], g_count, in_g)
    dg = d.to(fast.dtype).reshape(d.shape[0], g_count, out_g)
    in_sizes, out_sizes = list(arr.plan.in_sizes), list(arr.plan.out_sizes)
    n_in, n_out = len(in_sizes), len(out_sizes)
    counter = int(arr.tc_vectors)
    for idx, (g, rows, cols) in enumerate(_tiles(g_count, in_sizes, out_sizes)):
        i, j = divmod(idx % (n_in * n_out), n_out)
        sa = {k: v[0, g, rows, cols] for k, v in zip(STATE_KEYS, states)}
        sc = {k: v[1, g, rows, cols] for k, v in zip(STATE_KEYS, states)}
        a, c = fast[g, rows, cols].clone(), slow[g, rows, cols].clone()
        h = arr.tc_buffer[g, rows, cols].clone()
        mean, past = arr.tc_mean[g, rows, cols].clone(), arr.tc_past[g, rows, cols].clone()
        sw = arr.tc_switched[g, j, cols].clone()
        ic, oc = arr.tc_in_chop[g, j, cols].clone(), arr.tc_out_chop[g, i, rows].clone()
        ts = arr.tc_tile[g, i, j].clone()
        agad_tile(cfg, t, dev_a, dev_c, rc.update, io, a, c, h, mean, past, sw, ic, oc, ts, sa,
                  sc, xg[:, g, cols], dg[:, g, rows], float(lr), counter, gen)
        fast[g, rows, cols], slow[g, rows, cols], arr.tc_buffer[g, rows, cols] = a, c, h
        arr.tc_mean[g, rows, cols], arr.tc_past[g, rows, cols] = mean, past
        arr.tc_switched[g, j, cols] = sw
        arr.tc_in_chop[g, j, cols], arr.tc_out_chop[g, i, rows] = ic, oc
        arr.tc_tile[g, i, j] = ts
