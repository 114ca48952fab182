"""Small real architectures the compiler tests convert."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, d_in: int = 20, hidden: int = 37, d_out: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetTiny(nn.Module):
    """ResNet-style CNN: stem, two residual stages with BatchNorm, pooling, classifier."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


class DepthwiseSeparable(nn.Module):
    """MobileNet-style: depthwise 3x3 (groups = channels) then pointwise 1x1, plus Conv1d/3d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pw = nn.Conv2d(12, 24, 1)
        self.seq = nn.Conv1d(24, 8, 3, padding="same")
        self.vol = nn.Conv3d(1, 2, (1, 3, 3))
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.pw(F.relu(self.dw(F.relu(self.stem(x))))))
        z = self.seq(y.flatten(2))  # [N, 8, H*W]
        v = self.vol(x[:, :1].unsqueeze(1)).mean()
        return self.out(z.mean(-1)) + v


class FunctionalLinear(nn.Module):
    """Own parameters used through F.linear, ``x @ W``, ``x @ W.t()``, addmm and F.conv2d."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w1 = nn.Parameter(torch.randn(12, 6, generator=g) * 0.3)
        self.b1 = nn.Parameter(torch.randn(12, generator=g) * 0.1)
        self.w2 = nn.Parameter(torch.randn(12, 9, generator=g) * 0.3)   # [in, out]: x @ w2
        self.w3 = nn.Parameter(torch.randn(4, 9, generator=g) * 0.3)    # x @ w3.t()
        self.w4 = nn.Parameter(torch.randn(4, 5, generator=g) * 0.3)    # addmm(b4, x, w4)
        self.b4 = nn.Parameter(torch.randn(5, generator=g) * 0.1)
        self.k = nn.Parameter(torch.randn(4, 2, 3, 3, generator=g) * 0.3)

    def forward(self, x: torch.Tensor, img: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.tanh(F.linear(x, self.w1, self.b1))
        h = torch.tanh(h @ self.w2)
        h = torch.matmul(h, self.w3.t())
        h = torch.addmm(self.b4, h, self.w4)
        c = F.conv2d(img, self.k, None, 1, 1)
        return {"vec": h, "img": c}


class Encoder(nn.Module):
    """Transformer encoder (no LSTM) built from nn.TransformerEncoderLayer + a classifier."""

    def __init__(self, batch_first: bool = True, d: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=40, dropout=0.0,
                                           batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True)
        self.cls = nn.Linear(d, 3)
        self.batch_first = batch_first

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(tokens)
        if not self.batch_first:
            h = h.transpose(0, 1)
        h = self.encoder(h, src_key_padding_mask=pad_mask)
        if not self.batch_first:
            h = h.transpose(0, 1)
        if pad_mask is not None:  # the fused path zeroes padded positions: pool the rest only
            keep = (~pad_mask).unsqueeze(-1).to(h.dtype)
            return self.cls((h * keep).sum(1) / keep.sum(1))
        return self.cls(h.mean(1))


def encoder_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[2, 7]`` for ``Encoder`` and a padding mask hiding the last two of sample 1."""
    tokens = torch.randint(0, 50, (2, 7))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    return tokens, mask


class TinyConv1D(nn.Module):
    """The structure of transformers.pytorch_utils.Conv1D: weight [in, out], attribute nf."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Block(nn.Module):
    """A GPT-2 style block: LayerNorm, causal attention via Conv1D c_attn/c_proj, Conv1D MLP."""

    def __init__(self, d: int = 24, heads: int = 4, conv1d: type = TinyConv1D) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = conv1d(3 * d, d)
        self.c_proj = conv1d(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = conv1d(4 * d, d)
        self.mlp_proj = conv1d(d, 4 * d)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(att.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))
        return x, att


class DataDependent(nn.Module):
    """Untraceable: Python control flow on tensor values."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(8, 8) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.a(x) @ self.w
        return self.b(x)


class WithUntraceableBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.branch = DataDependent()
        self.v = nn.Parameter(torch.randn(4, 8) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.branch(self.inp(x)), self.v)
