"""Transfer compounds (Tiki-Taka, c-TTv2) on a tile array: their reference semantics and the
kernel arguments of ``analog::transfer_update`` (the fused c-TTv2 update; schema in
``runtime/ops.py``, C++ in ``csrc/transfer_update.cpp``).

Every tile ``(g, i, j)`` of a layer is one aihwkit unit-cell device pair with its own transfer
state; all tiles see every vector of a batch, so one vector counter (``counter``, aihwkit's
``current_update_idx``) serves them all. Per vector ``n`` (counter ``c = counter + n + 1``):

1. the fast array ``A`` gets the pulsed update (``runtime.update.update_tile``) of ``(x_n, d_n)``
   with the learning rate ``count_lr`` (``TransferCompound.fast_count_lr``; c-TTv2 with
   ``auto_scale``: ``fast_lr * desired_bl * dw_min_A / (m_x m_d)`` (``* lr`` with
   ``scale_fast_lr``), ``m <- (1 - tau) m + tau max|v|``, ``tau = (1 - auto_momentum) / N``,
   updated before the vector's update, ``m`` starting at the first max); c-TTv2 chops it: input
   ``i`` and output ``j`` signs flip the pulse direction where their choppers are set;
2. if ``every > 0`` and ``c % every == 0`` (``every = ceil(transfer_every * N)`` with
   ``units_in_mbatch``, else ``round(transfer_every)``): a transfer from the next column(s).

The transfer read of column ``k`` is a forward pass of the one-hot input ``e_k`` through
``transfer_forward`` with noise and bound management off: per row ``v = A[j, k] * dac(1)`` plus
weight read noise and output noise, ADC-rounded and clipped (``read_column``).

- Tiki-Taka: ``C`` gets the pulsed update (``transfer_update``) of ``x = e_k``, ``d = -v`` with
  ``lr_t = transfer_lr`` (``* lr`` with ``scale_transfer_lr``), one vector per read column.
- c-TTv2 (see ``runtime/config/transfer.py``): ``H[:, k] += s * lr_scale * v`` with
  ``s = -1`` where the column's and the row's choppers differ; where ``|H| >= 1``:
  ``n = clip(trunc(H), +-desired_bl)``, ``H *= momentum`` (``forget_buffer``) or
  ``H -= (1 - momentum) n``, and ``C[:, k]`` gets the pulsed update (``transfer_update``) of
  ``x = 1``, ``d = -n`` with ``lr = step * dw_min_C``. Then the column's input chopper flips
  (``in_chop_random``: with probability ``in_chop_prob``; else every
  ``max(ceil(1 / in_chop_prob), 2)``-th sweep); after the last column every row's output chopper
  flips with probability ``out_chop_prob`` and the sweep count grows by one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .config.transfer import ChoppedTransferCompound, TransferCompound
from .config.update import UpdateParameters
from .periphery import WeightNoise, kernel_io, unpack
from .update import STATE_KEYS, update_tile

TRANSFER_FIELDS = ("units_in_mbatch", "every", "fast_lr", "scale_fast_lr", "lr_transfer",
                   "scale_transfer_lr", "auto_scale", "auto_momentum", "buffer_granularity",
                   "auto_granularity", "correct_gradient_magnitudes", "step", "momentum",
                   "forget_buffer", "no_buffer", "in_chop_prob", "in_chop_random",
                   "out_chop_prob")
"""The c-TTv2 numbers of ``analog::transfer_update``'s ``transfer_params``, in order."""
TILE_FIELDS = ("slice", "sweeps", "m_x", "m_d")
"""Per-tile scalars of the transfer state (``tc_tile[g, i, j]``)."""


def encode_transfer(cfg: ChoppedTransferCompound) -> list[float]:
    """``transfer_params`` of a c-TTv2 compound."""
    return [float(getattr(cfg, name)) for name in TRANSFER_FIELDS]


def decode_transfer(params: list[float]) -> dict[str, float]:
    """The named view of ``transfer_params``."""
    return dict(zip(TRANSFER_FIELDS, (float(v) for v in params)))


def transfer_every(units_in_mbatch: bool, every: float, batch: int) -> int:
    """Vectors between transfers (0: none), aihwkit's rounding."""
    if units_in_mbatch:
        return max(math.ceil(every * batch), 0)
    return max(int(math.floor(every + 0.5)), 0)


def ema(m: float, new: float, batch: int, momentum: float) -> float:
    """aihwkit's ``updateAutoScale``: the running average of max|v|."""
    if m <= 0:
        return new
    if new <= 0:
        return m
    tau = (1.0 - momentum) / batch
    return (1.0 - tau) * m + tau * new


def read_column(a: Tensor, io_f: list[float], io_i: list[int],
                gen: torch.Generator | None) -> Tensor:
    """The transfer read ``v`` of the fast weights ``a`` (a column, or several as columns of a
    matrix) by a one-hot forward with noise and bound management off (module docstring)."""
    p = unpack(io_f, io_i)
    if p.is_perfect:
        return a.clone()
    one = 1.0 if p.inp_step <= 0 else round(1.0 / p.inp_step) * p.inp_step
    one = min(max(one, -p.inp_bound), p.inp_bound)
    v = a * one
    if p.w_noise > 0 and p.w_noise_type == WeightNoise.ADDITIVE_CONSTANT:
        v = v + p.w_noise * abs(one) * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    elif p.w_noise > 0 and p.w_noise_type == WeightNoise.PCM_READ:
        v = v + p.w_noise * (one * one * a.abs()).sqrt() * torch.randn(v.shape, generator=gen,
                                                                      dtype=v.dtype)
    if p.out_noise > 0:
        v = v + p.out_noise * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    if p.out_step > 0:
        if p.out_sto_round:
            v = torch.floor(v / p.out_step + torch.rand(v.shape, generator=gen,
                                                        dtype=v.dtype)) * p.out_step
        else:
            v = torch.round(v / p.out_step) * p.out_step
    if p.out_bound > 0:
        v = v.clamp(-p.out_bound, p.out_bound)
    return v


def quiet_io(cfg: TransferCompound) -> tuple[list[float], list[int]]:
    """The packed periphery of the transfer read (noise and bound management off)."""
    io = cfg.transfer_forward.replace(noise_management="none", bound_management="none")
    return tuple(kernel_io(io))  # type: ignore[return-value]


def count_lr(t: dict[str, float], lr: float, desired_bl: int, dw_a: float, m_x: float,
             m_d: float) -> float:
    """The fast array's learning rate of one vector (c-TTv2)."""
    if t["auto_scale"] and t["fast_lr"] > 0:
        c = t["fast_lr"] * desired_bl * dw_a
        if m_x > 0 and m_d > 0:
            c /= m_x * m_d
        return c * lr if t["scale_fast_lr"] else c
    if t["fast_lr"] > 0:
        return t["fast_lr"] * lr if t["scale_fast_lr"] else t["fast_lr"]
    return lr


def lr_scale(t: dict[str, float], lr: float, c_lr: float, dw_a: float, dw_c: float,
             cols: int) -> float:
    """The buffer's scale of one read (c-TTv2)."""
    lr_t = t["lr_transfer"] * (lr if t["scale_transfer_lr"] else 1.0)
    bg = t["buffer_granularity"] if t["buffer_granularity"] > 0 else 1.0
    if t["auto_granularity"] > 0:
        bg *= dw_a * t["auto_granularity"] / (cols * abs(t["every"]))
    else:
        bg *= dw_a
    if t["correct_gradient_magnitudes"]:
        return abs(lr_t) / c_lr / (bg * dw_c / dw_a)
    return abs(lr_t) / bg


@dataclass
class TileScalars:
    """A tile's ``TILE_FIELDS`` while its update runs."""

    slice: int
    sweeps: int
    m_x: float
    m_d: float

    @classmethod
    def of(cls, ts: Tensor) -> TileScalars:
        """The scalars of ``tc_tile[g, i, j]``."""
        s, w, m_x, m_d = (float(v) for v in ts.tolist())
        return cls(int(s), int(w), m_x, m_d)

    def store(self, ts: Tensor) -> None:
        """Write them back into ``ts``."""
        ts.copy_(torch.tensor([self.slice, self.sweeps, self.m_x, self.m_d], dtype=ts.dtype))


def fast_updates(t: dict[str, float], tile: TileScalars, dev_a: Any, up: UpdateParameters,
                 a: Tensor, st_a: dict[str, Tensor], in_chop: Tensor, out_chop: Tensor,
                 x: Tensor, d: Tensor, lr: float, counter: int,
                 gen: torch.Generator) -> Iterator[float]:
    """The chopped fast update of ``a`` vector after vector (steps 1 and 2 of the module
    docstring), shared by c-TTv2 and AGAD: yields the learning rate of each vector followed by
    a transfer, whose column is ``tile.slice`` and sweep ``tile.sweeps``; after the caller's
    transfer the column advances (and the sweep, after the last column)."""
    n_vec, cols = x.shape[0], a.shape[1]
    every = transfer_every(bool(t["units_in_mbatch"]), t["every"], n_vec)
    for n in range(n_vec):
        if t["auto_scale"]:
            tile.m_x = ema(tile.m_x, float(x[n].abs().max()), n_vec, t["auto_momentum"])
            tile.m_d = ema(tile.m_d, float(d[n].abs().max()), n_vec, t["auto_momentum"])
        c_lr = count_lr(t, lr, up.desired_bl, dev_a.dw_min, tile.m_x, tile.m_d)
        sx = 1.0 - 2.0 * in_chop.to(x.dtype)
        sd = 1.0 - 2.0 * out_chop.to(d.dtype)
        a.copy_(update_tile(dev_a, up, a, st_a, (x[n] * sx)[None], (d[n] * sd)[None], c_lr, gen))
        counter += 1
        if every <= 0 or counter % every:
            continue
        yield c_lr
        if tile.slice == cols - 1:
            tile.sweeps += 1
        tile.slice = (tile.slice + 1) % cols


def chopped_tile(t: dict[str, float], dev_a: Any, dev_c: Any, up: UpdateParameters,
                 tu: UpdateParameters, io: tuple[list[float], list[int]], a: Tensor, c: Tensor,
                 h: Tensor, in_chop: Tensor, out_chop: Tensor, ts: Tensor,
                 st_a: dict[str, Tensor], st_c: dict[str, Tensor], x: Tensor, d: Tensor,
                 lr: float, counter: int, gen: torch.Generator) -> None:
    """Reference c-TTv2 update of one tile, in place: ``a``, ``c``, ``h`` ``[rows, cols]``,
    choppers ``in_chop [cols]``, ``out_chop [rows]`` (0/1), ``ts``: ``TILE_FIELDS``."""
    rows, cols = a.shape
    tile = TileScalars.of(ts)
    max_steps = float(tu.desired_bl)
    for c_lr in fast_updates(t, tile, dev_a, up, a, st_a, in_chop, out_chop, x, d, lr, counter,
                             gen):
        k, sweeps = tile.slice, tile.sweeps
        v = read_column(a[:, k], io[0], io[1], gen) * lr_scale(t, lr, c_lr, dev_a.dw_min,
                                                                 dev_c.dw_min, cols)
        v = torch.where(out_chop != in_chop[k], -v, v)
        omega = v if t["no_buffer"] else h[:, k] + v
        big = omega.abs() >= 1.0
        steps = torch.where(big, omega.trunc().clamp(-max_steps, max_steps),
                            torch.zeros_like(omega))
        if t["forget_buffer"]:
            omega = torch.where(big, omega * t["momentum"], omega)
        else:
            omega = omega - (1.0 - min(max(t["momentum"], 0.0), 1.0)) * steps
        h[:, k] = omega
        if bool(big.any()):
            sub = {key: val[:, k:k + 1] for key, val in st_c.items()}
            c[:, k:k + 1] = update_tile(dev_c, tu, c[:, k:k + 1].clone(), sub,
                                        torch.ones(1, 1, dtype=c.dtype), -steps[None],
                                        t["step"] * dev_c.dw_min, gen)
        if t["in_chop_prob"] > 0:
            if t["in_chop_random"]:
                flip = float(torch.rand((), generator=gen, dtype=torch.float64)) < \
                    t["in_chop_prob"]
            else:
                period = max(math.ceil(1.0 / t["in_chop_prob"]), 2)
                flip = sweeps % period + 1 == period
            if flip:
                in_chop[k] = 1 - in_chop[k]
        if k == cols - 1:
            if t["out_chop_prob"] > 0:
                flips = torch.rand(rows, generator=gen, dtype=torch.float64) < t["out_chop_prob"]
                out_chop.copy_(torch.where(flips, 1 - out_chop, out_chop))
    tile.store(ts)


def tiles(groups: int, in_sizes: list[int],
          out_sizes: list[int]) -> Iterator[tuple[int, int, int, slice, slice]]:
    """``(g, i, j, rows, cols)`` of every tile of a plan, in the kernels' order."""
    from .update_ops import _tiles

    n_in, n_out = len(in_sizes), len(out_sizes)
    for idx, (g, rows, cols) in enumerate(_tiles(groups, list(in_sizes), list(out_sizes))):
        i, j = divmod(idx % (n_in * n_out), n_out)
        yield g, i, j, rows, cols


def transfer_update_reference(fast: Tensor, slow: Tensor, buffer: Tensor, in_chop: Tensor,
                              out_chop: Tensor, tile_state: Tensor, fast_state: list[Tensor],
                              slow_state: list[Tensor], x: Tensor, d: Tensor, lr: float,
                              seed: Tensor, counter: int, in_sizes: list[int],
                              out_sizes: list[int], fast_kind: int, fast_params: list[float],
                              slow_kind: int, slow_params: list[float], pulse_type: int,
                              update_params: list[float], t_pulse_type: int,
                              t_update_params: list[float], io_f: list[float], io_i: list[int],
                              transfer_params: list[float]) -> None:
    """Reference kernel of ``analog::transfer_update``: the c-TTv2 update of a tile array
    ``[G, out_g, in_g]`` in place (tile after tile, one generator seeded with ``seed``)."""
    from .update_ops import decode_device, decode_update

    dev_a, dev_c = decode_device(fast_kind, fast_params), decode_device(slow_kind, slow_params)
    up, tu = decode_update(pulse_type, update_params), decode_update(t_pulse_type,
                                                                     t_update_params)
    t = decode_transfer(transfer_params)
    gen = torch.Generator().manual_seed(int(seed))
    g_count, out_g, in_g = fast.shape
    xg = x.to(fast.dtype).reshape(x.shape[0], g_count, in_g)
    dg = d.to(fast.dtype).reshape(d.shape[0], g_count, out_g)
    for g, i, j, rows, cols in tiles(g_count, in_sizes, out_sizes):
        sa = {k: v[g, rows, cols] for k, v in zip(STATE_KEYS, fast_state)}
        sc = {k: v[g, rows, cols] for k, v in zip(STATE_KEYS, slow_state)}
        a, c, h = fast[g, rows, cols].clone(), slow[g, rows, cols].clone(), buffer[g, rows, cols]
        ic, oc = in_chop[g, j, cols].clone(), out_chop[g, i, rows].clone()
        ts = tile_state[g, i, j].clone()
        chopped_tile(t, dev_a, dev_c, up, tu, (list(io_f), list(io_i)), a, c, h, ic, oc, ts, sa,
                     sc, xg[:, g, cols], dg[:, g, rows], float(lr), int(counter), gen)
        fast[g, rows, cols] = a
        slow[g, rows, cols] = c
        buffer[g, rows, cols] = h
        in_chop[g, j, cols] = ic
        out_chop[g, i, rows] = oc
        tile_state[g, i, j] = ts
