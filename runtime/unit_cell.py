"""The state and the update of a training tile array with a ``UnitCellRPUConfig`` (transfer
compounds; semantics in ``runtime/transfer.py``).

Buffers (tensors only; a checkpoint loads with ``weights_only=True``): ``tc_weights [2, G,
out_g, in_g]`` (the fast ``A`` and the slow ``C`` array), ``dev_<key> [2, G, out_g, in_g]``
(their per-device parameters), ``tc_buffer`` (c-TTv2's ``H``), ``tc_in_chop [G, n_out, in_g]``
and ``tc_out_chop [G, n_in, out_g]`` (chopper flags of each tile's columns and rows),
``tc_tile [G, n_in, n_out, 4]`` (``runtime.transfer.TILE_FIELDS`` per tile) and ``tc_vectors``
(vectors updated so far). The layer's ``weight`` is ``g_A * A + g_C * C``, recomputed after
every update.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from . import agad, one_sided
from .config.transfer import (
    SIMULATED_UNIT_CELLS,
    ChoppedTransferCompound,
    DynamicTransferCompound,
    OneSidedUnitCell,
    UnitCellRPUConfig,
)
from .ops import agad_update, tile_update, transfer_update
from .tiling import TilePlan
from .transfer import quiet_io, read_column, transfer_every
from .update import STATE_KEYS, sample_device_state

BUFFERS = ("tc_weights", "tc_buffer", "tc_in_chop", "tc_out_chop", "tc_tile", "tc_vectors",
           "tc_refreshes", *agad.BUFFERS)
"""The unit-cell buffers besides ``dev_<key>`` (``tc_refreshes``: ``OneSidedUnitCell`` only,
see ``runtime/one_sided.py``; ``agad.BUFFERS``: AGAD only, see ``runtime/agad.py``)."""
FLOAT64_BUFFERS = ("tc_tile",)
"""The buffers kept in float64 whatever the layer's dtype (counters and running maxima)."""


def _one_sided(arr: Any) -> bool:
    return isinstance(arr.rpu_config.device, OneSidedUnitCell)


def registered(arr: Any) -> bool:
    """Whether ``arr`` holds the buffers its unit cell needs (one-sided or transfer)."""
    if "tc_weights" not in arr._buffers:
        return False
    agad_cell = isinstance(arr.rpu_config.device, DynamicTransferCompound)
    return ("tc_refreshes" in arr._buffers) == _one_sided(arr) and \
        ("tc_mean" in arr._buffers) == agad_cell


def check_simulated(rpu_config: UnitCellRPUConfig) -> None:
    """Refuse the compounds that are configs only."""
    if isinstance(rpu_config.device, OneSidedUnitCell):
        one_sided.check(rpu_config.device)
        return
    if not isinstance(rpu_config.device, SIMULATED_UNIT_CELLS):
        raise NotImplementedError(
            f"UnitCellRPUConfig.device: {type(rpu_config.device).__name__} is a config only")


def register(arr: Any) -> None:
    """(Re)create the unit-cell buffers of ``arr`` (zeros) for its plan."""
    unregister(arr)
    if _one_sided(arr):
        one_sided.register(arr)
        return
    w = arr.weight
    plan: TilePlan = arr.plan
    n_in, n_out = len(plan.in_sizes), len(plan.out_sizes)
    g, out_g, in_g = w.shape
    kw = {"device": w.device}
    for key in STATE_KEYS:
        arr.register_buffer("dev_" + key, torch.zeros((2, *w.shape), dtype=w.dtype, **kw))
    arr.register_buffer("tc_weights", torch.zeros((2, *w.shape), dtype=w.dtype, **kw))
    arr.register_buffer("tc_buffer", torch.zeros(w.shape, dtype=w.dtype, **kw))
    arr.register_buffer("tc_in_chop", torch.zeros((g, n_out, in_g), dtype=torch.int8, **kw))
    arr.register_buffer("tc_out_chop", torch.zeros((g, n_in, out_g), dtype=torch.int8, **kw))
    arr.register_buffer("tc_tile", torch.zeros((g, n_in, n_out, 4), dtype=torch.float64, **kw))
    arr.register_buffer("tc_vectors", torch.zeros((), dtype=torch.int64, **kw))
    if isinstance(arr.rpu_config.device, DynamicTransferCompound):
        agad.register(arr)


def unregister(arr: Any) -> None:
    """Drop the unit-cell buffers (the config changed to a single-device one)."""
    for name in BUFFERS:
        arr._buffers.pop(name, None)


def device_states(arr: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The fast and the slow array's per-device tensors, each in ``STATE_KEYS`` order."""
    states = [getattr(arr, "dev_" + key) for key in STATE_KEYS]
    return [s[0] for s in states], [s[1] for s in states]


@torch.no_grad()
def sample(arr: Any, seed: int) -> None:
    """Draw both arrays' per-device parameters (the fast from ``seed``, the slow from
    ``seed + 1``)."""
    cfg = arr.rpu_config.device
    if _one_sided(arr):
        one_sided.sample(arr, seed)
        return
    for k, dev in enumerate(cfg.unit_cell_devices):
        state = sample_device_state(dev, tuple(arr.weight.shape), int(seed) + k,
                                    arr.weight.dtype, arr.weight.device)
        for key, value in state.items():
            getattr(arr, "dev_" + key)[k].copy_(value)


@torch.no_grad()
def clip(arr: Any) -> None:
    """Clip both arrays into their devices' bounds and recompute the visible weight."""
    lo, hi = arr.dev_min_bound, arr.dev_max_bound
    arr.tc_weights.copy_(torch.minimum(torch.maximum(arr.tc_weights, lo), hi))
    reduce(arr)


@torch.no_grad()
def reduce(arr: Any) -> None:
    """``weight = g_A * A + g_C * C`` (one-sided: ``g+ - g-``)."""
    if _one_sided(arr):
        one_sided.reduce(arr)
        return
    g_a, g_c = arr.rpu_config.device.gammas
    a, c = arr.tc_weights[0], arr.tc_weights[1]
    if g_a == 0 and g_c == 1:
        arr.weight.copy_(c)
    else:
        arr.weight.copy_(g_a * a + g_c * c)


@torch.no_grad()
def set_weights(arr: Any) -> None:
    """aihwkit's ``onSetWeights``: ``A = 0``, ``C = W / g_C`` (clipped), counters and buffer
    reset; ``arr.weight`` holds the requested weights on entry."""
    if _one_sided(arr):
        one_sided.set_weights(arr)
        return
    _, g_c = arr.rpu_config.device.gammas
    arr.tc_weights[0].zero_()
    arr.tc_weights[1].copy_(arr.weight / g_c)
    arr.tc_buffer.zero_()
    arr.tc_tile[..., 0:2].zero_()
    for name in agad.BUFFERS:
        if name in arr._buffers:
            getattr(arr, name).zero_()
    clip(arr)


def update(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """The unit-cell update of the batch ``x [N, G * in_g]``, ``d [N, G * out_g]``."""
    rc: UnitCellRPUConfig = arr.rpu_config
    cfg = rc.device
    if isinstance(cfg, OneSidedUnitCell):
        one_sided.update(arr, x, d, lr, seed)
        return
    if isinstance(cfg, DynamicTransferCompound):
        agad_update(arr, x, d, lr, seed)
    elif isinstance(cfg, ChoppedTransferCompound):
        transfer_update(arr, x, d, lr, seed)
    else:
        _tiki_taka(arr, x, d, lr, seed)
    arr.tc_vectors += x.shape[0]
    reduce(arr)


def _tiki_taka(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """Tiki-Taka: the fast update in segments between the transfer points (the fused
    ``tile_update``), each transfer a read and a pulsed update of the read columns."""
    rc: UnitCellRPUConfig = arr.rpu_config
    cfg = rc.device
    plan: TilePlan = arr.plan
    dev_a, dev_c = cfg.unit_cell_devices
    fast_state, slow_state = device_states(arr)
    n_vec = x.shape[0]
    every = transfer_every(cfg.units_in_mbatch, cfg.every, n_vec)
    counter = int(arr.tc_vectors)
    lr_t = cfg.lr_transfer * (lr if cfg.scale_transfer_lr else 1.0)
    start, k = 0, 0
    while start < n_vec:
        stop = n_vec
        if every > 0:  # the next vector after which a transfer happens
            stop = min(n_vec, start + every - (counter + start) % every)
        a = arr.tc_weights[0]
        tile_update(a, fast_state, x[start:stop], d[start:stop], cfg.fast_count_lr(lr),
                    torch.tensor((seed * 7 + 2 * k) % 2**62), plan, dev_a, rc.update)
        if every > 0 and (counter + stop) % every == 0 and lr_t != 0:
            _transfer(arr, dev_c, lr_t, (seed * 7 + 2 * k + 1) % 2**62)
        start, k = stop, k + 1


def _transfer(arr: Any, dev_c: Any, lr_t: float, seed: int) -> None:
    """One Tiki-Taka transfer on every tile: ``n_reads_per_transfer`` columns of ``A`` read
    and written into ``C`` (``C += lr_t * v e_k^T`` by pulses)."""
    cfg = arr.rpu_config.device
    plan: TilePlan = arr.plan
    io = quiet_io(cfg)
    gen = torch.Generator().manual_seed(seed)
    a_all, c_all = arr.tc_weights[0], arr.tc_weights[1]
    _, slow_state = device_states(arr)
    row_off, col_off = TilePlan.offsets(plan.out_sizes), TilePlan.offsets(plan.in_sizes)
    for g in range(a_all.shape[0]):
        for i, (c0, cols) in enumerate(zip(col_off, plan.in_sizes)):
            for j, (r0, rows) in enumerate(zip(row_off, plan.out_sizes)):
                n = min(cfg.n_reads_per_transfer, cols)
                start = int(arr.tc_tile[g, i, j, 0])
                if cfg.random_selection:
                    start = int(torch.randint(cols, (), generator=gen))
                sel = (torch.arange(n) + start) % cols + c0
                sel = sel.to(a_all.device)
                v = read_column(a_all[g, r0:r0 + rows][:, sel], io[0], io[1], gen)
                c_sub = c_all[g, r0:r0 + rows][:, sel].contiguous()[None]
                st = [s[g, r0:r0 + rows][:, sel].contiguous()[None] for s in slow_state]
                eye = torch.eye(n, dtype=c_sub.dtype, device=c_sub.device)
                part = SimpleNamespace(in_sizes=(n,), out_sizes=(rows,))  # one sub-tile
                tile_update(c_sub, st, eye, -v.T.contiguous(), lr_t,
                            torch.randint(2**62, (), generator=gen), part, dev_c,
                            cfg.transfer_update)
                c_all[g, r0:r0 + rows, sel] = c_sub[0]
                arr.tc_tile[g, i, j, 0] = float((start + n) % cols)
