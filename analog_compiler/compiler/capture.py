"""Capture: ``torch.fx`` symbolic tracing with leaf rules, and shape propagation.

Matrix modules and analog layers are leaves (one ``call_module`` node each, under their
qualified name), so the graph shows exactly where each layer is called and which functional
products use which parameters. Tracing failures are returned, never raised: the caller falls
back to module swap and records the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from ..inputs import model_failed, normalize_example_inputs

LeafRule = Callable[[nn.Module, str], bool]


class LeafTracer(fx.Tracer):
    """An FX tracer that also treats modules selected by ``leaf_rule`` as leaves."""

    def __init__(self, leaf_rule: LeafRule) -> None:
        super().__init__()
        self.leaf_rule = leaf_rule

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return self.leaf_rule(m, module_qualified_name) or super().is_leaf_module(
            m, module_qualified_name)


def trace_error(exc: BaseException) -> str:
    """A one-line description of a tracing failure."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(first) > 120 and ". " in first:
        first = first[:first.index(". ") + 1]
    return f"{type(exc).__name__}: {first}".strip()


def has_forward(module: nn.Module) -> bool:
    """Whether ``module`` defines a forward (containers such as ``nn.ModuleList`` do not)."""
    return type(module).forward is not nn.Module.forward


def trace(module: nn.Module, leaf_rule: LeafRule) -> tuple[fx.GraphModule | None, str]:
    """``(graph module, "")`` or ``(None, error)``. The graph module's tree is ``module``'s own
    (the same submodule objects, every child kept), so swapping a submodule by name in either
    place is visible through both."""
    tracer = LeafTracer(leaf_rule)
    try:
        graph = tracer.trace(module)
        graph.lint()
        gm = fx.GraphModule(module, graph, class_name=type(module).__name__)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: fall back
        return None, trace_error(exc)
    finally:
        # The tracer maps every submodule to its path and sits in a reference cycle: drop its
        # state so a replaced layer's weights are freed at once, not at the next gc cycle.
        vars(tracer).clear()
    adopt_tree(gm, module)
    return gm, ""


def adopt_tree(gm: fx.GraphModule, module: nn.Module) -> None:
    """Make ``gm`` hold all of ``module``'s children, parameters, buffers and public plain
    attributes (``GraphModule`` copies only what the graph references)."""
    for name, child in module.named_children():
        setattr(gm, name, child)
    for name, param in module.named_parameters(recurse=False):
        if name not in gm._parameters:
            gm.register_parameter(name, param)
    for name, buf in module.named_buffers(recurse=False):
        if name not in gm._buffers:
            gm.register_buffer(name, buf, persistent=name not in module._non_persistent_buffers_set)
    for name, value in vars(module).items():
        if not name.startswith("_") and name != "training" and not hasattr(gm, name):
            setattr(gm, name, value)
    gm.train(module.training)


class _ShapeProp(fx.Interpreter):
    """Runs the graph, annotating ``meta['tensor_meta']`` (as ``ShapeProp``, without its printed
    traceback) and remembering the node it failed on."""

    failed: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception:
            self.failed = self.failed or n
            raise
        found = []

        def meta(r: Any) -> Any:
            if isinstance(r, torch.Tensor):
                found.append(True)
                return _extract_tensor_metadata(r)
            return r

        annotated = fx.node.map_aggregate(result, meta)
        if found:
            n.meta["tensor_meta"] = annotated
        return result


def propagate_shapes(gm: fx.GraphModule, example_inputs: Any, where: str = "convert") -> None:
    """Annotate every node with ``meta['tensor_meta']``; a ``ValueError`` naming the inputs'
    shapes and the failing node when the inputs do not fit (``TypeError`` for inputs of the
    wrong form, see ``analog_compiler.inputs``)."""
    inputs = normalize_example_inputs(example_inputs, where)
    placeholders = placeholders_of(gm.graph)
    names = [n.target for n in placeholders]
    unknown = [k for k in inputs.kwargs if k not in names[len(inputs.args):]]
    if unknown:
        raise ValueError(f"{where}: example_inputs name keyword input(s) {unknown} that "
                         f"{type(gm).__name__}.forward does not take (after the positional "
                         f"ones); its inputs are {names}")
    ordered = list(inputs.args)
    for node in placeholders[len(inputs.args):]:
        if node.target in inputs.kwargs:
            ordered.append(inputs.kwargs[node.target])
        elif node.args:  # a default value
            ordered.append(node.args[0])
        elif not str(node.target).startswith("*"):
            raise ValueError(f"{where}: example_inputs give no value for {type(gm).__name__}."
                             f"forward's input {node.target!r} ({inputs.describe()})")
    prop = _ShapeProp(gm)
    try:
        with torch.no_grad():
            prop.run(*ordered)
    except Exception as exc:  # noqa: BLE001 - reported as a ValueError
        at = ""
        if prop.failed is not None:
            at = f" at node {prop.failed.name!r} ({prop.failed.format_node()})"
        raise model_failed(where, gm, inputs, exc, at) from None


def placeholders_of(graph: fx.Graph) -> Sequence[fx.Node]:
    """The graph's input nodes."""
    return [n for n in graph.nodes if n.op == "placeholder"]
