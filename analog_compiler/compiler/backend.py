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

``nn.MultiheadAttention`` reaches Dynamo as one ``F.multi_head_attention_forward`` call on its
parameters; it becomes an ``AnalogMultiheadAttention`` (sequence-first, as at that level) named
after the attention module. Other uses of a matrix parameter that is not a direct product are
recorded as digital.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
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
    """Placeholders fed with an ``nn.Parameter`` (and ``get_attr`` parameters): node ->
    (qualified name, parameter)."""
    out = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, value in zip(placeholders, example_inputs):
        if isinstance(value, nn.Parameter):
            grapharg = node.meta.get("grapharg")
            source = getattr(getattr(grapharg, "source", None), "name", None)
            name = source_to_name(source() if callable(source) else source) if source \
                else node.name
            out[node] = (name, value)
    for node in gm.graph.nodes:  # older Dynamo settings: parameters as attributes of the graph
        if node.op == "get_attr":
            try:
                out[node] = (node.target, gm.get_parameter(node.target))
            except AttributeError:
                pass
    return out


def _module_of_call(node: fx.Node) -> tuple[str, type] | None:
    """The innermost module (qualified name, type) a node was called from."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    return source_to_name(path) if path.startswith("L[") else path, cls


def _canonicalize_dynamo(params: dict[fx.Node, tuple[str, Tensor]], handled: set[str]
                         ) -> Callable:
    def run(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
        changed = False
        built: dict[tuple, str] = {}
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
            digital = site.build()
            key = (tuple(params[n][0] for n in site.param_nodes), source, repr(digital))
            target = built.get(key)
            if target is None:
                cfg = ctx.layer_config(decision, name, digital)
                try:
                    analog = ctx.build_analog(digital, cfg)
                except (TypeError, ValueError) as exc:
                    ctx.record(name, source, f"unsupported: {exc}")
                    continue
                target, i = name, 1
                while target in built.values():  # same weight, other bias or settings
                    target, i = f"{name}_{i}", i + 1
                gm.add_submodule(target, analog)
                built[key] = target
                ctx.record(target, source, Decision(cfg), cfg)
            rewrite_site(gm.graph, site, target)
            changed = True
        handled.update(seen)
        _record_other_parameter_uses(gm, params, ctx, handled)
        return changed
    return run


_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_MHA_CALL_KWARGS = ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                    "is_causal")


def _attention_module(node: fx.Node, params: dict[fx.Node, tuple[str, Tensor]]
                      ) -> tuple[nn.MultiheadAttention | None, dict[str, Any], list[str]]:
    """The ``nn.MultiheadAttention`` (sequence-first) that a ``multi_head_attention_forward``
    call computes, its bound arguments and its parameter names; None if its weights are not
    all parameters or its settings are computed at run time."""
    bound = _MHA_SIGNATURE.bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    a = bound.arguments

    def value(key: str) -> Tensor | None:
        item = a[key]
        return None if item is None else params.get(item, (None, None))[1]

    names = [params[a[k]][0] for k in ("in_proj_weight", "out_proj_weight", "q_proj_weight",
                                       "k_proj_weight", "v_proj_weight")
             if isinstance(a[k], fx.Node) and a[k] in params]
    weights = ("q_proj_weight", "k_proj_weight", "v_proj_weight") if a[
        "use_separate_proj_weight"] else ("in_proj_weight",)
    tensors = ("in_proj_bias", "bias_k", "bias_v", "out_proj_weight", "out_proj_bias") + weights
    if any(a[k] is not None and value(k) is None for k in tensors) or value(
            "out_proj_weight") is None or any(value(k) is None for k in weights):
        return None, a, names
    settings = ("embed_dim_to_check", "num_heads", "add_zero_attn", "dropout_p", "training",
                "use_separate_proj_weight")
    if any(isinstance(a[k], fx.Node) for k in settings) or a["static_k"] is not None or a[
            "static_v"] is not None:
        return None, a, names
    ref = value("out_proj_weight")
    kdim = value("k_proj_weight").shape[1] if a["use_separate_proj_weight"] else None
    vdim = value("v_proj_weight").shape[1] if a["use_separate_proj_weight"] else None
    mha = nn.MultiheadAttention(a["embed_dim_to_check"], a["num_heads"], a["dropout_p"],
                                value("in_proj_bias") is not None, value("bias_k") is not None,
                                a["add_zero_attn"], kdim, vdim, False, device=ref.device,
                                dtype=ref.dtype)
    with torch.no_grad():
        for key in ("in_proj_bias", "bias_k", "bias_v") + weights:
            if value(key) is not None:
                getattr(mha, key).copy_(value(key))
        mha.out_proj.weight.copy_(ref)
        if mha.out_proj.bias is not None and value("out_proj_bias") is not None:
            mha.out_proj.bias.copy_(value("out_proj_bias"))
    return mha.train(bool(a["training"])), a, names


def _map_attention_dynamo(params: dict[fx.Node, tuple[str, Tensor]], handled: set[str]
                          ) -> Callable:
    def run(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target is not F.multi_head_attention_forward:
                continue
            mha, args, names = _attention_module(node, params)
            called = _module_of_call(node)
            name = called[0] if called else (names[0].rpartition(".")[0] if names else node.name)
            handled.update(names)
            if mha is None:
                ctx.record(f"{name}.in_proj", "MultiheadAttention.in_proj", "unsupported: "
                           "attention weights or settings are not parameters/constants")
                continue
            new = ctx.map_module(mha, name)
            if new is mha:
                continue
            gm.add_submodule(name, new)
            with gm.graph.inserting_before(node):
                call = gm.graph.call_module(name, (args["query"], args["key"], args["value"]),
                                            {k: args[k] for k in _MHA_CALL_KWARGS})
            call.meta.update(node.meta)
            node.replace_all_uses_with(call)
            gm.graph.erase_node(node)
            changed = True
        return changed
    return run


def _record_other_parameter_uses(gm: fx.GraphModule, params: dict[fx.Node, tuple[str, Tensor]],
                                 ctx: ConversionContext, handled: set[str]) -> None:
    """Matrix parameters still used by the graph in another way (e.g. the packed attention
    ``in_proj_weight`` sliced before its product): recorded as digital."""
    for node, (name, value) in params.items():
        if value.dim() < 2 or not node.users:
            continue
        if all(str(u.target).startswith("analog.") for u in node.users):
            continue  # already an analog layer's tile weights
        ops = sorted({getattr(u.target, "__name__", str(u.target)) for u in node.users})
        if ops in (["embedding"],):
            continue
        if name in handled:
            continue
        ctx.record(name, "parameter", f"unsupported: used through {', '.join(ops)} (not a "
                   "direct matrix product in the compiled graph, e.g. a fused kernel; "
                   "convert() the model before torch.compile to map it)")


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
    handled: set[str] = set()
    run_pipeline(gm, ctx, "", [
        GraphPass("map_attention", _map_attention_dynamo(params, handled)),
        GraphPass("canonicalize_functional", _canonicalize_dynamo(params, handled))])
    object.__setattr__(gm, LOG_ATTRIBUTE, log)
    _last_log[:] = [log]
    return gm.forward


def register() -> None:
    """Register ``"analog"`` with Dynamo (idempotent)."""
    from torch._dynamo.backends.registry import _BACKENDS, register_backend

    if "analog" not in _BACKENDS:
        register_backend(compiler_fn=analog_backend, name="analog")


register()
