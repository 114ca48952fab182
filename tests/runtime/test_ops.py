"""The ``analog`` custom ops: opcheck (schema, fake kernel, autograd registration, AOT) and the
straight-through gradient formula."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import TilePlan, kernel_io, ops
from analog_oracle import quiet_io

import analog_compiler as ac

OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor",
                 "test_aot_dispatch_dynamic")


def forward_args(groups=1, out_g=5, in_g=7, n=4, max_in=3, max_out=2, scales=True, bias=True,
                 requires_grad=True, io=None, need_mask=True):
    plan = TilePlan.build(in_g, out_g, max_in, max_out, groups)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, groups * in_g, generator=gen).requires_grad_(requires_grad)
    w = (torch.rand(groups, out_g, in_g, generator=gen) - 0.5).requires_grad_(requires_grad)
    s = torch.rand(groups, plan.n_in, out_g, generator=gen) + 0.5 if scales else None
    b = torch.randn(groups * out_g, generator=gen).requires_grad_(requires_grad) if bias else None
    kw = kernel_io(io or ac.IOParameters())
    return (x, w, s, b, torch.tensor(11), list(plan.in_sizes), list(plan.out_sizes)), kw, need_mask


OPCHECK_CASES = {
    "default": {},
    "no_mask": {"need_mask": False},
    "groups3_uneven": {"groups": 3, "in_g": 10, "out_g": 7, "max_in": 4, "max_out": 3},
    "no_scales_no_bias": {"scales": False, "bias": False},
    "single_tile": {"max_in": 0, "max_out": 0, "scales": False},
    "perfect": {"io": ac.IOParameters(is_perfect=True)},
    "noisy": {"io": ac.IOParameters(w_noise=0.02, w_noise_type="PCM_READ", inp_noise=0.01,
                                    out_bound=1.0)},
    "no_grad": {"requires_grad": False},
}
AOT_CASES = ("default", "no_mask", "groups3_uneven", "no_scales_no_bias")


@pytest.mark.parametrize("case", list(OPCHECK_CASES))
def test_opcheck_tile_forward(case: str) -> None:
    args, kw, need_mask = forward_args(**OPCHECK_CASES[case])
    # AOT compilation is the slow part: run it on the cases with distinct shapes / outputs.
    tests = OPCHECK_TESTS if case in AOT_CASES else OPCHECK_TESTS[:3]
    torch.library.opcheck(torch.ops.analog.tile_forward.default, args,
                          {**kw._asdict(), "need_mask": need_mask}, test_utils=tests)


@pytest.mark.parametrize(("with_mask", "scales", "need_x", "need_w"), [
    (True, True, True, True), (False, False, True, True), (True, False, False, True),
    (False, True, True, False)])
def test_opcheck_tile_backward(with_mask: bool, scales: bool, need_x: bool, need_w: bool) -> None:
    (x, w, s, _b, _seed, in_sizes, out_sizes), kw, _ = forward_args(groups=2, scales=scales,
                                                                    requires_grad=False)
    gen = torch.Generator().manual_seed(5)
    gy = torch.randn(x.shape[0], 2 * 5, generator=gen)
    mask = torch.rand(2, len(in_sizes), x.shape[0], 5, generator=gen) > 0.3 if with_mask else None
    torch.library.opcheck(torch.ops.analog.tile_backward.default,
                          (gy, x, w, s, mask, in_sizes, out_sizes, need_x, need_w),
                          test_utils=OPCHECK_TESTS[:1] + OPCHECK_TESTS[2:])


def straight_through_reference(x, w, scales, bias, keep, in_sizes, grad_y):
    """Gradients of the ideal computation sum_i (x_i W_i^T) * scale_i * keep_i + b (autograd)."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    groups, out_g, in_g = w.shape
    n = x.shape[0]
    xg = x.view(n, groups, in_g)
    y = torch.zeros(n, groups, out_g)
    col = 0
    for i, size in enumerate(in_sizes):
        part = torch.einsum("ngc,goc->ngo", xg[:, :, col:col + size], w[:, :, col:col + size])
        factor = keep[:, i].permute(1, 0, 2).float()  # [N, G, out_g]
        if scales is not None:
            factor = factor * scales[:, i].unsqueeze(0)
        y = y + part * factor
        col += size
    y = y.reshape(n, -1) + b
    y.backward(grad_y)
    return x.grad, w.grad, b.grad


@pytest.mark.parametrize(("groups", "scaled"), [(1, True), (3, True), (2, False)])
def test_gradients_match_straight_through(groups: int, scaled: bool) -> None:
    io = quiet_io(out_bound=0.4, bound_management="NONE")  # low ADC range: many outputs clip
    (x, w, s, b, seed, in_sizes, out_sizes), kw, _ = forward_args(groups=groups, in_g=9, out_g=6,
                                                                  n=8, scales=scaled, io=io)
    y, keep = torch.ops.analog.tile_forward(x, w, s, b, seed, in_sizes, out_sizes, *kw,
                                            need_mask=True)
    assert not bool(keep.all()) and bool(keep.any())  # both kinds present
    gy = torch.randn_like(y)
    y.backward(gy)
    gx, gw, gb = straight_through_reference(x, w, s, b, keep, in_sizes, gy)
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(w.grad, gw)
    torch.testing.assert_close(b.grad, gb)


def test_zero_gradient_where_output_clipped() -> None:
    io = quiet_io(out_bound=0.5, bound_management="NONE")
    w = torch.ones(1, 2, 4, requires_grad=True)
    w.data[0, 1] = 0.01  # row 1 never clips
    x = torch.ones(1, 4, requires_grad=True)
    y, keep = ops.tile_forward(x, w, None, None, torch.tensor(0), [4], [2], kernel_io(io), True)
    assert keep[0, 0, 0].tolist() == [False, True]
    y.sum().backward()
    assert torch.equal(w.grad[0, 0], torch.zeros(4))  # clipped row: no gradient
    torch.testing.assert_close(w.grad[0, 1], x.detach()[0])  # straight through the quantizers
    torch.testing.assert_close(x.grad[0], w.detach()[0, 1])


def test_gradients_flow_through_layer() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogLinear(6, 3, rpu_config=ac.InferenceRPUConfig(
        forward=quiet_io(), mapping=ac.MappingParameter(max_input_size=4)))
    x = torch.randn(5, 6, requires_grad=True)
    layer(x).pow(2).sum().backward()
    arr = layer.analog_module
    for t in (x.grad, arr.weight.grad, arr.bias.grad):
        assert t is not None and bool(t.abs().sum() > 0)


def test_no_mask_without_grad() -> None:
    (x, w, s, b, seed, in_sizes, out_sizes), kw, _ = forward_args(requires_grad=False)
    y, mask = torch.ops.analog.tile_forward(x, w, s, b, seed, in_sizes, out_sizes, *kw,
                                            need_mask=False)
    assert mask.numel() == 0 and y.shape == (x.shape[0], 5)


def test_fake_shapes_under_meta() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    (x, w, s, b, seed, in_sizes, out_sizes), kw, _ = forward_args(groups=2, requires_grad=False)
    with FakeTensorMode() as mode:
        fx, fw = mode.from_tensor(x), mode.from_tensor(w)
        fs, fb, fseed = mode.from_tensor(s), mode.from_tensor(b), mode.from_tensor(seed)
        y, m = torch.ops.analog.tile_forward(fx, fw, fs, fb, fseed, in_sizes, out_sizes, *kw,
                                             need_mask=True)
    assert tuple(y.shape) == (x.shape[0], 10)
    assert tuple(m.shape) == (2, len(in_sizes), x.shape[0], 5) and m.dtype == torch.bool
