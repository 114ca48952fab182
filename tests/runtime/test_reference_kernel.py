"""``analog::tile_forward`` against the independent loop oracle (all noise off) and ideal math."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import TilePlan, kernel_io, ops
from analog_oracle import oracle_forward, quiet_io

import analog_compiler as ac


def run_kernel(x, weight, io, in_sizes, out_sizes, out_scales=None, bias=None, need_mask=False,
               seed=0):
    return ops.tile_forward(x, weight, out_scales, bias, torch.tensor(seed), list(in_sizes),
                            list(out_sizes), kernel_io(io), need_mask)


def make_case(groups: int, out_g: int, in_g: int, n: int = 6, seed: int = 0,
              dtype: torch.dtype = torch.float64):
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(groups, out_g, in_g, generator=gen, dtype=dtype) * 2 - 1
    x = (torch.rand(n, groups * in_g, generator=gen, dtype=dtype) * 2 - 1)
    x = x * torch.logspace(-2, 1, n, dtype=dtype).unsqueeze(1)  # vectors of very different size
    x[1] = 0.0  # an all-zero vector
    return x, w


CASES = [
    # groups, out_g, in_g, max_in, max_out, io changes, out_scales, bias
    (1, 7, 13, 5, 3, {}, False, True),
    (1, 7, 13, 5, 3, {"out_bound": 2.0}, True, True),
    (1, 9, 10, 0, 0, {"out_bound": 1.5}, False, False),
    (3, 4, 11, 4, 3, {"out_bound": 2.0}, True, True),
    (2, 6, 9, 9, 2, {"noise_management": "NONE", "out_bound": 3.0}, False, True),
    (1, 5, 12, 7, 5, {"noise_management": "CONSTANT", "nm_thres": 2.0}, True, False),
    (2, 5, 12, 5, 5, {"noise_management": "AVERAGE_ABS_MAX", "out_bound": 2.5}, False, True),
    (1, 5, 12, 5, 5, {"nm_thres": 0.05, "out_bound": 2.0}, False, True),
    (1, 8, 16, 6, 4, {"bound_management": "NONE", "out_bound": 1.0}, True, True),
    (1, 8, 16, 6, 4, {"inp_res": 1 / 254, "out_res": 1 / 254, "out_bound": 10.0}, False, True),
    (1, 8, 16, 6, 4, {"inp_res": 64.0, "out_res": -1.0, "out_bound": 2.0,
                      "max_bm_factor": 4.0}, False, True),
]


@pytest.mark.parametrize(("groups", "out_g", "in_g", "max_in", "max_out", "changes", "scaled",
                          "with_bias"), CASES)
def test_noise_free_forward_matches_oracle(groups, out_g, in_g, max_in, max_out, changes, scaled,
                                           with_bias) -> None:
    io = quiet_io(**changes)
    plan = TilePlan.build(in_g, out_g, max_in, max_out, groups)
    x, w = make_case(groups, out_g, in_g)
    gen = torch.Generator().manual_seed(1)
    scales = (torch.rand(groups, plan.n_in, out_g, generator=gen, dtype=x.dtype) + 0.5) \
        if scaled else None
    bias = torch.randn(groups * out_g, generator=gen, dtype=x.dtype) if with_bias else None
    y, keep = run_kernel(x, w, io, plan.in_sizes, plan.out_sizes, scales, bias, need_mask=True)
    y_ref, keep_ref, _ = oracle_forward(x, w, io, list(plan.in_sizes), list(plan.out_sizes),
                                        scales, bias)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    assert keep.shape == (groups, plan.n_in, x.shape[0], out_g)
    assert torch.equal(keep, keep_ref)
    # The analog output is not the ideal one (the test would not notice a perfect kernel).
    n = x.shape[0]
    ideal = torch.einsum("ngi,goi->ngo", x.view(n, groups, in_g), w).reshape(n, -1)
    if scales is None and bias is None:
        assert not torch.allclose(y, ideal, atol=1e-4)


def test_float32_matches_oracle() -> None:
    io = quiet_io(out_bound=2.0)
    x, w = make_case(2, 6, 10, n=8, dtype=torch.float32)
    y, _ = run_kernel(x, w, io, [5, 5], [3, 3])
    y_ref, _, _ = oracle_forward(x, w, io, [5, 5], [3, 3])
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 3])
def test_is_perfect_equals_matmul(groups: int) -> None:
    io = ac.IOParameters(is_perfect=True, out_noise=0.5)  # is_perfect ignores every non-ideality
    x, w = make_case(groups, 7, 13, dtype=torch.float32)
    b = torch.randn(groups * 7)
    ideal = torch.einsum("ngi,goi->ngo", x.view(-1, groups, 13), w).reshape(x.shape[0], -1)
    y, mask = run_kernel(x, w, io, [5, 4, 4], [4, 3], None, b)
    torch.testing.assert_close(y, ideal + b, rtol=1e-5, atol=1e-5)
    assert mask.numel() == 0
    scales = torch.rand(groups, 3, 7) + 0.5
    y, keep = run_kernel(x, w, io, [5, 4, 4], [4, 3], scales, b, need_mask=True)
    y_ref, _, _ = oracle_forward(x, w, io, [5, 4, 4], [4, 3], scales, b)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert bool(keep.all())


def test_bound_management_redoes_only_the_clipped_vectors() -> None:
    """Vector 0 saturates the ADC, vector 1 does not: only vector 0 is redone with red = 2."""
    # A coarse DAC makes the reduction visible in the output (max_bm_res allows red up to 4).
    io = quiet_io(out_bound=3.0, inp_res=1 / 14, max_bm_res=0.6)
    w = torch.ones(1, 2, 8, dtype=torch.float64) * torch.tensor([1.0, -0.5],
                                                                dtype=torch.float64).view(1, 2, 1)
    x = torch.tensor([[1.0] * 8,  # y = 8 -> clips at red 1, 4 at red 2 clips, 2 at red 4 fits
                      [1.0, -0.93, 0.61, -0.22, 0.35, -0.81, 0.13, 0.05]], dtype=torch.float64)
    y, keep = run_kernel(x, w, io, [8], [2], need_mask=True)
    y_ref, keep_ref, reds = oracle_forward(x, w, io, [8], [2])
    assert reds[0, 0, 0].tolist() == [4.0, 1.0]  # vector 0 halved twice, vector 1 never
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    assert torch.equal(keep, keep_ref) and bool(keep.all())
    # Had vector 1 been redone with the batch (aihwkit's torch tile), its output would differ.
    x1 = x[1]
    step = io.inp_step  # 2 / 14 and 6 / 510 as aihwkit computes them (float32)
    assert step == pytest.approx(2 / 14) and io.out_step == pytest.approx(6 / 510)
    red1 = torch.round(x1 / step) * step @ w[0].T
    red4 = torch.round(x1 / 4 / step) * step @ w[0].T * 4
    assert not torch.allclose(red1, red4)
    torch.testing.assert_close(y[1], torch.round(red1 / io.out_step) * io.out_step, atol=1e-12,
                               rtol=0)


def test_bound_management_gives_up_at_the_limit() -> None:
    """A vector that clips at every allowed reduction keeps its last result, marked clipped."""
    io = quiet_io(out_bound=0.5, inp_res=-1.0, out_res=-1.0, max_bm_factor=4.0)
    w = torch.ones(1, 1, 16, dtype=torch.float64)
    x = torch.stack([torch.ones(16), torch.full((16,), 0.001)]).double()
    x[1, 0] = 1.0  # alpha = 1, y = 1 + 15e-3 -> clips at red 1, fits at red 4
    y, keep = run_kernel(x, w, io, [16], [1], need_mask=True)
    # vector 0: 16 / red clipped at 0.5 for red = 1, 2, 4, 8 (aihwkit's loop stops after the
    # first reduction that exceeds max_bm_factor) -> 0.5 * 8
    assert y[0, 0].item() == pytest.approx(4.0)
    assert y[1, 0].item() == pytest.approx(1.015)
    assert keep[0, 0, :, 0].tolist() == [False, True]


def test_zero_vectors_and_mask_flag() -> None:
    io = quiet_io()
    x, w = make_case(1, 4, 6)
    b = torch.arange(4, dtype=x.dtype)
    y, mask = run_kernel(x, w, io, [6], [4], None, b)
    assert torch.equal(y[1], b)  # all-zero input vector: the tiles output 0, bias added once
    assert mask.numel() == 0 and mask.dtype == torch.bool


def test_same_seed_same_noise_and_different_seed_differs() -> None:
    io = ac.IOParameters(out_noise=0.1, w_noise=0.02, w_noise_type="ADDITIVE_CONSTANT",
                         inp_noise=0.01, inp_sto_round=True, out_sto_round=True)
    x, w = make_case(2, 5, 9, dtype=torch.float32)
    a, _ = run_kernel(x, w, io, [5, 4], [3, 2], seed=7)
    b, _ = run_kernel(x, w, io, [5, 4], [3, 2], seed=7)
    c, _ = run_kernel(x, w, io, [5, 4], [3, 2], seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
