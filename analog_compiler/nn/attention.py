"""AnalogMultiheadAttention: ``nn.MultiheadAttention`` with its projections as separate layers.

``nn.MultiheadAttention`` keeps its q/k/v projection as one raw packed parameter
(``in_proj_weight``) used inside ``F.multi_head_attention_forward``, which module-swapping tools
never see. This module computes the same math with four explicit projection layers, ``q_proj``,
``k_proj``, ``v_proj`` and ``out_proj`` (``AnalogLinear`` each, or ``nn.Linear`` for the ones a
policy keeps digital), so every projection maps onto its own tiles. It supports ``batch_first``,
unbatched inputs, ``kdim``/``vdim``, ``add_bias_kv``, ``add_zero_attn``, boolean and float
``attn_mask``/``key_padding_mask``, ``need_weights`` and ``average_attn_weights``.

``in_proj_weight`` and ``in_proj_bias`` are ``None`` so that ``nn.TransformerEncoderLayer``
takes its regular (non fused) path, which calls this module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import FloatingPointRPUConfig, InferenceRPUConfig, TileArray
from .linear import AnalogLinear

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _float_mask(mask: Tensor | None, dtype: torch.dtype, name: str) -> Tensor | None:
    """Boolean masks (True = not allowed) -> additive float masks."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise TypeError(f"AnalogMultiheadAttention: {name} must be bool or float, got {mask.dtype}")
    return mask.to(dtype)


class AnalogMultiheadAttention(nn.Module):
    """Multi-head attention whose four projections run on analog tiles."""

    in_proj_weight = None
    in_proj_bias = None

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False,
                 rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, device: Any = None,
                 dtype: torch.dtype | None = None, *, analog: bool = True) -> None:
        """Arguments as ``nn.MultiheadAttention`` plus aihwkit's ``rpu_config`` and
        ``tile_module_class``; ``analog=False`` builds ``nn.Linear`` projections (the canonical
        form that ``convert`` then maps projection by projection)."""
        super().__init__()
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"AnalogMultiheadAttention: embed_dim ({embed_dim}) must be a "
                             f"positive multiple of num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first, self.add_zero_attn = dropout, batch_first, add_zero_attn
        kw = {"device": device, "dtype": dtype}

        def proj(n_in: int, n_out: int) -> nn.Module:
            if analog:
                return AnalogLinear(n_in, n_out, bias, rpu_config, tile_module_class, **kw)
            return nn.Linear(n_in, n_out, bias, **kw)

        self.q_proj = proj(embed_dim, embed_dim)
        self.k_proj = proj(self.kdim, embed_dim)
        self.v_proj = proj(self.vdim, embed_dim)
        self.out_proj = proj(embed_dim, embed_dim)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, embed_dim, **kw))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_multihead_attention(cls, module: nn.MultiheadAttention) -> AnalogMultiheadAttention:
        """The same attention with digital ``nn.Linear`` projections (weights copied)."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"{cls.__name__}.from_multihead_attention expects an "
                            f"nn.MultiheadAttention, got {type(module).__name__}")
        e = module.embed_dim
        bias = module.in_proj_bias is not None
        ref = module.out_proj.weight
        new = cls(e, module.num_heads, module.dropout, bias, module.bias_k is not None,
                  module.add_zero_attn, module.kdim, module.vdim, module.batch_first,
                  device=ref.device, dtype=ref.dtype, analog=False)
        if module._qkv_same_embed_dim:
            weights = module.in_proj_weight.detach().chunk(3)
        else:
            weights = (module.q_proj_weight.detach(), module.k_proj_weight.detach(),
                       module.v_proj_weight.detach())
        biases = module.in_proj_bias.detach().chunk(3) if bias else (None,) * 3
        with torch.no_grad():
            for layer, w, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases):
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(b)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if module.out_proj.bias is not None:
                new.out_proj.bias.copy_(module.out_proj.bias)
            if module.bias_k is not None:
                new.bias_k.copy_(module.bias_k)
                new.bias_v.copy_(module.bias_v)
        return new.train(module.training)

    @classmethod
    def from_digital(cls, module: nn.MultiheadAttention,
                     rpu_config: InferenceRPUConfig | FloatingPointRPUConfig | None = None,
                     tile_module_class: type[TileArray] | None = None) -> AnalogMultiheadAttention:
        """The attention with all four projections on analog tiles."""
        new = cls.from_multihead_attention(module)
        for name in PROJECTIONS:
            setattr(new, name, AnalogLinear.from_digital(getattr(new, name), rpu_config,
                                                         tile_module_class))
        return new

    @classmethod
    def to_digital(cls, module: AnalogMultiheadAttention,
                   realistic: bool = False) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention`` with the projections' (exact or realistic) weights."""
        layers = {}
        for name in PROJECTIONS:
            layer = getattr(module, name)
            layers[name] = AnalogLinear.to_digital(layer, realistic) \
                if isinstance(layer, AnalogLinear) else layer
        ref = layers["out_proj"].weight
        has_bias = layers["q_proj"].bias is not None
        mha = nn.MultiheadAttention(module.embed_dim, module.num_heads, module.dropout, has_bias,
                                    module.bias_k is not None, module.add_zero_attn,
                                    module.kdim, module.vdim, module.batch_first,
                                    device=ref.device, dtype=ref.dtype)
        q, k, v = (layers[n] for n in PROJECTIONS[:3])
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                mha.in_proj_weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
            else:
                mha.q_proj_weight.copy_(q.weight)
                mha.k_proj_weight.copy_(k.weight)
                mha.v_proj_weight.copy_(v.weight)
            if has_bias:
                mha.in_proj_bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
            mha.out_proj.weight.copy_(layers["out_proj"].weight)
            if mha.out_proj.bias is not None:
                mha.out_proj.bias.copy_(layers["out_proj"].bias)
            if module.bias_k is not None:
                mha.bias_k.copy_(module.bias_k)
                mha.bias_v.copy_(module.bias_v)
        return mha.train(module.training)

    # ------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """As ``nn.MultiheadAttention.forward``: ``(attn_output, attn_weights or None)``."""
        if is_causal and attn_mask is None:
            raise RuntimeError("AnalogMultiheadAttention: is_causal=True needs attn_mask "
                               "(as nn.MultiheadAttention)")
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, tgt, e = query.shape
        h, hd = self.num_heads, self.head_dim
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        kpm = _float_mask(key_padding_mask, q.dtype, "key_padding_mask")
        mask = _float_mask(attn_mask, q.dtype, "attn_mask")
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, e)], dim=1)
            v = torch.cat([v, self.bias_v.expand(n, 1, e)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        q = q.view(n, tgt, h, hd).transpose(1, 2)
        k = k.view(n, -1, h, hd).transpose(1, 2)
        v = v.view(n, -1, h, hd).transpose(1, 2)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(n, h, 1, hd)], dim=2)
            v = torch.cat([v, v.new_zeros(n, h, 1, hd)], dim=2)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        src = k.shape[2]
        merged = None
        if mask is not None:
            merged = mask.view(1, 1, tgt, src) if mask.dim() == 2 else mask.view(n, h, tgt, src)
        if kpm is not None:
            kpm = kpm.view(n, 1, 1, src)
            merged = kpm if merged is None else merged + kpm
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * hd ** -0.5) @ k.transpose(-2, -1)
            if merged is not None:
                scores = scores + merged
            weights = torch.softmax(scores, dim=-1)
            out = F.dropout(weights, p=p) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=merged, dropout_p=p)
            weights = None
        out = self.out_proj(out.transpose(1, 2).reshape(n, tgt, e))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"batch_first={self.batch_first}")
