"""Per-layer policy: which rpu_config each matrix layer gets, or whether it stays digital.

Keeps "what the user wants" apart from "what the target can do" (the layer map). Precedence,
highest first::

    exclude (names or types)  >  exact qualified name  >  regex  >  module type  >  global config

A value of ``None`` means "keep this layer digital". Regexes are matched with ``re.fullmatch``
against the qualified module name (for a functional call, the name of the module it becomes,
e.g. ``blocks.0.w_linear``, or the parameter's own name ``blocks.0.w``). Type overrides follow the
MRO (a subclass of ``nn.Linear`` gets the ``nn.Linear`` override unless it has its own); a
functional call counts as its module form (``F.linear``/``@`` -> ``nn.Linear``, ``F.conv2d`` ->
``nn.Conv2d``). An excluded name excludes its whole subtree.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..runtime import RPU_CONFIG_TYPES, RPUConfig


class UserConfigError(TypeError):
    """A config the user supplied (directly or through a callback) is wrong; conversion passes
    let it through unchanged instead of falling back."""


def check_rpu_config(value: Any, where: str, *, allow_none: bool = False) -> None:
    """``TypeError`` naming ``where`` unless ``value`` is an RPU config (or None if allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, RPU_CONFIG_TYPES):
        extra = " or None (keep digital)" if allow_none else ""
        raise UserConfigError(f"{where} must be an InferenceRPUConfig, FloatingPointRPUConfig, "
                              "SingleRPUConfig, DigitalRankUpdateRPUConfig or "
                              f"UnitCellRPUConfig{extra}, "
                              f"got {type(value).__name__}")


@dataclass
class Decision:
    """The policy's answer for one layer."""

    rpu_config: RPUConfig | None
    """The config to map with; None: keep digital."""
    reason: str = ""
    """Why it stays digital (``excluded``, ``policy: ...``); empty when mapped."""
    source: str = "global"
    """Which rule decided: ``exclude``, ``name``, ``regex``, ``type``, ``global``."""


@dataclass
class LayerPolicy:
    """Per-layer overrides of the global rpu_config (values: a config, or None = digital)."""

    names: dict[str, RPUConfig | None] = field(default_factory=dict)
    """Exact qualified module names."""
    regex: dict[str, RPUConfig | None] = field(default_factory=dict)
    """Regular expressions (``re.fullmatch`` on qualified names), tried in insertion order."""
    types: dict[type, RPUConfig | None] = field(default_factory=dict)
    """Digital module types (``nn.Linear``, ``nn.Conv2d``, ...); matched along the MRO."""
    exclude: list[str | type] = field(default_factory=list)
    """Qualified names (whole subtrees) or module types that stay digital."""

    def __post_init__(self) -> None:
        for attr in ("names", "regex", "types"):
            table = getattr(self, attr)
            if not isinstance(table, Mapping):
                raise TypeError(f"LayerPolicy.{attr} must be a dict, got {type(table).__name__}")
            for key, value in table.items():
                check_rpu_config(value, f"LayerPolicy.{attr}[{key!r}]", allow_none=True)
        for key in self.types:
            if not (isinstance(key, type) and issubclass(key, nn.Module)):
                raise TypeError(f"LayerPolicy.types key {key!r} must be an nn.Module subclass")
        for pattern in self.regex:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"LayerPolicy.regex: invalid pattern {pattern!r}: {exc}") from exc
        self.exclude = list(self.exclude)
        for item in self.exclude:
            if not isinstance(item, str) and not (isinstance(item, type)
                                                  and issubclass(item, nn.Module)):
                raise TypeError(f"exclude entries must be module names or nn.Module types, "
                                f"got {item!r}")

    @classmethod
    def coerce(cls, policy: Any, exclude: Iterable[Any] | None = None) -> LayerPolicy:
        """A LayerPolicy from ``policy`` (a LayerPolicy, a dict or None) plus ``exclude``.

        A dict's keys are read as: ``type`` -> type override, ``re.Pattern`` or a string
        starting with ``re:`` -> regex, any other string -> exact name."""
        if exclude is not None and (isinstance(exclude, (str, type))
                                    or not isinstance(exclude, Iterable)):
            exclude = [exclude]
        extra = list(exclude or [])
        if policy is None:
            return cls(exclude=extra)
        if isinstance(policy, LayerPolicy):
            return cls(dict(policy.names), dict(policy.regex), dict(policy.types),
                       [*policy.exclude, *extra])
        if not isinstance(policy, Mapping):
            raise TypeError(f"policy must be a LayerPolicy or a dict, got {type(policy).__name__}")
        names: dict[str, Any] = {}
        regex: dict[str, Any] = {}
        types: dict[type, Any] = {}
        for key, value in policy.items():
            if isinstance(key, type):
                types[key] = value
            elif isinstance(key, re.Pattern):
                regex[key.pattern] = value
            elif isinstance(key, str) and key.startswith("re:"):
                regex[key[3:]] = value
            elif isinstance(key, str):
                names[key] = value
            else:
                raise TypeError(f"policy key {key!r} must be a module name, a regex or a type")
        return cls(names, regex, types, extra)


class PolicyResolver:
    """Applies a LayerPolicy to layers one by one and remembers which rules were used."""

    def __init__(self, policy: LayerPolicy, global_config: RPUConfig) -> None:
        self.policy = policy
        self.global_config = global_config
        self._compiled = [(p, re.compile(p), v) for p, v in policy.regex.items()]
        self.used_names: set[str] = set()
        self.used_regex: set[str] = set()
        self.seen: list[str] = []

    def excluded(self, name: str, module_type: type | None = None) -> bool:
        """Whether ``name`` (or one of its parents) or its type is excluded."""
        for item in self.policy.exclude:
            if isinstance(item, str):
                if name == item or name.startswith(item + "."):
                    return True
            elif module_type is not None and issubclass(module_type, item):
                return True
        return False

    def decide(self, names: Iterable[str], module_type: type,
               canonical: type | None = None) -> Decision:
        """The decision for a layer known under ``names`` (first: its module name) of type
        ``module_type``; type rules follow its MRO, then the ``canonical`` module form (e.g.
        ``nn.Linear`` for a GPT-2 ``Conv1D``)."""
        names = [n for n in names if n is not None]
        self.seen.extend(names)
        if any(self.excluded(n, module_type) or (canonical is not None and self.excluded(
                n, canonical)) for n in names):
            self.used_names.update(n for n in names if n in self.policy.names)
            self.used_regex.update(p for p, c, _ in self._compiled
                                   if any(c.fullmatch(n) for n in names))
            return Decision(None, "excluded", "exclude")
        for n in names:
            if n in self.policy.names:
                self.used_names.add(n)
                return self._answer(self.policy.names[n], f"name {n!r}", "name")
        for pattern, compiled, value in self._compiled:
            if any(compiled.fullmatch(n) for n in names):
                self.used_regex.add(pattern)
                return self._answer(value, f"regex {pattern!r}", "regex")
        mro = module_type.__mro__ + ((canonical,) if canonical is not None else ())
        for base in mro:
            if base in self.policy.types:
                return self._answer(self.policy.types[base], f"type {base.__name__}", "type")
        return Decision(self.global_config, "", "global")

    @staticmethod
    def _answer(value: RPUConfig | None, rule: str, source: str) -> Decision:
        if value is None:
            return Decision(None, f"policy: {rule} -> None (keep digital)", source)
        return Decision(value, "", source)

    def warn_unused(self) -> None:
        """Warn about regexes (and exact names) that matched no matrix layer."""
        regex = [p for p in self.policy.regex if p not in self.used_regex]
        if regex:
            listed = ", ".join(f"'{p}'" for p in regex)
            warnings.warn(f"policy regex(es) matched no matrix layer: {listed}", UserWarning,
                          stacklevel=3)
        names = [n for n in self.policy.names if n not in self.used_names]
        if names:
            listed = ", ".join(f"'{n}'" for n in names)
            warnings.warn(f"policy name(s) matched no matrix layer: {listed}", UserWarning,
                          stacklevel=3)
