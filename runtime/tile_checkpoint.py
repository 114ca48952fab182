"""Checkpoints of a tile array: tensors plus the config as JSON-able data, never a pickle.

``state_dict`` holds the tensors of ``TileArray`` and ``ChipState`` and ``_extra_state``:
``{"format": FORMAT, "rpu_config": <config dict>, "plan": {...}}``. Loading reads the format:
format 1 (before the chip weights were named ``chip_weight``) is migrated, a newer format than
this version writes is refused with a clear error. With ``load_rpu_config`` (the default) the
stored config replaces the array's (and its tile plan); without it the stored plan must match.

``TileCheckpoint`` is a mixin of ``TileArray``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .config import ConfigBase, RPUConfig
from .errors import ModuleError
from .tiling import TilePlan

#: The ``_extra_state`` format this version writes. 2: ``current_weight`` became ``chip_weight``.
FORMAT = 2
_RENAMED = {1: {"current_weight": "chip_weight"}}


class TileCheckpoint(nn.Module):
    """``state_dict`` support of ``TileArray`` (see the module docstring)."""

    #: Set by the layers' ``load_state_dict`` for the duration of one load.
    load_rpu_config: bool = True
    strict_rpu_config_check: bool = True

    def get_extra_state(self) -> dict[str, Any]:
        """The config as plain JSON-able data (no pickled objects in checkpoints)."""
        p = self.plan
        return {"format": FORMAT, "rpu_config": self.rpu_config.to_dict(),
                "plan": {"groups": p.groups, "in_sizes": list(p.in_sizes),
                         "out_sizes": list(p.out_sizes)}}

    def set_extra_state(self, state: Any) -> None:
        """Handled before the tensors load, in ``_load_from_state_dict``."""

    def apply_rpu_config(self, rpu_config: RPUConfig) -> None:
        """Adopt a new config; a new tile plan resizes the per-tile buffers (values reset)."""
        p = self.plan
        plan = TilePlan.build(p.in_features, p.out_features, rpu_config.mapping.max_input_size,
                              rpu_config.mapping.max_output_size, p.groups)
        self.rpu_config = rpu_config
        if plan != p:
            self.plan = plan
            shape = (plan.groups, plan.n_in, plan.out_features)
            self.mapping_scales = self.mapping_scales.new_ones(shape)
            self.drift_baseline = self.drift_baseline.new_ones(shape)
            self.drift_alpha = self.drift_alpha.new_ones(shape)
            self._scaled = False
        self._sync_hwa()

    def _check_stored_plan(self, where: str, stored: ConfigBase, plan: dict) -> None:
        if self.strict_rpu_config_check and type(stored) is not type(self.rpu_config):
            raise ModuleError(
                f"{where}: checkpoint rpu_config is {type(stored).__name__}, the layer's is "
                f"{type(self.rpu_config).__name__} (pass strict_rpu_config_check=False to load "
                "anyway)")
        if (tuple(plan.get("in_sizes", ())), tuple(plan.get("out_sizes", ()))) != (
                self.plan.in_sizes, self.plan.out_sizes):
            raise ModuleError(
                f"{where}: mapping parameter mismatch: checkpoint tiles {plan.get('in_sizes')}x"
                f"{plan.get('out_sizes')}, layer tiles {list(self.plan.in_sizes)}x"
                f"{list(self.plan.out_sizes)}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        where = prefix.rstrip(".") or "tile array"
        extra = state_dict.get(prefix + "_extra_state")
        if isinstance(extra, dict) and "rpu_config" in extra:
            fmt = extra.get("format", 1)
            if not isinstance(fmt, int) or fmt > FORMAT:
                raise ModuleError(f"{where}: checkpoint format {fmt!r} is newer than this "
                                  f"version of analog-compiler reads ({FORMAT}); upgrade it")
            for old_fmt in range(fmt, FORMAT):
                for old, new in _RENAMED.get(old_fmt, {}).items():
                    if prefix + old in state_dict:
                        state_dict[prefix + new] = state_dict.pop(prefix + old)
            stored = ConfigBase.from_dict(extra["rpu_config"])
            if self.load_rpu_config:
                self.apply_rpu_config(stored)
            else:
                self._check_stored_plan(where, stored, extra.get("plan", {}))
        key = prefix + "chip_weight"
        if key in state_dict:  # programmed or not: adopt the stored shape
            self.chip_weight = self.chip_weight.new_empty(state_dict[key].shape)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        scales = state_dict.get(prefix + "mapping_scales")
        if isinstance(scales, Tensor) and scales.shape == self.mapping_scales.shape:
            self._scaled = bool((scales != 1).any())

    def _apply(self, fn, recurse: bool = True):
        # ``.half()`` / ``.to(dtype)`` would cast the drift time too (86400 s is inf in float16):
        # it only follows the device.
        t_inference = self.t_inference
        out = super()._apply(fn, recurse)
        if self.t_inference.dtype != torch.float64:
            self.t_inference = t_inference.to(device=self.t_inference.device)
        return out
