"""The periphery features of aihwkit's C++ forward beyond ABS_MAX / ITERATIVE: noise management
MAX and ABS_MAX_NP_SUM, bound management ITERATIVE_WORST_CASE and SHIFT, the IR drop, the clip
test (beyond the bound, not at it; ``bm_test_negative_bound``), the float32 ADC step and the
per-column output noise ``out_noise_std``.

Both kernels (the compiled one and the pure-PyTorch reference) are checked against a plain,
loop-per-vector oracle written from aihwkit's C++ (``rpu_forward_backward_pass.cpp``:
``computeNoiseManagement``, ``forwardVector``, ``applyIrDrop``, ``finalizeOutput``), in float64
so that no ADC rounding depends on a summation order.
"""

from __future__ import annotations

import math

import pytest
import torch
from analog_compiler.runtime import reference
from analog_compiler.runtime.periphery import kernel_io, with_chip_seed
from torch import Tensor

import analog_compiler as ac

CPP = ac.runtime.backend()["tile_forward"]["cpu"] == "cpp"
IMPLS = ["reference", pytest.param("cpp", marks=pytest.mark.skipif(not CPP, reason="no C++"))]


def run(impl: str, x: Tensor, w: Tensor, io: ac.IOParameters, in_sizes: list[int],
        out_sizes: list[int], seed: int = 3, need_mask: bool = False,
        chip_seed: int | None = None) -> tuple[Tensor, Tensor]:
    """One tile_forward call of ``impl`` (``w`` is ``[1, out, in]``)."""
    kio = kernel_io(io) if chip_seed is None else with_chip_seed(kernel_io(io), chip_seed)
    args = (x, w, None, None, torch.tensor(seed), in_sizes, out_sizes, kio.io_f, kio.io_i,
            need_mask)
    if impl == "cpp":
        return torch.ops.analog.tile_forward(*args)
    return reference.tile_forward(*args)


# ----------------------------------------------------------------------------- the oracle
def nm_scale(x: Tensor, io: ac.IOParameters, kind: ac.NoiseManagementType) -> float:
    """aihwkit's computeNoiseManagement for one input segment."""
    NM = ac.NoiseManagementType
    if kind is NM.NONE:
        return 1.0
    if kind is NM.CONSTANT:
        return io.nm_thres
    amax = float(x.abs().max()) if kind is not NM.MAX else float(x.max())
    if io.nm_thres > 0:
        amax = min(amax, io.nm_thres)
    if kind is not NM.ABS_MAX_NP_SUM:
        return amax
    total = max(float(x.clamp_min(0).sum()), -float(x.clamp_max(0).sum()))
    np_scale = total * io.nm_assumed_wmax / (io.out_bound if io.out_bound > 0 else 1.0)
    if io.inp_step > 0:
        np_scale = min(amax / io.inp_step * io.max_bm_res, np_scale)
    return max(amax, np_scale)


def tile_pass(x: Tensor, w: Tensor, io: ac.IOParameters, scale: float) -> tuple[Tensor, bool]:
    """prepareInput, the MVM, IR drop, SHIFT and finalizeOutput of one vector: ``(y, bound test
    failed)``, y still in tile units."""
    xs = x * (1.0 / scale)
    if io.inp_step > 0:
        xs = torch.round(xs / io.inp_step) * io.inp_step
    xs = xs.clamp(-io.inp_bound, io.inp_bound)
    y = w @ xs
    if io.ir_drop > 0:
        n = x.numel()
        cur = w.abs() @ xs.abs()
        a = n / io.ir_drop_g_ratio * cur
        c = a * (a * (0.05 * a - 0.2) + 0.5)
        ramp = torch.tensor([1 - (1 - j / n) ** 2 for j in range(n)], dtype=x.dtype)
        y = y - c * (io.ir_drop * (w @ (xs * ramp)))
    if io.bound_management is ac.BoundManagementType.SHIFT:
        y = y + (io.out_bound - y.max())
    if io.out_step > 0:
        y = torch.round(y / io.out_step) * io.out_step
    failed = False
    if io.out_bound > 0:
        failed = bool((y > io.out_bound).any()) or (
            io.bm_test_negative_bound and bool((y < -io.out_bound).any()))
        y = y.clamp(-io.out_bound, io.out_bound)
    return y, failed


def oracle(x: Tensor, w: Tensor, io: ac.IOParameters, in_sizes: list[int],
           out_sizes: list[int]) -> Tensor:
    """aihwkit's forwardVector per vector and tile (w: ``[out, in]``), partial sums added."""
    BM = ac.BoundManagementType
    y = torch.zeros(x.shape[0], w.shape[0], dtype=x.dtype)
    c0 = 0
    for ci in in_sizes:
        r0 = 0
        for ro in out_sizes:
            wt = w[r0:r0 + ro, c0:c0 + ci]
            for v in range(x.shape[0]):
                xv = x[v, c0:c0 + ci]
                nm = io.noise_management
                alpha = nm_scale(xv, io, nm)
                if nm is not ac.NoiseManagementType.NONE and alpha <= 0:
                    continue  # aihwkit's short cut: the output is 0
                red, bm = 0.5, io.bound_management not in (BM.NONE, BM.SHIFT)
                for rnd in range(10_000):
                    red *= 2.0
                    if rnd == 1 and io.bound_management is BM.ITERATIVE_WORST_CASE and \
                            nm is not ac.NoiseManagementType.ABS_MAX_NP_SUM:
                        alpha = nm_scale(xv, io, ac.NoiseManagementType.ABS_MAX_NP_SUM)
                        red = 1.0
                    s = (alpha if nm is not ac.NoiseManagementType.NONE else 1.0) \
                        * (red if bm else 1.0)
                    out, failed = tile_pass(xv, wt, io, s)
                    limit = (red > io.max_bm_factor or
                             (io.inp_step > 0 and red > io.max_bm_res / io.inp_step))
                    if not bm or not failed or limit:
                        break
                y[v, r0:r0 + ro] += out * s
            r0 += ro
        c0 += ci
    return y


def problem(n: int, n_in: int, n_out: int, seed: int = 0, lean: float = 0.3,
            wscale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Inputs with a coherent part growing over the batch and weights leaning to one sign per
    row (so that outputs clip and bound management runs), in float64."""
    g = torch.Generator().manual_seed(seed)
    c = torch.linspace(0, 1, n, dtype=torch.float64).unsqueeze(1)
    x = c + (1 - c) * (2 * torch.rand(n, n_in, generator=g, dtype=torch.float64) - 1)
    sign = torch.where(torch.rand(n_out, 1, generator=g) < 0.5, -1.0, 1.0).double()
    w = (sign * lean + (torch.rand(n_out, n_in, generator=g, dtype=torch.float64) - 0.5))
    return x, w * wscale / w.abs().amax()


QUIET = dict(out_noise=0.0, out_bound=12.0)
SPLITS = ([40, 24], [30, 20])  # two input splits, two output splits


def check(impl: str, io: ac.IOParameters, x: Tensor, w: Tensor, in_sizes=SPLITS[0],
          out_sizes=SPLITS[1]) -> Tensor:
    y, _ = run(impl, x, w.unsqueeze(0), io, in_sizes, out_sizes)
    expect = oracle(x, w, io, in_sizes, out_sizes)
    torch.testing.assert_close(y, expect, rtol=0, atol=1e-9)
    return expect


# ----------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("impl", IMPLS)
def test_noise_management_max_is_the_signed_max(impl: str) -> None:
    x, w = problem(32, 64, 50)
    x[:4] = -x[:4].abs()  # no positive input: aihwkit's output is 0
    x[4:8] = x[4:8] - 1.5  # a small positive max, large negative inputs clip at the DAC
    io = ac.IOParameters(noise_management="MAX", **QUIET)
    y = check(impl, io, x, w)
    assert float(y[:4].abs().max()) == 0.0 and float(y[4:].abs().max()) > 0
    capped = ac.IOParameters(noise_management="MAX", nm_thres=0.4, **QUIET)
    check(impl, capped, x, w)


@pytest.mark.parametrize("impl", IMPLS)
def test_noise_management_abs_max_np_sum(impl: str) -> None:
    x, w = problem(32, 64, 50)
    io = ac.IOParameters(noise_management="ABS_MAX_NP_SUM", **QUIET)
    check(impl, io, x, w)
    # the scale is the sum bound for coherent inputs and the abs-max for incoherent ones
    seg = x[-1, :40]
    assert nm_scale(seg, io, io.noise_management) > float(seg.abs().max()) * 1.5
    for extra in (dict(nm_thres=0.5), dict(inp_res=-1.0), dict(out_bound=6.0),
                  dict(nm_assumed_wmax=1.0, bound_management="NONE")):
        check(impl, ac.IOParameters(**{**QUIET, "noise_management": "ABS_MAX_NP_SUM",
                                       **extra}), x, w)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("nm", ["ABS_MAX", "CONSTANT", "NONE", "ABS_MAX_NP_SUM"])
def test_iterative_worst_case(impl: str, nm: str) -> None:
    x, w = problem(48, 64, 50, lean=0.5)
    io = ac.IOParameters(bound_management="ITERATIVE_WORST_CASE", noise_management=nm,
                         nm_thres=1.0 if nm == "CONSTANT" else 0.0, **QUIET)
    y = check(impl, io, x, w)
    plain = oracle(x, w, ac.IOParameters(noise_management=nm, nm_thres=io.nm_thres, **QUIET),
                   *SPLITS)
    if nm == "ABS_MAX":  # the worst-case round changes the outputs of the clipped vectors
        assert (y - plain).abs().amax(1).gt(1e-6).sum() >= 5


@pytest.mark.parametrize("impl", IMPLS)
def test_shift_moves_the_largest_output_to_the_bound(impl: str) -> None:
    x, w = problem(24, 64, 50, lean=0.5)
    io = ac.IOParameters(bound_management="SHIFT", out_bound=4.0, out_noise=0.0)
    check(impl, io, x, w)
    # one input split: per vector and output split, the largest output is the bound (times the
    # input scale) and the most negative ones clip at -bound
    y = check(impl, io, x, w, [64], SPLITS[1])
    alpha = x.abs().amax(1)
    torch.testing.assert_close(y[:, :30].amax(1), 4.0 * alpha, rtol=1e-12, atol=1e-12)
    assert int((y[:, :30].amin(1) <= -4.0 * alpha + 1e-9).sum()) >= 5


@pytest.mark.parametrize("impl", IMPLS)
def test_ir_drop(impl: str) -> None:
    x, w = problem(16, 64, 50)
    for fields in (dict(out_res=-1.0), dict(), dict(out_bound=3.0)):
        io = ac.IOParameters(ir_drop=1.0, ir_drop_g_ratio=2000.0, **{**QUIET, **fields})
        y = check(impl, io, x, w)
        plain = oracle(x, w, ac.IOParameters(**{**QUIET, **fields}), *SPLITS)
        assert float((y - plain).abs().max()) > 0.05  # the drop is visible
    # aihwkit's default wire ratio: a small drop on a 512-input tile
    x, w = problem(4, 512, 16)
    io = ac.IOParameters(ir_drop=1.0, out_res=-1.0, **QUIET)
    y = check(impl, io, x, w, [512], [16])
    plain = oracle(x, w, ac.IOParameters(out_res=-1.0, **QUIET), [512], [16])
    assert 0 < float((y - plain).abs().max()) < 0.05 * float(plain.abs().max())


@pytest.mark.parametrize("impl", IMPLS)
def test_clip_test_is_beyond_the_bound(impl: str) -> None:
    """aihwkit redoes a vector whose output is beyond the bound, not one at it; below -bound
    only with ``bm_test_negative_bound``."""
    w = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # outputs 2, -2, 0.5 at reduction 1
    at = ac.IOParameters(out_bound=2.0, out_res=-1.0, inp_res=-1.0, out_noise=0.0)
    y, keep = run(impl, x, w.unsqueeze(0), at, [2], [3], need_mask=True)
    assert y.tolist() == [[2.0, -2.0, 0.5]] and bool(keep.all())  # at the bound: no redo
    for neg, expect in ((True, [[2.0, -2.0, 0.5]]), (False, [[1.5, -1.5, 0.5]])):
        io = ac.IOParameters(out_bound=1.5, out_res=-1.0, inp_res=-1.0, out_noise=0.0,
                             bm_test_negative_bound=neg)
        w2 = w.clone()
        w2[0] = 0.5  # only the negative output clips at reduction 1
        y, _ = run(impl, x, w2.unsqueeze(0), io, [2], [3])
        exp = oracle(x, w2, io, [2], [3])
        torch.testing.assert_close(y, exp, rtol=0, atol=1e-12)
        assert y[0, 1].item() == pytest.approx(expect[0][1])


@pytest.mark.parametrize("impl", IMPLS)
def test_adc_step_in_float32_puts_the_top_level_beyond_the_bound(impl: str) -> None:
    """aihwkit's 9-bit step float(1/510) * 24 is an ulp above 24/510: the top level 255 steps
    is 12.000001 > 12, which clips (to 12) and makes bound management redo the vector; 8 bits at
    out_bound 10 end exactly on the bound, which does not."""
    io9 = ac.IOParameters(out_noise=0.0, inp_res=-1.0)
    assert io9.out_step == float(torch.tensor(1 / 510, dtype=torch.float32) * 24)
    assert 255 * torch.tensor(io9.out_step, dtype=torch.float32) > 12
    w = torch.tensor([[12.0]], dtype=torch.float32)
    x = torch.tensor([[1.0]], dtype=torch.float32)
    y, keep = run(impl, x, w.unsqueeze(0), io9, [1], [1], need_mask=True)
    step = torch.tensor(io9.out_step, dtype=torch.float32)
    assert y.item() == (2 * torch.round(6 / step) * step).item()  # redone at reduction 2
    assert bool(keep.all())
    off = ac.IOParameters(out_noise=0.0, inp_res=-1.0, bound_management="NONE")
    y, keep = run(impl, x, w.unsqueeze(0), off, [1], [1], need_mask=True)
    assert y.item() == 12.0 and not bool(keep.any())  # clipped back to the bound
    io8 = ac.IOParameters(out_noise=0.0, inp_res=-1.0, out_res=1 / 254, out_bound=10.0)
    w = torch.tensor([[10.0]], dtype=torch.float32)
    y, keep = run(impl, x, w.unsqueeze(0), io8, [1], [1], need_mask=True)
    assert y.item() == 10.0 and bool(keep.all())  # on the bound: kept, not redone


def test_no_adc_without_an_output_bound() -> None:
    """As aihwkit: the ADC's step is a fraction of ``2 * out_bound``, so none without a bound."""
    assert ac.IOParameters(out_bound=0.0).out_step == 0.0
    assert ac.IOParameters(out_bound=-1.0, out_res=64.0).out_step == 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_out_noise_std_is_a_fixed_column_pattern_per_chip(impl: str) -> None:
    """Output noise only (zero weights, no ADC): column k's noise std over many vectors is
    ``|out_noise (1 + out_noise_std xi_k)|``: mean about out_noise, spread out_noise_std times
    it, the same pattern for the same chip seed and an independent one for another."""
    n, cols, on, sd = 3000, 256, 0.1, 0.3
    io = ac.IOParameters(out_noise=on, out_noise_std=sd, out_bound=0.0, inp_res=-1.0,
                         noise_management="NONE")
    x = torch.zeros(n, 8)
    w = torch.zeros(1, cols, 8)

    def column_std(chip: int, seed: int) -> Tensor:
        return run(impl, x, w, io, [8], [128, 128], seed=seed, chip_seed=chip)[0].std(0)

    a, b, other = column_std(7, 1), column_std(7, 2), column_std(8, 1)
    # sampling error of one column's std: on / sqrt(2 n) = 1.3 % of on
    assert float(a.mean()) == pytest.approx(on * 0.9915, rel=0.05)  # E|1 + 0.3 xi| = 0.9915
    assert float(a.std()) == pytest.approx(on * sd, rel=0.2)  # 256 columns: 9 % error
    assert float((a - b).abs().max()) < 6 * on / math.sqrt(2 * n) * math.sqrt(2)
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.95
    assert abs(float(torch.corrcoef(torch.stack([a, other]))[0, 1])) < 0.3
    plain = ac.IOParameters(out_noise=on, out_bound=0.0, inp_res=-1.0, noise_management="NONE")
    p = run(impl, x, w, plain, [8], [128, 128], chip_seed=7)[0].std(0)
    assert float(p.std()) < 0.1 * on * sd  # without it, every column has out_noise


def test_out_noise_std_follows_the_layers_chip() -> None:
    """A layer's column noise is its chip's: the same between forwards and after a drift of
    the same chip, new when a new chip is programmed."""
    io = ac.IOParameters(out_noise=0.1, out_noise_std=0.5, out_bound=0.0, inp_res=-1.0,
                         noise_management="NONE")
    layer = ac.AnalogLinear(8, 256, bias=False,
                            rpu_config=ac.InferenceRPUConfig(forward=io)).eval()
    x = torch.zeros(2000, 8)  # the outputs are the output noise alone

    def pattern() -> Tensor:
        with torch.no_grad():
            return layer(x).std(0)

    def corr(a: Tensor, b: Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    torch.manual_seed(0)
    ac.program_analog_weights(layer)
    first = pattern()
    assert corr(first, pattern()) > 0.95
    ac.drift_analog_weights(layer, 3600.0)
    assert corr(first, pattern()) > 0.95
    ac.program_analog_weights(layer)
    assert abs(corr(first, pattern())) < 0.3
