"""The ``torch.compile`` backend ``"analog"``: the same conversion on the graph Dynamo captures.

    fast = torch.compile(model, backend="analog", options={"rpu_config": rc, "policy": {...}})

Dynamo (torch >= 2.5 inlines ``nn.Module`` calls) hands the backend a flat graph whose
parameters are graph inputs (``placeholder`` nodes fed with the real ``nn.Parameter``) and whose
layers are ``torch._C._nn.linear``/``torch.conv2d``/``addmm``/``@`` calls. Every such product
whose weight is a parameter is replaced by a call of the analog layer built from that weight,
named as ``convert`` names it (``fc1`` for a module ``fc1``, ``w_linear`` for a functional product
on parameter ``w``). The analog layers are built once, at compile time, from the parameters'
values then (inference use: later weight updates are not seen). The converted graph runs
eagerly.

``nn.MultiheadAttention`` projections reach Dynamo as slices of the packed ``in_proj_weight``;
they are reported as digital: ``convert`` the model first (it maps them), then
``torch.compile`` the converted model with any backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, fx, nn

from ..conversion_log import LOG_ATTRIBUTE, ConversionLog
from .canonicalize import find_sites, rewrite_site
from .layer_map import DEFAULT_LAYER_MAP, check_layer_map, lookup
from .passes import GraphPass, run_pipeline
from .policy import Decision, LayerPolicy, PolicyResolver, check_rpu_config
from .rewrite import ConversionContext

OPTIONS = ("rpu_config", "policy", "exclude", "layer_map", "tile_module_class")
_last_log: list[ConversionLog] = []


def last_conversion_log() -> ConversionLog | None:
    """The ``ConversionLog`` of the most recent graph the backend converted."""
    return _last_log[-1] if _last_log else None


def source_to_name(source: str) -> str:
    """``L['self']._modules['fc1']._parameters['weight']`` -> ``fc1.weight``."""
    body = re.sub(r"^L\[['\"][^'\"]+['\"]\]", "", source)
    parts = [a or b or c for a, b, c in re.findall(r"\['([^']+)'\]|\[(\d+)\]|\.(\w+)", body)]
    return ".".join(p for p in parts if p not in ("_modules", "_parameters", "_buffers"))


def _placeholder_params(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> dict[fx.Node, tuple[
        str, Tensor]]:
    """Placeholders fed with an ``nn.Parameter``: node -> (qualified name, parameter)."""
    out = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, value in zip(placeholders, example_inputs):
        if isinstance(value, nn.Parameter):
            grapharg = node.meta.get("grapharg")
            source = getattr(getattr(grapharg, "source", None), "name", None)
            name = source_to_name(source() if callable(source) else source) if source \
                else node.name
            out[node] = (name, value)
    return out


def _module_of_call(node: fx.Node) -> tuple[str, type] | None:
    """The innermost module (qualified name, type) a node was called from."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    return source_to_name(path) if path.startswith("L[") else path, cls


def _canonicalize_dynamo(params: dict[fx.Node, tuple[str, Tensor]]) -> Callable:
    def run(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
        changed = False
        built: dict[str, str] = {}
        seen: set[str] = set()
        for site in find_sites(gm.graph, params.get):
            seen.add(site.weight_name)
            owner, _, pname = site.weight_name.rpartition(".")
            called = _module_of_call(site.node)
            module_type: type = site.canonical
            name = f"{site.weight_name}_{'linear' if site.canonical is nn.Linear else 'conv'}"
            source = site.source_type
            if called is not None and called[0] == owner and pname == "weight" and (
                    lookup(ctx.layer_map, called[1]) is not None or called[1].__name__ == "Conv1D"):
                name, module_type = owner, called[1]
                source = "Conv1D" if site.source_type == "addmm" else called[1].__name__
            if site.reason:
                ctx.record(name if name == owner else site.weight_name, source, site.reason)
                continue
            decision = ctx.resolver.decide([name, site.weight_name], module_type, site.canonical)
            if decision.rpu_config is None:
                ctx.record(name, source, decision)
                continue
            target = built.get(name)
            if target is None:
                digital = site.build()
                cfg = ctx.layer_config(decision, name, digital)
                gm.add_submodule(name, ctx.build_analog(digital, cfg))
                target = built[name] = name
                ctx.record(name, source, Decision(cfg), cfg)
            rewrite_site(gm.graph, site, target)
            changed = True
        handled = {site.weight_name for site in find_sites(gm.graph, params.get)} | seen
        _record_other_parameter_uses(gm, params, ctx, handled)
        return changed
    return run


def _record_other_parameter_uses(gm: fx.GraphModule, params: dict[fx.Node, tuple[str, Tensor]],
                                 ctx: ConversionContext, handled: set[str]) -> None:
    """Matrix parameters still used by the graph in another way (e.g. the packed attention
    ``in_proj_weight`` sliced before its product): recorded as digital."""
    for node, (name, value) in params.items():
        if value.dim() < 2 or not node.users:
            continue
        ops = sorted({getattr(u.target, "__name__", str(u.target)) for u in node.users})
        if ops in (["embedding"],):
            continue
        if name in handled:
            continue
        ctx.record(name, "parameter", f"unsupported: used through {', '.join(ops)} (not a "
                   "direct matrix product in the compiled graph; convert() the model first "
                   "for nn.MultiheadAttention)")


def analog_backend(gm: fx.GraphModule, example_inputs: Sequence[Any],
                   options: dict[str, Any] | None = None) -> Callable:
    """``torch.compile`` backend: convert the Dynamo graph's matrix products to analog layers
    and return the converted graph's forward."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"analog backend: unknown option(s) {', '.join(unknown)}; "
                         f"expected {', '.join(OPTIONS)}")
    from ..runtime import InferenceRPUConfig

    rpu_config = options.get("rpu_config") or InferenceRPUConfig()
    check_rpu_config(rpu_config, "analog backend: options['rpu_config']")
    layer_map = check_layer_map(options.get("layer_map") or DEFAULT_LAYER_MAP)
    policy = LayerPolicy.coerce(options.get("policy"), options.get("exclude"))
    log = ConversionLog(rpu_config.to_dict(), capture="dynamo")
    ctx = ConversionContext(rpu_config, PolicyResolver(policy, rpu_config), layer_map, log,
                            options.get("tile_module_class"))
    params = _placeholder_params(gm, example_inputs)
    run_pipeline(gm, ctx, "", [GraphPass("canonicalize_dynamo", _canonicalize_dynamo(params))])
    object.__setattr__(gm, LOG_ATTRIBUTE, log)
    _last_log[:] = [log]
    return gm.forward


def register() -> None:
    """Register ``"analog"`` with Dynamo (idempotent)."""
    from torch._dynamo.backends.registry import _BACKENDS, register_backend

    if "analog" not in _BACKENDS:
        register_backend(compiler_fn=analog_backend, name="analog")


register()
