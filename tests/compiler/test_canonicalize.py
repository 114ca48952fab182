"""Functional products and Conv1D-style layers in canonical (module) form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compiler_models import TinyConv1D
from torch import nn

import analog_compiler as ac
from analog_compiler.compiler.canonicalize import is_transposed_conv1d

IDEAL = ac.FloatingPointRPUConfig()


def status(model):
    return {r.name: (r.source_type, r.status, r.reason)
            for r in model.analog_conversion_log.records}


def test_duck_typed_conv1d_detection():
    assert is_transposed_conv1d(TinyConv1D(5, 3))
    assert not is_transposed_conv1d(nn.Linear(3, 5))
    assert not is_transposed_conv1d(nn.Conv1d(3, 5, 1))

    class NotConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.nf = 4
            self.weight = nn.Parameter(torch.zeros(4, 3))  # [out, in]: not transposed

    assert not is_transposed_conv1d(NotConv())


def test_shared_weight_used_twice_maps_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 6))

        def forward(self, x):
            return F.linear(torch.relu(F.linear(x, self.w)), self.w)

    model = Tied()
    analog = ac.convert(model, IDEAL)
    assert [n for n, m in analog.named_modules() if isinstance(m, ac.AnalogLinear)] == [
        "w_linear"]
    x = torch.randn(2, 6)
    assert torch.allclose(analog(x), model(x), atol=1e-5)


def test_weight_with_other_uses_stays_digital():
    class Reg(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 6))

        def forward(self, x):
            return F.linear(x, self.w) + self.w.sum()

    analog = ac.convert(Reg(), IDEAL)
    source, state, reason = status(analog)["w"]
    assert source == "F.linear" and state == "digital" and "also used" in reason
    assert type(analog) is Reg


def test_left_operand_parameter_is_reported():
    class Left(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            return self.w @ x

    analog = ac.convert(Left(), IDEAL)
    assert status(analog)["w"][1:] == ("digital", "unsupported: the parameter is the left "
                                       "operand (W @ x has no tile mapping)")


def test_addmm_with_activation_bias_and_method_matmul():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3))
            self.u = nn.Parameter(torch.randn(3, 2))

        def forward(self, x, b):
            return torch.addmm(b, x, self.w).matmul(self.u)

    model = M()
    analog = ac.convert(model, IDEAL)
    assert {k: v[:2] for k, v in status(analog).items()} == {
        "w_linear": ("addmm", "analog"), "u_linear": ("matmul", "analog")}
    x, b = torch.randn(5, 4), torch.randn(5, 3)
    assert torch.allclose(analog(x, b), model(x, b), atol=1e-5)


def test_functional_conv_with_stride_groups_and_string_padding():
    class C(nn.Module):
        def __init__(self):
            super().__init__()
            self.k1 = nn.Parameter(torch.randn(4, 1, 3, 3))
            self.k2 = nn.Parameter(torch.randn(6, 4, 3))
            self.b2 = nn.Parameter(torch.randn(6))

        def forward(self, x):
            y = F.conv2d(x, self.k1, stride=2, groups=4)
            return F.conv1d(y.flatten(2), self.k2, self.b2, padding="same")

    model = C()
    analog = ac.convert(model, IDEAL)
    assert analog.k1_conv.groups == 4 and analog.k1_conv.stride == (2, 2)
    assert analog.k2_conv.padding == "same"
    x = torch.randn(2, 4, 9, 9)
    assert torch.allclose(analog(x), model(x), atol=1e-4, rtol=1e-5)


def test_graph_module_replaces_only_the_owner_of_the_functional_product():
    class MyLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 6))
            self.bias = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return F.linear(x, self.weight, self.bias)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = MyLinear()

        def forward(self, x, scale=None):
            y = self.inner(x)
            return y if scale is None else y * scale

    model = Outer()
    analog = ac.convert(model, IDEAL)
    assert type(analog) is Outer  # the root keeps its code: its optional argument still works
    assert isinstance(analog.inner.weight_linear, ac.AnalogLinear)
    assert status(analog)["inner.weight_linear"][:2] == ("F.linear", "analog")
    x = torch.randn(2, 6)
    assert torch.allclose(analog(x), model(x), atol=1e-5)
    assert torch.allclose(analog(x, 2.0), model(x, 2.0), atol=1e-5)


def test_functional_product_next_to_optional_argument_stays_digital():
    class Opt(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 6))

        def forward(self, x, mask=None):
            y = F.linear(x, self.w)
            if mask is not None:
                y = y * mask
            return y

    model = Opt()
    analog = ac.convert(model, IDEAL)
    source, state, reason = status(analog)["w"]
    assert state == "digital" and "optional argument(s) mask" in reason
    x = torch.randn(2, 6)
    assert torch.equal(analog(x), model(x)) and type(analog) is Opt


def test_same_weight_with_two_biases_gets_two_layers():
    class TwoBiases(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))
            self.b1 = nn.Parameter(torch.randn(4))
            self.b2 = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return F.linear(F.linear(x, self.w, self.b1), self.w, self.b2)

    model = TwoBiases()
    analog = ac.convert(model, IDEAL)
    assert set(status(analog)) == {"w_linear", "w_linear_1"}
    x = torch.randn(2, 4)
    assert torch.allclose(analog(x), model(x), atol=1e-5)
    compiled = torch.compile(model, backend="analog", options={"rpu_config": IDEAL})
    assert torch.allclose(compiled(x), model(x), atol=1e-5)
    torch._dynamo.reset()
