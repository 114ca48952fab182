"""Rewrite: replace one digital matrix layer by its analog twin, deciding by policy, and record it.

``ConversionContext`` carries everything a conversion decided (config, policy resolver, layer
map, the ``ConversionLog``); ``map_module`` is the one place where a module is swapped, for both
the FX path and the module-swap fallback.
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..conversion_log import ConversionLog, LayerRecord
from ..nn.attention import AnalogMultiheadAttention
from ..nn.base import AnalogLayerBase
from ..nn.experts import AnalogExperts, is_experts_module
from ..nn.recurrent import AnalogRNN
from ..nn.recurrent_torch import AnalogRecurrentBase
from ..progress import ProgressBar
from .canonicalize import is_transposed_conv1d, transposed_conv1d_to_linear
from .layer_map import UNSUPPORTED_MATRIX_LAYERS, lookup
from .policy import Decision, PolicyResolver, RPUConfig, UserConfigError, check_rpu_config

#: Analog modules conversion neither traces into nor maps again.
ANALOG_LEAVES = (AnalogLayerBase, AnalogMultiheadAttention, AnalogRecurrentBase, AnalogRNN,
                 AnalogExperts)

ConfigFn = Callable[[str, nn.Module, RPUConfig], RPUConfig]


@dataclass
class ConversionContext:
    """The state of one conversion."""

    rpu_config: RPUConfig
    resolver: PolicyResolver
    layer_map: dict[type, type]
    log: ConversionLog
    tile_module_class: type | None = None
    config_fn: ConfigFn | None = None
    """aihwkit's ``specific_rpu_config_fun(name, module, rpu_config) -> rpu_config``."""
    verbose: bool = False
    recorded: set[str] = field(default_factory=set)
    keep_functional: str = ""
    """Non-empty while the current graph must not be rewritten: the reason its functional
    products stay digital."""
    progress: ProgressBar | None = None
    """Advanced once per analog layer built."""
    modes: dict[int, bool] = field(default_factory=dict)
    """``id(module) -> module.training`` of the model's modules before the conversion, which
    runs in eval mode (shape checks must not touch BatchNorm statistics)."""
    new_modes: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)
    """Module built by the conversion -> the training mode of the module it replaced."""

    # ------------------------------------------------------------------ classification
    def is_matrix_module(self, module: nn.Module) -> bool:
        """A digital module conversion must look at (mappable or known-unsupported)."""
        if isinstance(module, ANALOG_LEAVES):
            return False
        return (lookup(self.layer_map, type(module)) is not None or is_transposed_conv1d(module)
                or is_experts_module(module) or isinstance(module, UNSUPPORTED_MATRIX_LAYERS))

    def is_leaf(self, module: nn.Module) -> bool:
        """Tracing does not enter matrix modules and analog layers."""
        return self.is_matrix_module(module) or isinstance(module, ANALOG_LEAVES)

    # ------------------------------------------------------------------ records
    def record(self, name: str, source_type: str, decision_or_reason: Decision | str,
               config: RPUConfig | None = None) -> None:
        """Append a LayerRecord (once per name)."""
        if name in self.recorded:
            return
        self.recorded.add(name)
        if isinstance(decision_or_reason, Decision):
            reason = decision_or_reason.reason
        else:
            reason = decision_or_reason
        status = "digital" if reason else "analog"
        cfg = None
        if status == "analog" and config is not None:
            cfg_dict = config.to_dict()
            cfg = None if cfg_dict == self.log.rpu_config else cfg_dict
        self.log.records.append(LayerRecord(name, source_type, status, reason, cfg))
        if self.verbose:
            print(f"{name}: {source_type} -> {status}{' (' + reason + ')' if reason else ''}")

    def unrecord(self, reason: str, names: Callable[[str], bool], start: int = 0) -> None:
        """Swaps were undone: the analog records from record ``start`` on whose name
        ``names`` accepts say the layer stayed digital, and why."""
        records = self.log.records
        for i in range(start, len(records)):
            rec = records[i]
            if rec.status == "analog" and names(rec.name):
                records[i] = dataclasses.replace(rec, status="digital", reason=reason,
                                                 rpu_config=None)

    def layer_config(self, decision: Decision, name: str, module: nn.Module) -> RPUConfig:
        """The decided config, passed through ``config_fn`` when given."""
        cfg = decision.rpu_config
        if self.config_fn is not None:
            try:
                cfg = self.config_fn(name, module, copy.deepcopy(cfg))
            except Exception as exc:
                raise UserConfigError(f"specific_rpu_config_fun({name!r}) raised "
                                      f"{type(exc).__name__}: {exc}") from exc
            check_rpu_config(cfg, f"specific_rpu_config_fun({name!r}) return value")
        return cfg

    def keep_mode(self, new: nn.Module, old: nn.Module) -> None:
        """``new`` replaces ``old`` (still alive, so its id is its own): it will get the
        training mode ``old`` had before the conversion."""
        mode = self.modes.get(id(old))
        if new is not old and mode is not None:
            self.new_modes[new] = mode

    def build_analog(self, digital: nn.Module, cfg: RPUConfig) -> nn.Module:
        """``layer_map[type(digital)].from_digital(digital, cfg, tile_module_class)``."""
        hit = lookup(self.layer_map, type(digital))
        if hit is None:
            raise TypeError(f"no analog layer for {type(digital).__name__} in the layer map")
        analog = hit[1].from_digital(digital, cfg, self.tile_module_class)
        self.keep_mode(analog, digital)
        if self.progress is not None:
            self.progress.update()
        return analog

    # ------------------------------------------------------------------ module swap
    def map_module(self, module: nn.Module, name: str) -> nn.Module:
        """The module to put at ``name`` in place of ``module`` (``module`` itself if it stays
        digital); every matrix layer gets a record."""
        source = type(module).__name__
        hit = lookup(self.layer_map, type(module))
        if hit is not None and hit[0] is nn.MultiheadAttention and isinstance(hit[1], type) \
                and issubclass(hit[1], AnalogMultiheadAttention):
            return self._map_attention(module, name)
        if is_experts_module(module):
            return self._map_experts(module, name)
        if is_transposed_conv1d(module):
            canonical: type = nn.Linear
        else:
            if hit is None:
                if isinstance(module, UNSUPPORTED_MATRIX_LAYERS):
                    self.record(name, source, f"unsupported: no analog layer for {source}")
                return module
            canonical = hit[0]
        decision = self.resolver.decide([name], type(module), canonical)
        if decision.rpu_config is None:
            self.record(name, source, decision)
            return module
        cfg = self.layer_config(decision, name, module)
        try:
            digital = transposed_conv1d_to_linear(module) if is_transposed_conv1d(module) \
                else module
            analog = self.build_analog(digital, cfg)
        except (TypeError, ValueError) as exc:
            self.record(name, source, f"unsupported: {exc}")
            return module
        if isinstance(analog, AnalogRecurrentBase):
            self._record_matrices(analog, name, source, cfg)
            return analog
        self.record(name, "Conv1D" if is_transposed_conv1d(module) else source,
                    Decision(cfg), cfg)
        return analog

    def _record_matrices(self, analog: AnalogRecurrentBase | AnalogExperts, name: str,
                         source: str, cfg: RPUConfig) -> None:
        """One record per matrix of a layer made of several (the report's rows)."""
        for sub, _ in analog.named_analog_layers():
            self.record(f"{name}.{sub}" if name else sub,
                        f"{source}.{analog.digital_parameter_name(sub)}", Decision(cfg), cfg)

    def _map_experts(self, experts: nn.Module, name: str) -> nn.Module:
        """A Hugging Face experts module -> ``AnalogExperts`` (decided as an ``nn.Linear``:
        every expert matrix is one)."""
        source = type(experts).__name__
        decision = self.resolver.decide([name], type(experts), nn.Linear)
        if decision.rpu_config is None:
            self.record(name, source, decision)
            return experts
        cfg = self.layer_config(decision, name, experts)
        try:
            analog = AnalogExperts.from_digital(experts, cfg, self.tile_module_class)
        except (TypeError, ValueError) as exc:
            self.record(name, source, f"unsupported: {exc}")
            return experts
        self.keep_mode(analog, experts)
        if self.progress is not None:
            self.progress.update()
        self._record_matrices(analog, name, source, cfg)
        return analog

    def _map_attention(self, mha: nn.MultiheadAttention, name: str) -> nn.Module:
        """MHA -> AnalogMultiheadAttention with each projection decided on its own: a name or
        regex rule for ``<name>.q_proj`` etc. beats the decision for the attention module."""
        whole = self.resolver.decide([name], type(mha))
        projections = ("q_proj", "k_proj", "v_proj", "out_proj")
        decisions: dict[str, Decision] = {}
        for proj in projections:
            own = self.resolver.decide([f"{name}.{proj}"], nn.Linear)
            decisions[proj] = own if own.source in ("name", "regex", "exclude") else whole
        if all(d.rpu_config is None for d in decisions.values()):
            self.record(f"{name}.in_proj", "MultiheadAttention.in_proj", decisions["q_proj"])
            self.record(f"{name}.out_proj", "MultiheadAttention.out_proj", decisions["out_proj"])
            return mha
        canonical = AnalogMultiheadAttention.from_multihead_attention(mha)
        for proj in projections:
            decision, qual = decisions[proj], f"{name}.{proj}"
            kind = "out_proj" if proj == "out_proj" else "in_proj"
            if decision.rpu_config is None:
                self.record(qual, f"MultiheadAttention.{kind}", decision)
                continue
            cfg = self.layer_config(decision, qual, getattr(canonical, proj))
            setattr(canonical, proj, self.build_analog(getattr(canonical, proj), cfg))
            self.record(qual, f"MultiheadAttention.{kind}", Decision(cfg), cfg)
        return canonical


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at qualified ``name`` (not the root)."""
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def direct_matrix_parameters(module: nn.Module) -> list[str]:
    """Names of ``module``'s own (not its children's) parameters with two or more dimensions."""
    return [n for n, p in module.named_parameters(recurse=False) if p is not None and p.dim() >= 2]

