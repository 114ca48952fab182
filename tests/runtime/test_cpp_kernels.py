"""The C++ CPU kernels of the ``analog`` ops against the reference kernels.

Noise off: equal up to float summation order (ADC rounding of values within an ulp of a step
may flip, so quantized cases allow a tiny fraction of flips). Noise on: the same statistics,
with tolerances from the sample size. The reference is called directly
(``runtime.reference``); the C++ kernels through the dispatcher, which prefers them on CPU.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from analog_compiler.runtime import _ext, im2col, ops, reference
from analog_compiler.runtime.periphery import pack_fields
from torch import Tensor

import analog_compiler as ac

CPP_ACTIVE = ac.runtime.backend()["tile_forward"]["cpu"] == "cpp"
pytestmark = pytest.mark.skipif(
    not CPP_ACTIVE, reason="C++ kernels not active (analog_compiler._C not built, failed to "
    f"load, or ANALOG_COMPILER_NO_EXT=1): {_ext.load_error()}")

NM_NONE, NM_ABS_MAX, NM_CONSTANT, NM_AVG = 0, 1, 2, 3
WN_NONE, WN_ADD, WN_PCM = 0, 1, 2


def fields(**kw: Any) -> dict[str, Any]:
    """Periphery fields: the default InferenceRPUConfig with the noise off, updated by kw."""
    d = dict(is_perfect=False, nm_type=NM_ABS_MAX, nm_thres=0.0, inp_bound=1.0, inp_step=2 / 126,
             inp_sto_round=False, inp_noise=0.0, out_bound=12.0, out_step=24 / 510,
             out_sto_round=False, out_noise=0.0, w_noise_type=WN_NONE, w_noise=0.0,
             bm_rounds=12)
    d.update(kw)
    return d


def io(need_mask: bool = True, **kw: Any) -> dict[str, Any]:
    """Keyword arguments of the forward op: the packed ``fields(**kw)`` and ``need_mask``."""
    return dict(pack_fields(**fields(**kw))._asdict(), need_mask=need_mask)


def problem(n: int = 48, in_sizes=(150, 150), out_sizes=(70, 60), groups: int = 1,
            scales: bool = False, bias: bool = False, wscale: float = 0.1, seed: int = 0,
            dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    in_g, out_g = sum(in_sizes), sum(out_sizes)
    x = torch.randn(n, groups * in_g, generator=g, dtype=dtype)
    w = torch.randn(groups, out_g, in_g, generator=g, dtype=dtype) * wscale
    sc = (torch.rand(groups, len(in_sizes), out_g, generator=g, dtype=dtype) + 0.5
          if scales else None)
    b = torch.randn(groups * out_g, generator=g, dtype=dtype) if bias else None
    return dict(x=x, weight=w, out_scales=sc, bias=b, seed=torch.tensor(seed + 11),
                in_sizes=list(in_sizes), out_sizes=list(out_sizes))


def run_cpp(p: dict, **kw: Any) -> tuple[Tensor, Tensor]:
    return torch.ops.analog.tile_forward(*p.values(), **io(**kw))


def run_ref(p: dict, **kw: Any) -> tuple[Tensor, Tensor]:
    return reference.tile_forward(*p.values(), **io(**kw))


def assert_match(p: dict, flips: float = 0.0, **kw: Any) -> None:
    """C++ == reference to 1e-5 relative; ``flips``: fraction of vectors allowed to differ (an
    ADC rounding of a value that sits on a step boundary, decided by summation order)."""
    yc, mc = run_cpp(p, **kw)
    yr, mr = run_ref(p, **kw)
    assert yc.shape == yr.shape and yc.dtype == yr.dtype and mc.shape == mr.shape
    scale = yr.abs().max().clamp_min(1e-12)
    close = (yc - yr).abs() <= 1e-5 * scale + 1e-5 * yr.abs()
    bad_rows = (~close).any(1).float().mean().item()
    assert bad_rows <= flips, f"{bad_rows:.4f} of the vectors differ, max err " \
        f"{(yc - yr).abs().max().item():.3g}"
    if mc.numel():
        assert (mc != mr).float().mean().item() <= flips


CONFIGS = {
    "default": dict(),
    "no_adc": dict(out_step=0.0),
    "no_dac_no_adc": dict(inp_step=0.0, out_step=0.0),
    "nm_none": dict(nm_type=NM_NONE, inp_bound=4.0),
    "nm_constant": dict(nm_type=NM_CONSTANT, nm_thres=2.0),
    "nm_constant_zero": dict(nm_type=NM_CONSTANT, nm_thres=0.0),
    "nm_thres": dict(nm_thres=1.5),
    "bm_clipping": dict(out_bound=1.5, out_step=3 / 510),
    "bm_clipping_no_adc": dict(out_bound=1.5, out_step=0.0),
    "bm_off_clipping": dict(out_bound=1.5, bm_rounds=0),
    "bm_one_round": dict(out_bound=0.8, out_step=0.0, bm_rounds=1),
    "no_out_bound": dict(out_bound=0.0, out_step=0.01),
    "negative_out_bound": dict(out_bound=-1.0, out_step=0.0),
    "no_mask": dict(need_mask=False, out_bound=1.5),
    "perfect_scaled": dict(is_perfect=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("layout", ["split", "uneven", "groups", "scales_bias"])
def test_noise_free_matches_reference(name: str, layout: str) -> None:
    kw = CONFIGS[name]
    p = {"split": lambda: problem(),
         "uneven": lambda: problem(in_sizes=(120, 119, 119), out_sizes=(33, 32, 32), seed=1),
         "groups": lambda: problem(groups=3, in_sizes=(40, 39), out_sizes=(20,), seed=2),
         "scales_bias": lambda: problem(scales=True, bias=True, seed=3)}[layout]()
    if name == "perfect_scaled" and p["out_scales"] is None:
        p["out_scales"] = torch.full((p["weight"].shape[0], len(p["in_sizes"]),
                                      p["weight"].shape[1]), 0.75)
    quantized = fields(**kw)["out_step"] > 0 and not fields(**kw)["is_perfect"]
    assert_match(p, flips=0.03 if quantized else 0.0, **kw)


def test_bm_clipping_is_exercised() -> None:
    p = problem(wscale=0.3)
    _, mask = run_ref(p, **CONFIGS["bm_clipping_no_adc"], bm_rounds=0)
    assert (~mask).any(), "the clipping case must clip before bound management"
    assert_match(p, **CONFIGS["bm_clipping_no_adc"])
    assert_match(p, **CONFIGS["bm_clipping_no_adc"], bm_rounds=2)


def test_average_abs_max_and_zero_vectors() -> None:
    p = problem(in_sizes=(64, 64), out_sizes=(50,))
    x = p["x"].clamp(-2, 2)
    x[:, 5], x[:, 70] = 2.5, -2.5  # every vector's max|x| per split is 2.5: an exact mean
    x[3] = 0.0
    p["x"] = x
    assert_match(p, flips=0.03, nm_type=NM_AVG)
    p2 = problem(seed=4)
    p2["x"][7] = 0.0
    yc, _ = run_cpp(p2, out_noise=0.1)
    assert torch.equal(yc[7], torch.zeros_like(yc[7]))
    assert_match(p2, flips=0.03)
    assert_match(p2, flips=0.03, need_mask=False)  # zero vectors skip the GEMM
    assert_match(p2, flips=0.03, need_mask=False, bm_rounds=0, out_bound=1.0)


def test_fast_path_and_perfect() -> None:
    for groups in (1, 2):
        p = problem(groups=groups, bias=True)
        yc, mc = run_cpp(p, is_perfect=True)
        yr, mr = run_ref(p, is_perfect=True)
        torch.testing.assert_close(yc, yr, rtol=1e-5, atol=1e-5)
        assert torch.equal(mc, mr)
    p = problem(bias=True)
    lin = torch.nn.functional.linear(p["x"], p["weight"][0], p["bias"])
    torch.testing.assert_close(run_cpp(p, is_perfect=True, need_mask=False)[0], lin)


def test_float64_and_bfloat16() -> None:
    p = problem(dtype=torch.float64)
    assert_match(p, flips=0.03)
    yc, _ = run_cpp(p)
    assert yc.dtype == torch.float64
    p16 = problem(dtype=torch.bfloat16)
    yc, _ = run_cpp(p16, out_step=0.0)
    p32 = {k: (v.float() if isinstance(v, Tensor) and v.is_floating_point() else v)
           for k, v in p16.items()}
    assert yc.dtype == torch.bfloat16
    torch.testing.assert_close(yc.float(), run_ref(p32, out_step=0.0)[0], rtol=2e-2, atol=2e-2)


def test_empty_batch() -> None:
    p = problem(n=0)
    yc, mc = run_cpp(p)
    assert yc.shape == (0, 130) and mc.shape == (1, 2, 0, 130)


# ---------------------------------------------------------------- noise statistics
def standardized_residuals(run, p: dict, sd: Tensor, reps: int, **kw: Any) -> Tensor:
    """(noisy - noise-free) / expected std over ``reps`` seeds."""
    clean = run(p, **{**kw, "out_noise": 0.0, "w_noise": 0.0, "inp_noise": 0.0,
                      "out_sto_round": False, "inp_sto_round": False})[0]
    zs = []
    for r in range(reps):
        q = dict(p, seed=torch.tensor(1000 + r))
        zs.append((run(q, **kw)[0] - clean) / sd)
    return torch.stack(zs).flatten().double()


def check_standard_normal(z: Tensor) -> None:
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n), z.mean().item()
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n), z.var().item()


NOISE_CASES = {
    "out_noise": dict(out_noise=0.1),
    "additive": dict(out_noise=0.05, w_noise_type=WN_ADD, w_noise=0.03),
    "pcm_read": dict(out_noise=0.05, w_noise_type=WN_PCM, w_noise=0.2),
    "inp_noise": dict(inp_noise=0.05),
}


@pytest.mark.parametrize("case", sorted(NOISE_CASES))
@pytest.mark.parametrize("impl", ["cpp", "reference"])
def test_noise_statistics(case: str, impl: str) -> None:
    """Both implementations draw noise with the std the physics prescribes (one tile, no
    quantization, no clipping, so the expected std per output is known in closed form)."""
    kw = dict(NOISE_CASES[case], inp_step=0.0, out_step=0.0, bm_rounds=0, out_bound=0.0,
              need_mask=False)
    p = problem(n=64, in_sizes=(100,), out_sizes=(80,))
    x, w = p["x"], p["weight"][0]
    alpha = x.abs().amax(1, keepdim=True)
    xs = x / alpha
    var = torch.full((64, 80), kw.get("out_noise", 0.0) ** 2)
    if case == "additive":
        var = var + kw["w_noise"] ** 2 * (xs * xs).sum(1, keepdim=True)
    elif case == "pcm_read":
        var = var + kw["w_noise"] ** 2 * (xs * xs) @ w.abs().t()
    elif case == "inp_noise":
        var = var + kw["inp_noise"] ** 2 * (w * w).sum(1).unsqueeze(0)
    sd = alpha * var.sqrt()
    run = run_cpp if impl == "cpp" else run_ref
    check_standard_normal(standardized_residuals(run, p, sd, reps=6, **kw))


@pytest.mark.parametrize("field", ["out_sto_round", "inp_sto_round"])
def test_stochastic_rounding_statistics(field: str) -> None:
    """Unbiased, with the same spread as the reference's."""
    kw = {field: True, "need_mask": False, "bm_rounds": 0}
    kw["out_step" if field == "out_sto_round" else "inp_step"] = 0.5 if field == \
        "out_sto_round" else 0.25
    p = problem(n=64)
    stats = []
    for run in (run_cpp, run_ref):
        r = standardized_residuals(run, p, torch.ones(()), reps=6, **kw)
        n = r.numel()
        assert abs(r.mean().item()) < 5 * r.std().item() / math.sqrt(n)
        stats.append(r.var().item())
    assert abs(stats[0] / stats[1] - 1) < 0.1


def test_bound_management_with_noise_statistics() -> None:
    """With noise and clipping, C++ and reference clip as often, and their mean outputs differ
    by no more than two C++ means over different seeds do (same distribution)."""
    p = problem(n=64, wscale=0.25)
    kw = dict(out_noise=0.06, out_bound=1.5)

    def mean_run(run, seeds) -> tuple[Tensor, float]:
        outs = [run(dict(p, seed=torch.tensor(s)), **kw) for s in seeds]
        return (torch.stack([y for y, _ in outs]).mean(0),
                sum(m.float().mean().item() for _, m in outs) / len(outs))

    (yc, kc), (yc2, _), (yr, kr) = (mean_run(run_cpp, range(8)),
                                    mean_run(run_cpp, range(100, 108)),
                                    mean_run(run_ref, range(8)))
    assert run_ref(p, **kw, bm_rounds=0)[1].float().mean() < 0.95, "the case must clip"
    assert abs(kc - kr) < 0.01
    rms_cr = (yc - yr).square().mean().sqrt().item()
    rms_cc = (yc - yc2).square().mean().sqrt().item()
    assert 0.85 < rms_cr / rms_cc < 1.15, (rms_cr, rms_cc)


# ---------------------------------------------------------------- reproducibility
def test_reproducible_per_seed_and_thread_count() -> None:
    p = problem(n=96, scales=True, bias=True)
    kw = dict(out_noise=0.06, w_noise_type=WN_PCM, w_noise=0.02, inp_noise=0.01, out_bound=2.0,
              out_sto_round=True)
    y1, m1 = run_cpp(p, **kw)
    y2, m2 = run_cpp(p, **kw)
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    y3, _ = run_cpp(dict(p, seed=torch.tensor(99)), **kw)
    assert not torch.equal(y1, y3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y4, m4 = run_cpp(p, **kw)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(y1, y4) and torch.equal(m1, m4)


def test_layer_reproducible_under_manual_seed() -> None:
    layer = ac.AnalogLinear(64, 32, rpu_config=ac.InferenceRPUConfig()).eval()
    x = torch.randn(8, 64)
    torch.manual_seed(5)
    a = layer(x)
    torch.manual_seed(5)
    assert torch.equal(a, layer(x))


# ---------------------------------------------------------------- backward
@pytest.mark.parametrize("with_scales", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_backward_matches_reference(with_scales: bool, with_mask: bool) -> None:
    p = problem(groups=2, in_sizes=(30, 29, 29), out_sizes=(25, 24), scales=with_scales)
    x, w = p["x"], p["weight"]
    n, (groups, out_g, _) = x.shape[0], w.shape
    gy = torch.randn(n, groups * out_g)
    mask = torch.rand(groups, 3, n, out_g) > 0.2 if with_mask else None
    args = (gy, x, w, p["out_scales"], mask, p["in_sizes"], p["out_sizes"])
    for need in ((True, True), (True, False), (False, True)):
        gc = torch.ops.analog.tile_backward(*args, *need)
        gr = reference.tile_backward(*args, *need)
        for a, b in zip(gc, gr):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gradients_through_layer_match_reference() -> None:
    p = problem(scales=True, bias=True)
    x = p["x"].clone().requires_grad_()
    w = p["weight"].clone().requires_grad_()
    kw = io(out_bound=1.5, out_step=0.0)
    y, _ = torch.ops.analog.tile_forward(x, w, p["out_scales"], p["bias"], p["seed"],
                                         p["in_sizes"], p["out_sizes"], **kw)
    y.square().sum().backward()
    yr, mask = reference.tile_forward(x.detach(), w.detach(), p["out_scales"], p["bias"],
                                      p["seed"], p["in_sizes"], p["out_sizes"], **kw)
    gx, gw = reference.tile_backward(2 * yr, x.detach(), w.detach(), p["out_scales"], mask,
                                     p["in_sizes"], p["out_sizes"], True, True)
    torch.testing.assert_close(x.grad, gx, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w.grad, gw, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- torch.library / compile
@pytest.mark.parametrize("kw", [dict(), dict(out_noise=0.06, w_noise_type=WN_PCM, w_noise=0.02,
                                             out_bound=1.5), dict(is_perfect=True)])
def test_opcheck_tile_forward(kw: dict) -> None:
    p = problem(n=16, in_sizes=(20, 19), out_sizes=(12, 11), scales=True, bias=True)
    p["x"].requires_grad_()
    p["weight"].requires_grad_()
    torch.library.opcheck(torch.ops.analog.tile_forward.default, tuple(p.values()), io(**kw))


def test_opcheck_tile_backward() -> None:
    p = problem(n=16, in_sizes=(20, 19), out_sizes=(12, 11), groups=2, scales=True)
    mask = torch.rand(2, 2, 16, 23) > 0.3
    gy = torch.randn(16, 46)
    torch.library.opcheck(torch.ops.analog.tile_backward.default,
                          (gy, p["x"], p["weight"], p["out_scales"], mask, p["in_sizes"],
                           p["out_sizes"], True, True))


def test_compiled_layer_runs_the_cpp_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile(fullgraph=True) of an AnalogLinear gives the C++ kernel's output (its
    random numbers differ from the reference's for the same seed)."""
    from analog_compiler.runtime import tile_array

    monkeypatch.setattr(tile_array, "new_seed", lambda: torch.tensor(1234))
    layer = ac.AnalogLinear(96, 40, rpu_config=ac.InferenceRPUConfig()).eval()
    x = torch.randn(16, 96)
    with torch.no_grad():
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")(x)
        eager = layer(x)
        arr = layer.analog_module
        args = (x, arr.forward_weight(), arr.output_scales(), arr.bias, torch.tensor(1234),
                list(arr.plan.in_sizes), list(arr.plan.out_sizes))
        cpp = torch.ops.analog.tile_forward(*args, **arr.kernel_io._asdict(), need_mask=False)[0]
        ref = reference.tile_forward(*args, **arr.kernel_io._asdict(), need_mask=False)[0]
    assert torch.equal(compiled, cpp) and torch.equal(eager, cpp)
    assert not torch.equal(cpp, ref)


# ---------------------------------------------------------------- im2col2d
IM2COL_CASES = [((2, 5, 9, 8), (3, 3), (1, 1), (1, 1)), ((1, 3, 11, 12), (3, 2), (2, 1), (2, 3)),
                ((3, 4, 6, 6), (1, 1), (1, 1), (1, 1)), ((2, 2, 7, 9), (2, 3), (1, 2), (3, 1))]


@pytest.mark.parametrize("shape, kernel, dilation, stride", IM2COL_CASES)
def test_im2col2d_matches_reference(shape, kernel, dilation, stride) -> None:

    x = torch.randn(shape)
    args = (x, list(kernel), list(dilation), list(stride))
    assert torch.equal(torch.ops.analog.im2col2d(*args), im2col.im2col2d_reference(*args))
    xd = x.double().requires_grad_()
    torch.library.opcheck(torch.ops.analog.im2col2d.default, (xd, *args[1:]))
    torch.autograd.gradcheck(lambda t: ops.im2col2d(t, *args[1:]), (xd,))


def test_analog_conv2d_rows_unchanged() -> None:
    """AnalogConv2d through the C++ im2col equals the unfold formulation."""

    rc = ac.InferenceRPUConfig()
    rc.forward.is_perfect = True
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, stride=2, dilation=1)
    layer = ac.AnalogConv2d.from_digital(conv, rc).eval()
    x = torch.randn(2, 4, 9, 9)
    rows = im2col.im2col2d_reference(torch.nn.functional.pad(x, (1, 1, 1, 1)), [3, 3], [1, 1],
                                     [2, 2])
    arr = layer.analog_module
    ref = reference.tile_forward(rows, arr.weight, None, arr.bias, torch.tensor(0),
                                 list(arr.plan.in_sizes), list(arr.plan.out_sizes),
                                 **arr.kernel_io._asdict(), need_mask=False)[0]
    with torch.no_grad():
        y = layer(x)
    torch.testing.assert_close(y, ref.view(2, 5, 5, 6).permute(0, 3, 1, 2))
    torch.testing.assert_close(y, conv(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- sparse (one-hot) vectors
def sparse_rows(in_g: int) -> Tensor:
    """Rows with one nonzero (first/last column, chunk edges), two (same or different 16-wide
    chunk, far apart), none, and dense rows in between."""
    patterns = [[0], [15], [16], [in_g - 1], [3, 4], [0, 15], [0, 16], [5, 60], [in_g - 1, 0],
                [], [33]]
    x = torch.zeros(len(patterns) + 2, in_g)
    for r, cols in enumerate(patterns):
        for c in cols:
            x[r, c] = 0.5 + 0.1 * c
    x[-2:] = torch.randn(2, in_g, generator=torch.Generator().manual_seed(1))
    return x


def test_one_hot_and_sparse_vectors_match_reference() -> None:
    """Vectors with a single nonzero (identity readouts) take the weight-column path of the C++
    kernel, vectors with two or more the GEMM; both equal the reference."""
    p = problem(n=13, in_sizes=(40, 30), out_sizes=(9, 8), scales=True, bias=True)
    p["x"] = sparse_rows(70)
    y, keep = run_cpp(p)
    y_ref, keep_ref = run_ref(p)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(keep, keep_ref)


def test_one_hot_vectors_get_pcm_read_noise_of_their_column() -> None:
    """PCM read noise on the weight-column path: std w_noise * |x_k| * sqrt(|W[:, k]|) per
    output (one tile, no quantization or clipping, so the std is known in closed form)."""
    p = problem(n=70, in_sizes=(70,), out_sizes=(50,), wscale=0.5)
    p["x"] = torch.eye(70) * 0.8
    kw = dict(out_noise=0.0, w_noise_type=WN_PCM, w_noise=0.2, inp_step=0.0, out_step=0.0,
              bm_rounds=0, out_bound=0.0, need_mask=False)
    sd = 0.8 * 0.2 * p["weight"][0].abs().t().sqrt()  # alpha (0.8) * w_noise * sqrt(|w| * 1^2)
    check_standard_normal(standardized_residuals(run_cpp, p, sd, reps=4, **kw))
