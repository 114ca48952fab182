"""Canonicalize: matrix products written in other forms become digital module form.

- GPT-2 style ``Conv1D`` (a ``weight`` of shape ``[in, out]``, an ``nf`` attribute,
  ``addmm(bias, x, weight)``) -> ``nn.Linear`` with the transposed weight.
- In a graph: ``F.linear``, ``F.conv1d/2d/3d``, ``torch.matmul``/``@``/``mm`` and ``addmm``
  whose weight operand is a parameter -> a call of an ``nn.Linear``/``nn.ConvNd`` holding that
  parameter (``FunctionalSite.build``). The mapping step then treats them as any module.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx import Graph, Node

ParamOf = Callable[[Node], "tuple[str, Tensor] | None"]

LINEAR_TARGETS = {F.linear, torch._C._nn.linear}
CONV_TARGETS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, torch.conv1d: 1, torch.conv2d: 2,
                torch.conv3d: 3}
MATMUL_TARGETS = {torch.matmul, operator.matmul, torch.mm, torch.Tensor.matmul, torch.Tensor.mm}
MATMUL_METHODS = {"matmul", "mm", "__matmul__"}
ADDMM_TARGETS = {torch.addmm}
#: Products with no analog layer: a parameter in them stays digital, and is reported so.
BATCHED_TARGETS = {torch.bmm, torch.baddbmm, torch.einsum, torch.tensordot, torch.Tensor.bmm,
                   torch.Tensor.baddbmm}
BATCHED_METHODS = {"bmm", "baddbmm"}
CONV_CLASSES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_DEFAULTS = ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)


# ---------------------------------------------------------------------- Conv1D (GPT-2)
def is_transposed_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` or anything shaped like it (duck typing: ``nf`` attribute and a
    2-D ``weight`` parameter ``[in, nf]``)."""
    if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
        return False
    weight = module._parameters.get("weight")  # not getattr: FX tracing patches it
    if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
        return False
    nf = getattr(module, "nf", None)
    if type(module).__name__ == "Conv1D":
        return nf is None or weight.shape[1] == nf
    return isinstance(nf, int) and weight.shape[1] == nf


def transposed_conv1d_to_linear(module: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` computing the same as a ``Conv1D``: weight transposed."""
    weight = module.weight
    bias = getattr(module, "bias", None)
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias is not None, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.detach().t())
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear.train(module.training)


# ---------------------------------------------------------------------- functional sites
@dataclass
class FunctionalSite:
    """One functional matrix product whose weight is a parameter."""

    node: Node
    source_type: str
    """``F.linear``, ``F.conv2d``, ``matmul``, ``addmm``."""
    canonical: type
    """The module form: ``nn.Linear`` or ``nn.ConvNd``."""
    x: Node | None = None
    weight_name: str = ""
    """Qualified name of the weight parameter."""
    build: Callable[[], nn.Module] | None = None
    """Builds the digital module form (weights copied)."""
    add_after: Node | None = None
    """``addmm`` with a bias that is not a parameter: added after the module."""
    reason: str = ""
    """Non-empty: the site cannot be mapped (it stays digital, recorded with this reason)."""
    param_nodes: list[Node] = field(default_factory=list)


def _arg(node: Node, index: int, name: str, default: object) -> object:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _param(node: object, param_of: ParamOf) -> tuple[str, Tensor, bool, Node] | None:
    """``(name, tensor, transposed, param_node)`` when ``node`` is a parameter or its ``.t()``
    / ``.T`` / ``transpose(0, 1)``."""
    if not isinstance(node, Node):
        return None
    hit = param_of(node)
    if hit is not None:
        return hit[0], hit[1], False, node
    src = None
    if node.op == "call_method" and node.target == "t" or (
            node.op == "call_function" and node.target is torch.t):
        src = node.args[0]
    elif node.op == "call_function" and node.target is getattr and node.args[1] in ("T", "mT"):
        src = node.args[0]
    elif node.op in ("call_method", "call_function") and node.target in (
            "transpose", torch.transpose) and sorted(
            int(a) % 2 for a in node.args[1:3] if isinstance(a, int)) == [0, 1]:
        src = node.args[0]
    if isinstance(src, Node):
        hit = param_of(src)
        if hit is not None and hit[1].dim() == 2:
            return hit[0], hit[1], True, src
    return None


def _with_params(layer: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    """``layer`` holding copies of ``weight`` and ``bias``."""
    with torch.no_grad():
        layer.weight.copy_(weight.detach())
        if bias is not None:
            layer.bias.copy_(bias.detach())
    return layer


def _linear_builder(weight: Tensor, bias: Tensor | None) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return _with_params(nn.Linear(weight.shape[1], weight.shape[0], bias is not None,
                                      device=weight.device, dtype=weight.dtype), weight, bias)
    return build


def _conv_builder(ndim: int, weight: Tensor, bias: Tensor | None,
                  hyper: dict[str, object]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        groups = int(hyper["groups"])
        layer = CONV_CLASSES[ndim](weight.shape[1] * groups, weight.shape[0],
                                   tuple(weight.shape[2:]), hyper["stride"], hyper["padding"],
                                   hyper["dilation"], groups, bias is not None,
                                   device=weight.device, dtype=weight.dtype)
        return _with_params(layer, weight, bias)
    return build


def _bias(node: object, param_of: ParamOf, site: FunctionalSite) -> Tensor | None:
    """The bias parameter (its node joins ``site.param_nodes``); sets ``site.reason`` when the
    bias is not a 1-D parameter."""
    if node is None:
        return None
    hit = param_of(node) if isinstance(node, Node) else None
    if hit is None or hit[1].dim() != 1:
        site.reason = "unsupported: bias is not a 1-D parameter"
        return None
    site.param_nodes.append(node)
    return hit[1]


def classify(node: Node, param_of: ParamOf) -> FunctionalSite | None:
    """The FunctionalSite of ``node``, or None if it is no matrix product with a parameter."""
    target = node.target
    if node.op == "call_function" and target in LINEAR_TARGETS:
        x, w_node, b_node = (_arg(node, 0, "input", None), _arg(node, 1, "weight", None),
                             _arg(node, 2, "bias", None))
        p = _param(w_node, param_of)
        if p is None:
            return None
        site = FunctionalSite(node, "F.linear", nn.Linear, x, p[0], param_nodes=[p[3]])
        bias = _bias(b_node, param_of, site)
        weight = p[1].t() if p[2] else p[1]
        if p[1].dim() != 2:
            site.reason = "unsupported: weight is not 2-D"
        site.build = _linear_builder(weight, bias)
        return site
    if node.op == "call_function" and target in CONV_TARGETS:
        ndim = CONV_TARGETS[target]
        p = _param(_arg(node, 1, "weight", None), param_of)
        if p is None or p[2]:
            return None
        site = FunctionalSite(node, f"F.conv{ndim}d", CONV_CLASSES[ndim],
                              _arg(node, 0, "input", None), p[0], param_nodes=[p[3]])
        hyper = {name: _arg(node, i + 2, name, d) for i, (name, d) in enumerate(CONV_DEFAULTS)}
        bias = _bias(hyper.pop("bias"), param_of, site)
        if any(isinstance(v, Node) for v in hyper.values()):
            site.reason = "unsupported: convolution hyper-parameters are computed at run time"
        site.build = _conv_builder(ndim, p[1], bias, hyper)
        return site
    is_matmul = (node.op == "call_function" and target in MATMUL_TARGETS) or (
        node.op == "call_method" and target in MATMUL_METHODS)
    is_addmm = node.op == "call_function" and target in ADDMM_TARGETS
    if not (is_matmul or is_addmm):
        return None
    offset = 1 if is_addmm else 0
    left, right = node.args[offset], node.args[offset + 1] if len(node.args) > offset + 1 \
        else node.kwargs.get("mat2", node.kwargs.get("other"))
    p_right = _param(right, param_of)
    source = "addmm" if is_addmm else "matmul"
    if p_right is None:
        p_left = _param(left, param_of)
        if p_left is None:
            return None
        return FunctionalSite(node, source, nn.Linear, reason="unsupported: the parameter is the "
                              "left operand (W @ x has no tile mapping)", weight_name=p_left[0],
                              param_nodes=[p_left[3]])
    name, weight, transposed, pnode = p_right
    site = FunctionalSite(node, source, nn.Linear, left, name, param_nodes=[pnode])
    if weight.dim() != 2:
        site.reason = "unsupported: weight is not 2-D"
    bias = None
    if is_addmm:
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            site.reason = "unsupported: addmm with alpha/beta != 1"
        b_node = node.args[0]
        hit = param_of(b_node) if isinstance(b_node, Node) else None
        if hit is not None and hit[1].dim() == 1:
            bias = hit[1]
            site.param_nodes.append(b_node)
        elif isinstance(b_node, Node):
            site.add_after = b_node
        else:
            site.reason = "unsupported: addmm with a constant bias"
    site.build = _linear_builder(weight if transposed else weight.t(), bias)
    return site


def batched_products(graph: Graph, param_of: ParamOf) -> list[tuple[str, str]]:
    """``(parameter name, op name)`` for every parameter of two or more dimensions used by a
    batched product (``torch.bmm``, ``einsum``, ...), which no analog layer computes."""
    found: dict[str, str] = {}
    for node in graph.nodes:
        if not ((node.op == "call_function" and node.target in BATCHED_TARGETS)
                or (node.op == "call_method" and node.target in BATCHED_METHODS)):
            continue
        operands: list[object] = []
        torch.fx.node.map_arg((node.args, node.kwargs), operands.append)
        for operand in operands:
            p = _param(operand, param_of)
            if p is not None and p[1].dim() >= 2:
                name = getattr(node.target, "__name__", str(node.target))
                found.setdefault(p[0], f"torch.{name}")
    return list(found.items())


def find_sites(graph: Graph, param_of: ParamOf) -> list[FunctionalSite]:
    """Every functional matrix product with a parameter weight, in graph order. A weight that is
    also used in another way stays digital (mapping it would duplicate it)."""
    sites = [s for s in (classify(n, param_of) for n in graph.nodes) if s is not None]
    changed = True
    while changed:
        changed = False
        mapped = {s.node for s in sites if not s.reason}
        for s in sites:
            if s.reason:
                continue
            for pnode in s.param_nodes:
                for user in pnode.users:
                    if user in mapped or (user.users and set(user.users) <= mapped):
                        continue
                    s.reason = (f"unsupported: parameter {s.weight_name} is also used by "
                                f"{user.op} {getattr(user.target, '__name__', user.target)}")
                    changed = True
    return sites


def rewrite_site(graph: Graph, site: FunctionalSite, module_target: str) -> None:
    """Replace ``site.node`` by a call of the module at ``module_target``; drop dead weight
    nodes (``.t()`` and ``get_attr``; placeholders stay)."""
    node = site.node
    # read the operands now: earlier rewrites may have replaced the nodes ``classify`` saw
    if site.source_type == "addmm":
        x, add_after = node.args[1], node.args[0] if site.add_after is not None else None
    else:
        x, add_after = (node.args[0] if node.args else node.kwargs["input"]), None
    with graph.inserting_before(node):
        new = graph.call_module(module_target, (x,))
        if add_after is not None:
            new = graph.call_function(operator.add, (new, add_after))
    new.meta.update({k: v for k, v in node.meta.items() if k in ("tensor_meta", "val")})
    node.replace_all_uses_with(new)
    graph.erase_node(node)
    for pnode in site.param_nodes:
        for user in list(pnode.users):
            if not user.users and user.op != "output":
                graph.erase_node(user)
        if not pnode.users and pnode.op == "get_attr":
            graph.erase_node(pnode)
