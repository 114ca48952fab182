"""Shared pieces of the subcommands: loading ``MODULE:FACTORY`` models and JSON configs,
example inputs, and turning user-code failures into one-line ``CLIError``s."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..runtime import RPU_CONFIG_TYPES
from . import CLIError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: expected comma-separated positive integers like 1,3,32,32"
        ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: sizes must be >= 1")
    return shape


def load_module(spec: str) -> ModuleType:
    """Import ``spec``: a ``.py`` path or a dotted module name."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_file():
            raise CLIError(f"no such file: {spec}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise CLIError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules.setdefault(path.stem, module)
        run_user_code(lambda: mod_spec.loader.exec_module(module), f"importing {spec}")
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise CLIError(f"no module named {spec!r} (give an importable module or a .py path)"
                           ) from None
        raise CLIError(f"importing {spec} failed: {exc}") from None


def run_user_code(fn: Any, what: str) -> Any:
    """Run ``fn``; any exception becomes a one-line ``CLIError`` naming ``what``."""
    try:
        return fn()
    except CLIError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: report, never a traceback
        raise CLIError(f"{what} failed: {type(exc).__name__}: {exc}") from None


def load_model(target: str) -> nn.Module:
    """Call ``FACTORY`` of ``MODULE:FACTORY`` and check it returns an ``nn.Module``."""
    module_name, sep, factory_name = target.rpartition(":")
    if not sep or not module_name or not factory_name:
        raise CLIError(f"expected MODULE:FACTORY, got {target!r}")
    module = load_module(module_name)
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise CLIError(f"{module_name} has no attribute {factory_name!r}")
    if not callable(factory):
        raise CLIError(f"{module_name}:{factory_name} is not callable")
    model = run_user_code(factory, f"calling {target}")
    if not isinstance(model, nn.Module):
        raise CLIError(f"{target} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_config(path: Path) -> Any:
    """An RPU config from a JSON file (the ``type`` key picks the class; default Inference)."""
    from ..runtime.config.base import CONFIG_REGISTRY

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CLIError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CLIError(f"config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CLIError(f"config {path} must hold a JSON object, got {type(data).__name__}")
    tag = data.get("type", "InferenceRPUConfig")
    cls = CONFIG_REGISTRY.get(tag)
    if cls not in RPU_CONFIG_TYPES:
        names = ", ".join(c.__name__ for c in RPU_CONFIG_TYPES)
        raise CLIError(f"config {path}: type {tag!r} is not an RPU config ({names})")
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"config {path}: {exc}") from None


def example_input(shape: tuple[int, ...] | None, dtype: str,
                  generator: torch.Generator | None = None) -> torch.Tensor | None:
    """A seeded random example input of ``shape`` (None without a shape); used by ``export``
    too."""
    if shape is None:
        return None
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if DTYPES[dtype].is_floating_point:
        return torch.randn(shape, generator=gen, dtype=DTYPES[dtype])
    return torch.randint(0, 100, shape, generator=gen, dtype=DTYPES[dtype])


def example_inputs(shapes: list[tuple[int, ...]] | None,
                   dtype: str) -> tuple[torch.Tensor, ...] | None:
    """Seeded random example inputs, one per shape (None without shapes)."""
    if not shapes:
        return None
    gen = torch.Generator().manual_seed(0)
    return tuple(example_input(s, dtype, gen) for s in shapes)



def load_analog_model(args: argparse.Namespace, command: str,
                      example_inputs: tuple[torch.Tensor, ...] | None) -> nn.Module:
    """The model of ``args.target`` in eval mode, converted with ``--config`` (or the default
    ``InferenceRPUConfig``) unless it has analog layers already."""
    import analog_compiler as ac

    config = load_config(args.config) if args.config is not None else None
    model = load_model(args.target).eval()
    if any(True for _ in ac.analog_layers(model)):
        if config is not None:
            print(f"analog-compiler {command}: note: the model is analog already; --config is "
                  "ignored", file=sys.stderr)
        return model
    rpu_config = config if config is not None else ac.InferenceRPUConfig()
    return run_user_code(lambda: ac.convert(model, rpu_config, example_inputs=example_inputs),
                         "converting the model").eval()


def write_outputs(args: argparse.Namespace, result: Any) -> None:
    """Write ``result.to_json()`` to ``args.json`` and ``result.plot`` to ``args.plot`` (each
    when given), noting each file on stderr."""
    if args.json is not None:
        run_user_code(lambda: args.json.write_text(result.to_json()), f"writing {args.json}")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot is not None:
        run_user_code(lambda: result.plot(args.plot), f"writing {args.plot}")
        print(f"wrote {args.plot}", file=sys.stderr)
