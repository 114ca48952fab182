"""Graph passes and the pipeline that runs them.

A pass is a small function ``(gm, ctx, prefix) -> bool`` with one job that says whether it
changed anything; ``run_pipeline`` lints the graph and recompiles after every pass that changed
it, and names the pass that failed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, fx, nn

from ..runtime import AnalogCompilerError
from .batchnorm import fold_batchnorm_graph
from .canonicalize import batched_products, find_sites, rewrite_site
from .policy import Decision, UserConfigError
from .rewrite import ConversionContext, set_submodule

PassFn = Callable[[fx.GraphModule, ConversionContext, str], bool]


class PassError(AnalogCompilerError):
    """A conversion pass failed; the message names the pass and the module."""


@dataclass(frozen=True)
class GraphPass:
    """A named graph pass."""

    name: str
    fn: PassFn

    def __call__(self, gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
        return self.fn(gm, ctx, prefix)


def run_pipeline(gm: fx.GraphModule, ctx: ConversionContext, prefix: str,
                 passes: Sequence[GraphPass]) -> dict[str, bool]:
    """Run ``passes`` in order: ``{pass name: changed}``."""
    changed: dict[str, bool] = {}
    for p in passes:
        try:
            changed[p.name] = bool(p(gm, ctx, prefix))
            if changed[p.name]:
                gm.graph.lint()
                gm.recompile()
        except (PassError, UserConfigError):
            raise  # already clear
        except Exception as exc:
            raise PassError(f"pass {p.name!r} failed on {prefix or type(gm).__name__!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
    return changed


def qualify(prefix: str, name: str) -> str:
    """``prefix.name`` (or ``name`` at the root)."""
    return f"{prefix}.{name}" if prefix else name


# ---------------------------------------------------------------------- the passes
def fold_batchnorm_pass(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
    """Fold ``layer -> BatchNorm`` pairs (graph order) into the layer."""
    return bool(fold_batchnorm_graph(gm))


def fx_param_of(gm: fx.GraphModule) -> Callable[[fx.Node], tuple[str, Tensor] | None]:
    """Parameters reached through ``get_attr`` nodes."""
    def param_of(node: fx.Node) -> tuple[str, Tensor] | None:
        if node.op != "get_attr":
            return None
        try:
            obj = gm.get_parameter(node.target)
        except AttributeError:
            return None
        return node.target, obj
    return param_of


def _free_name(owner: nn.Module, base: str) -> str:
    name, i = base, 1
    while hasattr(owner, name):
        name, i = f"{base}_{i}", i + 1
    return name


def canonicalize_functional_pass(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
    """``F.linear``/``F.conv*``/``@``/``addmm`` with a parameter weight -> a call of the analog
    layer that now owns the weight (registered next to it as ``<param>_linear`` or
    ``<param>_conv``); the parameter is removed from its owner when nothing else uses it."""
    changed = False
    built: dict[tuple, str] = {}
    consumed: set[str] = set()
    for weight_name, op in batched_products(gm.graph, fx_param_of(gm)):
        ctx.record(qualify(prefix, weight_name), op,
                   f"unsupported: {op} of the parameter (a batched product: no analog layer)")
    for site in find_sites(gm.graph, fx_param_of(gm)):
        owner_name, _, pname = site.weight_name.rpartition(".")
        suffix = "linear" if site.canonical is nn.Linear else "conv"
        planned = qualify(owner_name, f"{pname}_{suffix}")
        full = qualify(prefix, planned)
        if site.reason or ctx.keep_functional:
            ctx.record(qualify(prefix, site.weight_name), site.source_type,
                       site.reason or ctx.keep_functional)
            continue
        decision = ctx.resolver.decide([full, qualify(prefix, site.weight_name)], site.canonical)
        if decision.rpu_config is None:
            ctx.record(full, site.source_type, decision)
            continue
        digital = site.build()
        key = (tuple(str(n.target) for n in site.param_nodes), site.source_type, repr(digital))
        target = built.get(key)
        if target is None:
            owner = gm.get_submodule(owner_name) if owner_name else gm
            cfg = ctx.layer_config(decision, full, digital)
            try:
                analog = ctx.build_analog(digital, cfg)
            except (TypeError, ValueError) as exc:
                ctx.record(full, site.source_type, f"unsupported: {exc}")
                continue
            local = _free_name(owner, f"{pname}_{suffix}")
            owner.add_module(local, analog)
            target = built[key] = qualify(owner_name, local)
            ctx.record(qualify(prefix, target), site.source_type, Decision(cfg), cfg)
        consumed.update(n.target for n in site.param_nodes if n.op == "get_attr")
        rewrite_site(gm.graph, site, target)
        changed = True
    if changed:
        _drop_unused_parameters(gm, consumed)
    return changed


def _drop_unused_parameters(gm: fx.GraphModule, consumed: set[str]) -> None:
    """Erase dead ``get_attr`` nodes and delete the parameters no node references any more
    (they now live in analog layers)."""
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            gm.graph.erase_node(node)
    referenced = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in consumed - referenced:
        owner_name, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        if attr in owner._parameters:
            del owner._parameters[attr]


def map_modules_pass(gm: fx.GraphModule, ctx: ConversionContext, prefix: str) -> bool:
    """Swap every called matrix module (graph order) for its analog twin."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if not ctx.is_matrix_module(module):
            continue
        full = qualify(prefix, node.target)
        new = ctx.map_module(module, full)
        if new is module:
            continue
        unserved = [r for r in _attribute_reads(gm, node.target)
                    if r.users and not _has_path(new, _path(r, node.target))]
        if unserved:  # the module's code reads something the analog layer does not have
            ctx.unrecord(f"kept digital: {type(gm).__name__}.forward reads "
                         f"{unserved[0].target}, which {type(new).__name__} does not have",
                         lambda n, f=full: n == f or n.startswith(f + "."))
            continue
        set_submodule(gm, node.target, new)
        _reroute_attribute_reads(gm, node.target)
        changed = True
    return changed


def _attribute_reads(gm: fx.GraphModule, name: str) -> list[fx.Node]:
    """The graph's ``get_attr`` nodes that read an attribute of the submodule ``name``."""
    return [n for n in gm.graph.nodes
            if n.op == "get_attr" and str(n.target).startswith(name + ".")]


def _path(node: fx.Node, name: str) -> list[str]:
    return str(node.target)[len(name) + 1:].split(".")


def _has_path(module: nn.Module, path: list[str]) -> bool:
    try:
        functools.reduce(getattr, path, module)
    except AttributeError:
        return False
    return True


def _reroute_attribute_reads(gm: fx.GraphModule, name: str) -> None:
    """The graph's reads of an attribute of the module just swapped at ``name`` (``wo.weight``
    for the dtype check of T5's feed-forward): unused ones (a branch tracing did not take) are
    erased; used ones read the attribute from the new module when the graph runs (an analog
    layer's ``weight`` is a view of its tile targets)."""
    for node in _attribute_reads(gm, name):
        if not node.users:
            gm.graph.erase_node(node)
            continue
        with gm.graph.inserting_before(node):
            value = gm.graph.get_attr(name)
            for atom in _path(node, name):
                value = gm.graph.call_function(getattr, (value, atom))
        node.replace_all_uses_with(value)
        gm.graph.erase_node(node)


FOLD_BATCHNORM = GraphPass("fold_batchnorm", fold_batchnorm_pass)
CANONICALIZE_FUNCTIONAL = GraphPass("canonicalize_functional", canonicalize_functional_pass)
MAP_MODULES = GraphPass("map_modules", map_modules_pass)


def disable_fused_transformer_paths(model: nn.Module) -> bool:
    """``nn.TransformerEncoder(Layer)`` take a fused fast path in eval mode that reads the
    digital weights directly (``linear1.weight``, nested tensors); turn it off where analog
    layers live inside. Returns whether anything was changed."""
    from ..nn.attention import AnalogMultiheadAttention
    from ..nn.base import AnalogLayerBase

    changed = False
    for module in model.modules():
        if not isinstance(module, nn.TransformerEncoderLayer | nn.TransformerEncoder):
            continue
        if not any(isinstance(m, AnalogLayerBase | AnalogMultiheadAttention)
                   for m in module.modules()):
            continue
        if isinstance(module, nn.TransformerEncoderLayer):
            module.activation_relu_or_gelu = False
        else:
            module.use_nested_tensor = False
        changed = True
    return changed
