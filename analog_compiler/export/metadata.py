"""The analog provenance of an exported ONNX file, as JSON in its ``metadata_props``.

Keys (each value a JSON document):

- ``analog_compiler.export``: ``{"format", "version", "realistic", "keep_quantization",
  "seed"}``: how the file was made;
- ``analog_compiler.t_inference``: the drift time requested (``null``: each layer's own state)
  and each layer's drift time, ``{"requested": t, "layers": {name: t or null}}``;
- ``analog_compiler.rpu_config``: the rpu_config shared by every analog layer as
  ``InferenceRPUConfig.to_dict()`` (``null`` when the layers differ: see the per-layer entries);
- ``analog_compiler.tile_plan``: per layer ``{"type", "groups", "in_sizes", "out_sizes",
  "tile_count", "tile_shape", "programmed", "rpu_config"}``.

``read_metadata`` returns them as one dict; ``rpu_config_from_metadata`` rebuilds the config
object (``InferenceRPUConfig`` or ``FloatingPointRPUConfig``), of the model or of one layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..chip import analog_layers
from ..runtime import RPU_CONFIG_TYPES, FloatingPointRPUConfig, InferenceRPUConfig
from ..runtime.config.base import ConfigBase

PREFIX = "analog_compiler."
FORMAT = 1
KEYS = ("export", "t_inference", "rpu_config", "tile_plan")


def build_metadata(model: nn.Module, *, realistic: bool, t_inference: float | None,
                   keep_quantization: bool, seed: int | None = None) -> dict[str, Any]:
    """The metadata of ``model`` (the analog model in the chip state that was exported)."""
    from .. import __version__

    plans: dict[str, Any] = {}
    times: dict[str, float | None] = {}
    configs = []
    for name, layer in analog_layers(model):
        arr = layer.analog_module
        plan = arr.plan
        cfg = arr.rpu_config.to_dict()
        configs.append(cfg)
        t_layer = float(arr.t_inference)
        times[name] = t_layer if realistic and t_layer >= 0 else None
        plans[name] = {"type": type(layer).__name__, "groups": plan.groups,
                       "in_sizes": list(plan.in_sizes), "out_sizes": list(plan.out_sizes),
                       "tile_count": plan.tile_count, "tile_shape": list(plan.tile_shape),
                       "programmed": bool(realistic and arr.is_programmed), "rpu_config": cfg}
    shared = configs[0] if configs and all(c == configs[0] for c in configs) else None
    return {
        "export": {"format": FORMAT, "version": __version__, "realistic": bool(realistic),
                   "keep_quantization": bool(keep_quantization), "seed": seed},
        "t_inference": {"requested": t_inference, "layers": times},
        "rpu_config": shared,
        "tile_plan": plans,
    }


def write_metadata(onnx_model: Any, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` in ``onnx_model.metadata_props`` (replacing earlier analog keys)."""
    keep = [p for p in onnx_model.metadata_props if not p.key.startswith(PREFIX)]
    del onnx_model.metadata_props[:]
    for prop in keep:
        onnx_model.metadata_props.add(key=prop.key, value=prop.value)
    for key in KEYS:
        onnx_model.metadata_props.add(key=PREFIX + key, value=json.dumps(metadata[key]))


def read_metadata(source: Any) -> dict[str, Any]:
    """The analog metadata of an ONNX file (path) or loaded ``onnx.ModelProto``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when the model carries
    no analog-compiler metadata."""
    import onnx

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"read_metadata: no ONNX file at {path}")
        source = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in source.metadata_props}
    missing = [k for k in KEYS if PREFIX + k not in props]
    if missing:
        raise ValueError("read_metadata: the model has no analog-compiler metadata "
                         f"(missing {', '.join(PREFIX + k for k in missing)})")
    return {k: json.loads(props[PREFIX + k]) for k in KEYS}


def rpu_config_from_metadata(source: Any, layer: str | None = None
                             ) -> InferenceRPUConfig | FloatingPointRPUConfig:
    """The rpu_config stored in an ONNX file's metadata: the model's shared config, or that of
    analog layer ``layer`` (its qualified name). ``ValueError`` when ``layer`` is needed (the
    layers differ) or unknown."""
    meta = read_metadata(source)
    if layer is None:
        data = meta["rpu_config"]
        if data is None:
            raise ValueError("rpu_config_from_metadata: the layers have different rpu_configs; "
                             f"pass layer= one of {sorted(meta['tile_plan'])}")
    else:
        if layer not in meta["tile_plan"]:
            raise ValueError(f"rpu_config_from_metadata: no analog layer {layer!r} in the "
                             f"metadata; layers: {sorted(meta['tile_plan'])}")
        data = meta["tile_plan"][layer]["rpu_config"]
    config = ConfigBase.from_dict(data)
    if not isinstance(config, RPU_CONFIG_TYPES):
        raise ValueError(f"rpu_config_from_metadata: stored config is a {type(config).__name__}")
    return config
