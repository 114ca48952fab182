"""Optional BatchNorm folding: ``conv/linear -> BatchNorm`` becomes one conv/linear.

Uses the running statistics (inference semantics). The folded BatchNorm is replaced by
``nn.Identity`` under its own name, so its ``state_dict`` entries disappear and the preceding
layer's weight and bias carry the affine transform.
"""

from __future__ import annotations

import torch
from torch import fx, nn

FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (with running statistics) can be folded into ``layer``."""
    if not isinstance(layer, FOLDABLE) or not isinstance(bn, BATCHNORMS):
        return False
    if not any(type(layer).forward is base.forward for base in FOLDABLE):
        return False  # a subclass with its own forward may not be affine in its weight
    if bn.running_mean is None or bn.running_var is None:
        return False
    channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return bn.num_features == channels


@torch.no_grad()
def fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` into ``layer``'s weight and bias (in place; adds a bias if needed)."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    view = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(scale.view(view).to(layer.weight.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros_like(shift, dtype=layer.weight.dtype))
    layer.bias.mul_(scale.to(layer.bias.dtype)).add_(shift.to(layer.bias.dtype))


def fold_batchnorm_graph(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """Fold every ``call_module`` layer whose only user is a foldable BatchNorm; the BatchNorm
    becomes ``nn.Identity``. Returns ``(layer, batchnorm)`` name pairs."""
    modules = dict(gm.named_modules())
    folded = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        if user.op != "call_module" or user.args[:1] != (node,):
            continue
        layer, bn = modules.get(node.target), modules.get(user.target)
        if layer is None or bn is None or not can_fold(layer, bn):
            continue
        if sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == user.target) > 1:
            continue  # a BatchNorm called twice cannot be folded into one layer
        fold_into(layer, bn)
        _replace(gm, user.target)
        folded.append((node.target, user.target))
    return folded


def _replace(root: nn.Module, name: str) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, nn.Identity())
