"""The working copy ``convert`` rewrites: a deep copy of the model that shares (does not copy)
the weights of the layers about to become analog, since each analog layer copies its weights
into its own tiles anyway. Whatever shared weight is still in the converted model afterwards
(a layer that stayed digital, a tied embedding) gets its own copy, so the caller's model is
never aliased. For a large model this saves one full copy of the matrix weights, in time and in
peak memory."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


def _storage_key(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without storage
        return 0


def copy_sharing_weights(model: nn.Module, will_map: Callable[[nn.Module], bool]
                         ) -> tuple[nn.Module, set[int]]:
    """``(deep copy of model, storage keys of the shared weights)``: the direct parameters of
    every module with ``will_map(module)`` are shared with ``model``, the rest is copied."""
    memo: dict[int, object] = {}
    shared: set[int] = set()
    for module in model.modules():
        if not will_map(module):
            continue
        for p in module.parameters(recurse=False):
            key = _storage_key(p) if type(p) is nn.Parameter else 0
            if key:
                memo[id(p)] = p
                shared.add(key)
    return copy.deepcopy(model, memo), shared


def unshare(model: nn.Module, shared: set[int]) -> None:
    """Give every parameter of ``model`` that still uses a ``shared`` storage its own copy
    (tied parameters stay tied)."""
    if not shared:
        return
    copies: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or _storage_key(p) not in shared:
                continue
            if id(p) not in copies:
                copies[id(p)] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
            module._parameters[name] = copies[id(p)]
