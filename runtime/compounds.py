"""The mixed-precision update (``MixedPrecisionCompound``), in PyTorch: a digital rank update of
``chi`` and its transfer to the analog devices as deterministic pulse counts (see
``runtime/config/compounds.py`` for the rule). The device pulses are those of the single-device
update (``runtime.update.apply_pulse``): same responses, cycle-to-cycle noise and bounds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config.compounds import MixedPrecisionCompound
from .update import apply_pulse


def quantize_rows(v: Tensor, n_bins: int, sto_round: bool, gen: torch.Generator) -> Tensor:
    """Each row of ``v`` quantized to ``n_bins`` levels per sign of its max|v| (0: unchanged)."""
    if n_bins <= 0:
        return v
    amax = v.abs().amax(1, keepdim=True)
    scale = torch.where(amax > 0, amax / n_bins, torch.ones_like(amax))
    q = v / scale
    if sto_round:
        q = torch.floor(q + torch.rand(q.shape, generator=gen, dtype=q.dtype, device=q.device))
    else:
        q = torch.round(q)
    return q * scale


def apply_counts(device, w: Tensor, counts: Tensor, state: dict[str, Tensor],
                 gen: torch.Generator) -> Tensor:
    """``w`` after ``|counts|`` pulses per device in direction ``sign(counts)``."""
    up = counts > 0
    mag = counts.abs()
    for k in range(int(mag.max()) if mag.numel() else 0):
        w = apply_pulse(device, w, up, (mag > k).to(w.dtype), state, gen)
    return w


@torch.no_grad()
def mixed_precision_update(weight: Tensor, chi: Tensor, state: dict[str, Tensor], x: Tensor,
                           d: Tensor, lr: float, cfg: MixedPrecisionCompound, count: int,
                           row_start: int, gen: torch.Generator) -> int:
    """Update ``weight`` and ``chi`` (``[G, out_g, in_g]``) in place for the batch ``x [N, G *
    in_g]``, ``d [N, G * out_g]``; ``count`` is this update's number (from 1); returns the next
    transfer's first row."""
    g, out_g, in_g = weight.shape
    n = x.shape[0]
    xq = quantize_rows(x.to(weight.dtype), cfg.n_x_bins, cfg.stoc_round_x, gen)
    dq = quantize_rows(d.to(weight.dtype), cfg.n_d_bins, cfg.stoc_round_d, gen)
    xg = xq.reshape(n, g, in_g).transpose(0, 1)
    dg = dq.reshape(n, g, out_g).transpose(0, 1)
    chi.sub_(lr * torch.bmm(dg.transpose(1, 2), xg))
    if count % cfg.transfer_every:
        return row_start
    if cfg.n_rows_per_transfer < 0 or cfg.n_rows_per_transfer >= out_g:
        rows = torch.arange(out_g, device=weight.device)
        nxt = row_start
    else:
        if cfg.random_row:
            row_start = int(torch.randint(out_g, (), generator=gen))
        rows = (torch.arange(cfg.n_rows_per_transfer) + row_start).remainder(out_g)
        rows = rows.to(weight.device)
        nxt = (row_start + cfg.n_rows_per_transfer) % out_g
    eps, tlr = cfg.eps, cfg.transfer_lr
    counts = torch.round(tlr * chi[:, rows] / eps)
    sub = {k: v[:, rows] for k, v in state.items()}
    weight[:, rows] = apply_counts(cfg.device, weight[:, rows], counts, sub, gen)
    chi[:, rows] -= counts * eps / tlr
    return nxt
