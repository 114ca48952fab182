"""Shared machinery of the config dataclasses: validation helpers and an exact JSON round trip.

Configs serialise to plain JSON-able dicts (enums by name, nested configs tagged with their class
name), never to pickled objects, so checkpoints load with ``torch.load(weights_only=True)``.

Every dict carries its class's ``config_version``. ``from_dict`` reads it: data without one is
version 1; older data is upgraded step by step through the class's ``config_migrations``; data
from a newer version (written by a newer analog-compiler) is a ``ValueError`` naming the class
and both versions. A class that renames a field or changes its meaning bumps its version and
adds the step that rewrites old data (``config_migrations[old_version] = upgrade``).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import math
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from .enums import coerce_enum

C = TypeVar("C", bound="ConfigBase")

#: Every config class by name, for tagged (polymorphic) fields such as ``noise_model``.
CONFIG_REGISTRY: dict[str, type[ConfigBase]] = {}


#: JSON key of a config's version in ``to_dict`` output.
VERSION_KEY = "config_version"

#: Source of config revisions: every field assignment takes the next number, so a revision
#: identifies one state of one config object (the layers cache what they derive from it).
_REVISIONS = itertools.count(1)
_MISSING = object()


class ConfigBase:
    """Mixin for config dataclasses: ``to_dict``/``from_dict``/``to_json`` and field checks.

    Fields may be changed after construction, as aihwkit users do
    (``rpu_config.forward.out_noise = 0.0``): the assignment is validated like the constructor's
    arguments (an invalid value raises and leaves the field as it was; enum names are turned
    into enums), and layers holding the config see the new value at their next forward.
    """

    #: Version of this class's data: bumped when a field is renamed or changes meaning.
    #: ``to_dict`` writes it; ``from_dict`` upgrades older data and rejects newer data.
    config_version: ClassVar[int] = 1
    #: ``{v: upgrade}``: ``upgrade`` turns the ``to_dict`` data of version ``v`` (without its
    #: ``type`` and ``config_version`` keys) into that of version ``v + 1``. One step for every
    #: version below ``config_version`` (checked when the class is defined).
    config_migrations: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}
    #: JSON key of a field whose name is taken by the class tag (aihwkit's ``type`` fields).
    json_keys: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        version = cls.config_version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise TypeError(f"{cls.__name__}.config_version must be an integer >= 1, "
                            f"got {version!r}")
        missing = [v for v in range(1, version) if v not in cls.config_migrations]
        if missing:
            raise TypeError(f"{cls.__name__}: config_version {version} needs "
                            f"config_migrations for version(s) {missing}")
        CONFIG_REGISTRY[cls.__name__] = cls
        check = cls.__dict__.get("__post_init__")
        if check is not None:  # checks run with plain assignment; afterwards, assignments check
            def post_init(self: Any, _check: Any = check) -> None:
                object.__setattr__(self, "_config_ready", False)
                _check(self)
                object.__setattr__(self, "_config_ready", True)

            post_init.__doc__ = check.__doc__
            cls.__post_init__ = post_init  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__
        if state.get("_config_ready") and not name.startswith("_"):
            old = state.get(name, _MISSING)
            object.__setattr__(self, name, value)
            try:
                self.__post_init__()  # type: ignore[attr-defined]
            except Exception:
                if old is _MISSING:
                    object.__delattr__(self, name)
                else:
                    object.__setattr__(self, name, old)
                object.__setattr__(self, "_config_ready", True)
                raise
        else:
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_config_revision", next(_REVISIONS))

    @property
    def revision(self) -> int:
        """Changes whenever a field of this config is assigned (not its nested configs')."""
        return self.__dict__.get("_config_revision", 0)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_dict`` turns back into an equal config."""
        out: dict[str, Any] = {"type": type(self).__name__, VERSION_KEY: self.config_version}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[self.json_keys.get(f.name, f.name)] = _encode(getattr(self, f.name))
        return out

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict`` as a JSON string."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Rebuild a config from ``to_dict`` output (of this or an older ``config_version``;
        none given: version 1); unknown keys and newer versions are a ``ValueError``."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        tag = data.pop("type", cls.__name__)
        target = CONFIG_REGISTRY.get(tag)
        if target is None or not issubclass(target, cls):
            raise ValueError(f"{cls.__name__}.from_dict: unknown or unexpected config type {tag!r}")
        data = _migrate(target, data.pop(VERSION_KEY, 1), data)
        for name, key in target.json_keys.items():
            if key in data:
                data[name] = data.pop(key)
        hints = typing.get_type_hints(target)
        names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{target.__name__}.from_dict: unknown field(s) {', '.join(unknown)}")
        kwargs = {k: _decode(v, hints[k], f"{target.__name__}.{k}") for k, v in data.items()}
        return target(**kwargs)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """Inverse of ``to_json``."""
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _migrate(target: type[ConfigBase], version: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of ``target``'s ``version`` upgraded to its current ``config_version``."""
    current = target.config_version
    name = target.__name__
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{name}.from_dict: {VERSION_KEY} must be an integer >= 1, "
                         f"got {version!r}")
    if version > current:
        raise ValueError(f"{name}.from_dict: the data has {VERSION_KEY} {version}, newer than "
                         f"this analog-compiler's {name} ({VERSION_KEY} {current}); it was "
                         "written by a newer analog-compiler: upgrade to read it")
    for step in range(version, current):
        data = target.config_migrations[step](dict(data))
    return data


def _encode(value: Any) -> Any:
    if isinstance(value, ConfigBase):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any, hint: Any, where: str) -> Any:
    """Turn JSON data back into the type ``hint`` names (configs, enums, tuples)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if isinstance(value, dict):
            # A union of configs: the tag picks the member (trying the first would reject others).
            target = CONFIG_REGISTRY.get(value.get("type", ""))
            if target is not None and any(isinstance(a, type) and issubclass(target, a)
                                          for a in args):
                return target.from_dict(value)
        for arg in args:
            if arg is type(None):
                continue
            if isinstance(value, dict) and isinstance(arg, type) and issubclass(arg, ConfigBase):
                return arg.from_dict(value)
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                return coerce_enum(arg, value, where)
        return value
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        return hint.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return coerce_enum(hint, value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is list and args and isinstance(value, list):  # e.g. lists of device configs
        return [_decode(v, args[0], where) for v in value]
    return value


# -------------------------------------------------------------------- field checks
def check_number(obj: Any, name: str, *, min_value: float | None = None, positive: bool = False,
                 allow_inf: bool = False) -> None:
    """Raise ``ValueError`` naming ``Class.field`` unless the field is a finite real number
    (>= ``min_value``; > 0 when ``positive``)."""
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{where} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{where} must be > 0, got {value!r}")
    if min_value is not None and value < min_value:
        raise ValueError(f"{where} must be >= {min_value}, got {value!r}")


def check_int(obj: Any, name: str, *, min_value: int = 0) -> None:
    """Raise ``ValueError`` unless the field is an integer >= ``min_value``."""
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if value < min_value:
        raise ValueError(f"{where} must be >= {min_value}, got {value!r}")


def check_bool(obj: Any, name: str) -> None:
    """Raise ``ValueError`` unless the field is a bool."""
    value = getattr(obj, name)
    if not isinstance(value, bool):
        raise ValueError(f"{type(obj).__name__}.{name} must be True or False, got {value!r}")


def check_config(obj: Any, name: str, cls: type | tuple[type, ...], *,
                 optional: bool = False) -> None:
    """Raise ``TypeError`` unless the field is an instance of ``cls`` (or None if optional)."""
    value = getattr(obj, name)
    if value is None and optional:
        return
    if not isinstance(value, cls):
        names = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
        raise TypeError(f"{type(obj).__name__}.{name} must be a {names}, "
                        f"got {type(value).__name__}")


def check_float_tuple(obj: Any, name: str, *, min_len: int = 1, positive: bool = False) -> None:
    """Raise ``ValueError`` naming ``Class.field`` unless the field is a sequence of at least
    ``min_len`` numbers (> 0 when ``positive``); stores it as a tuple of floats."""
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a list of numbers, got {value!r}") from None
    if len(values) < min_len:
        raise ValueError(f"{where} needs at least {min_len} value(s), got {values!r}")
    if positive and any(not v > 0 for v in values):
        raise ValueError(f"{where} values must be > 0, got {values!r}")
    object.__setattr__(obj, name, values)
