"""``AnalogExperts``: the experts of a mixture-of-experts block on analog tiles.

Hugging Face stores the experts of its MoE decoders (Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek, ...)
as 3-D parameters, one matrix per expert, in a module marked by its
``use_experts_implementation`` decorator, which also says the layout: ``gate_up_proj
[E, 2I, H]`` (or ``up_proj [E, I, H]`` without a gate), ``down_proj [E, H, I]``, optional
biases ``<name>_bias [E, out]``, ``is_transposed`` (``[E, in, out]``), a gating function
``_apply_gate`` and an optional ``post_expert_norm``. Each expert's matrix becomes an
``AnalogLinear`` (``gate_up.<e>`` or ``up.<e>``, and ``down.<e>``), and the forward is the
reference (eager) one of that decorator: every expert runs on the tokens routed to it, its output
weighted by the routing weight and summed per token.

The rest of the digital module (activation, gating constants, config, the post-expert norm) is
kept, without its matrices, as ``digital_spec``; the gating runs that module's own
``_apply_gate``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import TileArray
from .containers import AnalogContainerMixin
from .linear import AnalogLinear

RPUConfig = Any


def is_experts_module(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face experts module (3-D expert matrices, layout flags of
    ``use_experts_implementation``)."""
    flags = ("has_gate", "has_bias", "is_transposed", "num_experts")
    if not all(hasattr(module, f) for f in flags) or isinstance(module, AnalogExperts):
        return False
    down = module._parameters.get("down_proj")
    return isinstance(down, Tensor) and down.dim() == 3


def _matrix_names(module: nn.Module) -> tuple[str, str]:
    return ("gate_up_proj" if module.has_gate else "up_proj"), "down_proj"


class AnalogExperts(AnalogContainerMixin, nn.Module):
    """The experts of a Hugging Face MoE block, one ``AnalogLinear`` per expert and matrix
    (built by ``convert``, or ``AnalogExperts.from_digital(experts, rpu_config)``)."""

    def __init__(self, spec: nn.Module, layers: dict[str, list[AnalogLinear]]) -> None:
        super().__init__()
        self.num_experts = int(spec.num_experts)
        self.has_gate = bool(spec.has_gate)
        for key, experts in layers.items():
            setattr(self, key, nn.ModuleList(experts))
        # the digital module without its matrices: not a submodule, so that nothing converts,
        # saves or counts it twice; its norm (if any) is registered below
        object.__setattr__(self, "digital_spec", spec)
        norm = getattr(spec, "post_expert_norm", None) if getattr(
            spec, "has_post_expert_norm", False) else None
        self.post_expert_norm = norm

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_digital(cls, module: nn.Module, rpu_config: RPUConfig | None = None,
                     tile_module_class: type[TileArray] | None = None) -> AnalogExperts:
        """One ``AnalogLinear`` per expert and matrix of the experts module ``module``."""
        if not is_experts_module(module):
            raise TypeError(f"{cls.__name__}.from_digital expects a Hugging Face experts module "
                            f"(3-D expert matrices), got {type(module).__name__}")
        if getattr(module, "_is_expert_parallel", False):
            raise ValueError(f"{type(module).__name__}: expert-parallel experts are not supported")
        layers: dict[str, list[AnalogLinear]] = {}
        names = _matrix_names(module)
        for pname in names:
            key = pname.removesuffix("_proj")  # the ModuleList: gate_up, up or down
            weight = module._parameters[pname].detach()
            bias = module._parameters.get(pname + "_bias") if module.has_bias else None
            if weight.shape[0] != module.num_experts:
                raise ValueError(f"{type(module).__name__}.{pname}: {weight.shape[0]} experts, "
                                 f"num_experts is {module.num_experts}")
            experts = []
            for e in range(module.num_experts):
                w = weight[e].T if module.is_transposed else weight[e]
                lin = AnalogLinear(w.shape[1], w.shape[0], bias=bias is not None,
                                   rpu_config=copy.deepcopy(rpu_config),
                                   tile_module_class=tile_module_class, device=w.device,
                                   dtype=w.dtype)
                lin.set_weights(w, None if bias is None else bias[e].detach(), force_exact=True)
                experts.append(lin)
            layers[key] = experts
        spec = copy.copy(module)  # shallow: shares act_fn, config, norm; drops the matrices
        spec._parameters = {k: v for k, v in module._parameters.items()
                            if k.removesuffix("_bias") not in names}
        spec._modules, spec._buffers = dict(module._modules), dict(module._buffers)
        return cls(spec, layers).train(module.training)

    def digital_parameter_name(self, layer_name: str) -> str:
        """The digital module's matrix of the analog layer ``layer_name``
        (``gate_up.3`` -> ``gate_up_proj[3]``)."""
        key, e = layer_name.split(".")
        return f"{key}_proj[{e}]"

    def digital_twin(self, linear_fn: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """The digital experts module whose matrices are ``linear_fn(layer)`` of each expert's
        ``AnalogLinear`` (an ``nn.Linear`` with the weights to use)."""
        spec = self.digital_spec
        digital = copy.copy(spec)
        digital._parameters = dict(spec._parameters)
        digital._modules = dict(spec._modules)
        for key in ("gate_up", "up", "down"):
            experts = getattr(self, key, None)
            if experts is None:
                continue
            linears = [linear_fn(layer) for layer in experts]
            weight = torch.stack([lin.weight.detach() for lin in linears])
            if spec.is_transposed:
                weight = weight.transpose(1, 2)
            digital._parameters[f"{key}_proj"] = nn.Parameter(weight.contiguous())
            if spec.has_bias:
                digital._parameters[f"{key}_proj_bias"] = nn.Parameter(
                    torch.stack([lin.bias.detach() for lin in linears]))
        return digital.train(self.training)

    @classmethod
    def to_digital(cls, module: AnalogExperts, realistic: bool = False) -> nn.Module:
        """The digital experts module with the exact target weights, or with ``realistic`` the
        chip's current weights with every digital output scale folded in."""
        if not isinstance(module, AnalogExperts):
            raise TypeError(f"{cls.__name__}.to_digital expects an AnalogExperts, got "
                            f"{type(module).__name__}")
        return module.digital_twin(lambda layer: type(layer).to_digital(layer, realistic))

    # ------------------------------------------------------------ forward
    def forward(self, hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor) -> Tensor:
        """``[tokens, H]`` hidden states, ``[tokens, k]`` expert indices and routing weights
        -> ``[tokens, H]``: the sum over each token's experts of the routing weight times the
        expert's output (the reference forward of Hugging Face's experts modules)."""
        final = torch.zeros_like(hidden_states)
        first = self.gate_up if self.has_gate else self.up
        with torch.no_grad():
            hit = torch.bincount(top_k_index.reshape(-1), minlength=self.num_experts)
        for e in torch.nonzero(hit[:self.num_experts]).flatten().tolist():
            token_idx, slot = torch.where(top_k_index == e)
            h = first[e](hidden_states[token_idx])
            h = self.digital_spec._apply_gate(h) if self.has_gate else self.digital_spec.act_fn(h)
            h = self.down[e](h)
            if self.post_expert_norm is not None:
                h = self.post_expert_norm(h)
            h = h * top_k_weights[token_idx, slot, None]
            final.index_add_(0, token_idx, h.to(final.dtype))
        return final

    def extra_repr(self) -> str:
        first = self.gate_up if self.has_gate else self.up
        return (f"num_experts={self.num_experts}, {'gate_up' if self.has_gate else 'up'}="
                f"{first[0].in_features}->{first[0].out_features}, "
                f"down={self.down[0].in_features}->{self.down[0].out_features}, "
                f"digital={type(self.digital_spec).__name__}")

