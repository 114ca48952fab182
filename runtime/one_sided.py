"""``OneSidedUnitCell`` on a training tile array (aihwkit 1.2.0's ``OneSidedRPUDevice``).

Two devices per weight that are only ever potentiated: ``tc_weights[1]`` is ``g+`` (aihwkit's
``unit_cell_devices[1]``), ``tc_weights[0]`` is ``g-`` (``unit_cell_devices[0]``; one device
in the config serves both, drawn twice), and the visible weight is ``W = g+ - g-``.

Update (aihwkit's ``doSparseUpdate``): every coincidence of the pulsed update of ``W -= lr d^T
x`` that would raise ``W`` is an up pulse on ``g+``, every one that would lower it an up pulse
on ``g-``. Both halves run the fused ``analog::tile_update`` with the same seed, hence the same
pulse trains: ``g+`` on ``(x, d)`` and ``g-`` on ``(x, -d)``, each with its down steps
(``scale_down``) set to 0, and both with the bit-line arithmetic of aihwkit's compound
granularity (the mean ``weight_granularity`` of the two devices). A zero step is exact for every
model but ``ExpStepDevice``, whose additive step noise does not vanish with the step (refused).

Refresh (``refresh_every > 0``; after vector ``c`` with ``c % every == 0``, ``every =
refresh_every`` times the batch size with ``units_in_mbatch``): each column ``k`` of both
devices is read (``refresh_forward``, noise and bound management off, as the transfer read), and
every cross-point with ``g+ > g-`` and ``g+ / |w_max+| > upper and g- / |w_max-| > lower`` (or
the mirror image) is reset on both devices (to ``reset`` plus ``reset_std`` noise, clipped) and
the larger one is re-written with the difference by a pulsed update (``refresh_update``, ``x =
e_k``, ``d = -(g+ - g-)``, learning rate 1). ``copy_inverted``: ``g+``'s up and down steps are
swapped and its bounds mirrored (aihwkit's ``copyInvertDeviceParameter``).

Buffers: ``tc_weights [2, G, out_g, in_g]``, ``dev_<key> [2, ...]``, ``tc_vectors`` (vectors
updated so far) and ``tc_refreshes`` (cross-points refreshed so far, aihwkit's
``refresh_counter``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from .config.devices import ExpStepDevice
from .config.transfer import OneSidedUnitCell
from .ops import tile_update
from .periphery import kernel_io
from .transfer import read_column
from .update import STATE_KEYS, sample_device_state

PLUS, MINUS = 1, 0
"""Indices of ``g+`` and ``g-`` in ``tc_weights`` (aihwkit's device order)."""
BUFFERS = ("tc_weights", "tc_vectors", "tc_refreshes")
"""The one-sided buffers besides ``dev_<key>``."""


def devices(cfg: OneSidedUnitCell) -> tuple[Any, Any]:
    """The device configs of ``g-`` and ``g+``."""
    devs = cfg.unit_cell_devices
    return devs[0], devs[-1]


def check(cfg: OneSidedUnitCell) -> None:
    """Refuse what the simulation cannot do exactly."""
    for k, dev in enumerate(devices(cfg)):
        if isinstance(dev, ExpStepDevice):
            raise NotImplementedError(
                f"OneSidedUnitCell.unit_cell_devices[{k}]: ExpStepDevice is not simulated "
                "(its additive step noise moves a device on the pulses routed to the other one)")
        if dev.reset_dtod != 0:
            raise NotImplementedError(f"OneSidedUnitCell.unit_cell_devices[{k}].reset_dtod > 0 "
                                      "is not simulated by the refresh")


def register(arr: Any) -> None:
    """(Re)create the one-sided buffers of ``arr`` (zeros)."""
    w = arr.weight
    kw = {"device": w.device}
    for key in STATE_KEYS:
        arr.register_buffer("dev_" + key, torch.zeros((2, *w.shape), dtype=w.dtype, **kw))
    arr.register_buffer("tc_weights", torch.zeros((2, *w.shape), dtype=w.dtype, **kw))
    arr.register_buffer("tc_vectors", torch.zeros((), dtype=torch.int64, **kw))
    arr.register_buffer("tc_refreshes", torch.zeros((), dtype=torch.int64, **kw))


@torch.no_grad()
def sample(arr: Any, seed: int) -> None:
    """Draw ``g-``'s per-device parameters from ``seed`` and ``g+``'s from ``seed + 1``."""
    cfg: OneSidedUnitCell = arr.rpu_config.device
    for k, dev in enumerate(devices(cfg)):
        state = sample_device_state(dev, tuple(arr.weight.shape), int(seed) + k,
                                    arr.weight.dtype, arr.weight.device)
        if k == PLUS and cfg.copy_inverted:
            state["scale_up"], state["scale_down"] = state["scale_down"], state["scale_up"]
            state["max_bound"], state["min_bound"] = -state["min_bound"], -state["max_bound"]
        for key, value in state.items():
            getattr(arr, "dev_" + key)[k].copy_(value)


@torch.no_grad()
def reduce(arr: Any) -> None:
    """``weight = g+ - g-``."""
    torch.sub(arr.tc_weights[PLUS], arr.tc_weights[MINUS], out=arr.weight)


@torch.no_grad()
def clip(arr: Any) -> None:
    """Clip both devices into their bounds and recompute the visible weight."""
    lo, hi = arr.dev_min_bound, arr.dev_max_bound
    arr.tc_weights.copy_(torch.minimum(torch.maximum(arr.tc_weights, lo), hi))
    reduce(arr)


@torch.no_grad()
def set_weights(arr: Any) -> None:
    """aihwkit's ``onSetWeights``: ``g+ = max(W, 0)``, ``g- = max(-W, 0)`` (clipped), counters
    reset; ``arr.weight`` holds the requested weights on entry."""
    w = arr.weight.detach().clone()
    arr.tc_weights[PLUS].copy_(w.clamp(min=0))
    arr.tc_weights[MINUS].copy_((-w).clamp(min=0))
    arr.tc_refreshes.zero_()
    clip(arr)


def _up_only(arr: Any, k: int) -> list[Tensor]:
    """Device ``k``'s state with its down steps zeroed (it is only potentiated)."""
    return [torch.zeros_like(s[k]) if key == "scale_down" else s[k]
            for key, s in zip(STATE_KEYS, (getattr(arr, "dev_" + n) for n in STATE_KEYS))]


def refresh_every(cfg: OneSidedUnitCell, batch: int) -> int:
    """Vectors between refresh checks (0: never)."""
    if cfg.refresh_every <= 0:
        return 0
    return cfg.refresh_every * batch if cfg.units_in_mbatch else cfg.refresh_every


def update(arr: Any, x: Tensor, d: Tensor, lr: float, seed: int) -> None:
    """The one-sided update of the batch ``x [N, G * in_g]``, ``d [N, G * out_g]`` (module
    docstring), in segments between the refresh points."""
    rc = arr.rpu_config
    cfg: OneSidedUnitCell = rc.device
    dev_m, dev_p = devices(cfg)
    # aihwkit's compound weight granularity: the mean of the two devices'
    gran = 0.5 * (dev_m.weight_granularity + dev_p.weight_granularity)
    st_p, st_m = _up_only(arr, PLUS), _up_only(arr, MINUS)
    n_vec = x.shape[0]
    every = refresh_every(cfg, n_vec)
    counter = int(arr.tc_vectors)
    start, k = 0, 0
    while start < n_vec:
        stop = n_vec
        if every > 0:
            stop = min(n_vec, start + every - (counter + start) % every)
        s = torch.tensor((seed * 7 + 2 * k) % 2**62)
        xs, ds = x[start:stop], d[start:stop]
        tile_update(arr.tc_weights[PLUS], st_p, xs, ds, lr, s, arr.plan, dev_p, rc.update,
                    gran)
        tile_update(arr.tc_weights[MINUS], st_m, xs, -ds, lr, s, arr.plan, dev_m, rc.update,
                    gran)
        if every > 0 and (counter + stop) % every == 0:
            arr.tc_refreshes += refresh(arr, (seed * 7 + 2 * k + 1) % 2**62)
        start, k = stop, k + 1
    arr.tc_vectors += n_vec
    reduce(arr)


@torch.no_grad()
def refresh(arr: Any, seed: int) -> int:
    """One refresh of every column of every tile (module docstring); returns the number of
    refreshed cross-points."""
    cfg: OneSidedUnitCell = arr.rpu_config.device
    io = cfg.refresh_forward.replace(noise_management="none", bound_management="none")
    io_f, io_i = kernel_io(io)
    gen = torch.Generator().manual_seed(int(seed))
    devs = devices(cfg)
    w_max = (abs(devs[PLUS].w_max), abs(devs[MINUS].w_max))
    up_t, lo_t = cfg.refresh_upper_thres, cfg.refresh_lower_thres
    states = [getattr(arr, "dev_" + key) for key in STATE_KEYS]
    g_all, in_g = arr.weight.shape[0], arr.weight.shape[2]
    count = 0
    for g in range(g_all):  # a column read is elementwise: all columns at once
        wp = read_column(arr.tc_weights[PLUS, g], io_f, io_i, gen)
        wm = read_column(arr.tc_weights[MINUS, g], io_f, io_i, gen)
        rp, rm = wp / w_max[0], wm / w_max[1]
        hit = torch.where(wp > wm, (rp > up_t) & (rm > lo_t), (rp > lo_t) & (rm > up_t))
        if not bool(hit.any()):
            continue
        count += int(hit.sum())
        for k in (PLUS, MINUS):
            dev, w = devs[k], arr.tc_weights[k, g]
            noise = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w) \
                if dev.reset_std > 0 else torch.zeros_like(w)
            reset = torch.minimum(torch.maximum(dev.reset + dev.reset_std * noise,
                                                states[3][k, g]), states[2][k, g])
            arr.tc_weights[k, g] = torch.where(hit, reset, w)
        diff = (wp - wm).abs()
        # the write: vector c is e_c with d = -(difference of column c), as column-wise writes
        eye = torch.eye(in_g, dtype=diff.dtype, device=diff.device)
        part = SimpleNamespace(in_sizes=tuple(arr.plan.in_sizes),
                               out_sizes=tuple(arr.plan.out_sizes))
        for k, mask in ((PLUS, hit & (wp > wm)), (MINUS, hit & (wp <= wm))):
            if not bool(mask.any()):
                continue
            v = torch.where(mask, diff, torch.zeros_like(diff))
            sub = arr.tc_weights[k, g][None].contiguous()
            st = [s[k, g][None].contiguous() for s in states]
            tile_update(sub, st, eye, -v.T.contiguous().to(sub.dtype), 1.0,
                        torch.randint(2**62, (), generator=gen), part, devs[k],
                        cfg.refresh_update)
            arr.tc_weights[k, g] = sub[0]
    return count
