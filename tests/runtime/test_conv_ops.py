"""``analog::tile_conv2d`` (receptive fields gathered inside the kernel) against its definition,
``analog::tile_forward`` over ``analog::im2col2d``'s rows, and the layer paths that use it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from analog_compiler.runtime import conv_ops, ops
from analog_compiler.runtime.periphery import NoiseManagement as NM
from analog_compiler.runtime.periphery import WeightNoise as WN
from analog_compiler.runtime.periphery import pack_fields
from torch import Tensor, nn

import analog_compiler as ac

CPP_ACTIVE = ac.runtime.backend()["tile_conv2d"]["cpu"] == "cpp"
needs_cpp = pytest.mark.skipif(not CPP_ACTIVE, reason="C++ kernels not active "
                               "(analog_compiler._C not built or ANALOG_COMPILER_NO_EXT=1)")

BASE_IO = dict(is_perfect=False, nm_type=NM.ABS_MAX, nm_thres=0.0, inp_bound=1.0,
               inp_step=2 / 126, inp_sto_round=False, inp_noise=0.0, out_bound=12.0,
               out_step=24 / 510, out_sto_round=False, out_noise=0.0,
               w_noise_type=WN.NONE, w_noise=0.0, bm_rounds=12)
# Periphery settings: the block (transposed) path and the per-vector path of the C++ driver.
SETTINGS = {
    "default": dict(out_noise=0.06),
    "pcm_read": dict(out_noise=0.06, w_noise_type=WN.PCM_READ, w_noise=0.03),
    "additive": dict(w_noise_type=WN.ADDITIVE_CONSTANT, w_noise=0.05),
    "avg_abs_max": dict(nm_type=NM.AVERAGE_ABS_MAX, out_noise=0.06),
    "constant_nm": dict(nm_type=NM.CONSTANT, nm_thres=2.0),
    "nm_cap": dict(nm_thres=0.5, out_noise=0.02),
    "no_nm_no_quant": dict(nm_type=NM.NONE, inp_step=0.0, out_step=0.0),
    "sto_round_inp_noise": dict(inp_sto_round=True, inp_noise=0.02, out_sto_round=True),
    "clipping": dict(out_bound=0.5, out_noise=0.06, bm_rounds=1),  # some stay clipped
    "ideal_with_scales": dict(is_perfect=True),
    # aihwkit's other managements, the IR drop, per-column output noise (block path too)
    "nm_max": dict(nm_type=NM.MAX, out_noise=0.06),
    "nm_np_sum_worst_case": dict(nm_type=NM.ABS_MAX_NP_SUM, out_bound=1.0, bm_type=2,
                                 bm_rounds=5, out_noise=0.02),
    "worst_case": dict(out_bound=1.0, bm_type=2, bm_rounds=5, out_noise=0.02),
    "shift": dict(out_bound=2.0, bm_type=3, bm_rounds=0, out_noise=0.02),
    "ir_drop": dict(ir_drop=1.0, ir_drop_g_ratio=50.0, out_noise=0.02),
    "out_noise_std": dict(out_noise=0.06, out_noise_std=0.3, chip_seed=99),
}
# (C_in, C_out, groups, kernel, dilation, stride, padding, H, W, in_sizes, out_sizes)
GEOMETRIES = [
    (4, 6, 1, (3, 3), (1, 1), (1, 1), (1, 1), 7, 7, [20, 16], [4, 2]),
    (6, 4, 2, (3, 2), (2, 1), (1, 2), (2, 3), 9, 8, [9, 9], [2]),
    (3, 5, 1, (1, 1), (1, 1), (2, 2), (0, 0), 6, 5, [3], [5]),
    (8, 8, 8, (3, 3), (1, 1), (1, 1), (0, 2), 6, 6, [9], [1]),  # depthwise
    (2, 3, 1, (5, 5), (1, 1), (3, 2), (4, 4), 4, 3, [25, 25], [3]),  # fields mostly padding
]


def problem(geom: tuple, scales: bool, seed: int = 0) -> tuple[list, list]:
    cin, cout, groups, kernel, dilation, stride, padding, h, w, in_sizes, out_sizes = geom
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, cin, h, w, generator=g) * 2
    x[0, :, :2] = 0  # all-zero receptive fields give an exact zero (plus bias)
    in_g = cin // groups * kernel[0] * kernel[1]
    weight = torch.randn(groups, cout // groups, in_g, generator=g) * 0.3
    sc = torch.rand(groups, len(in_sizes), cout // groups, generator=g) + 0.5 if scales else None
    bias = torch.randn(cout, generator=g)
    head = [x, weight, sc, bias, torch.tensor(seed + 5)]
    return head, [list(kernel), list(dilation), list(stride), list(padding), in_sizes,
                  out_sizes]


def io_values(**kw: Any) -> list:
    d = {**BASE_IO, **kw}
    return list(pack_fields(**d))  # [io_f, io_i]


def via_rows(head: list, geometry: list, io: list, need_mask: bool = False) -> Tensor:
    x, weight, sc, bias, seed = head
    kernel, dilation, stride, padding, in_sizes, out_sizes = geometry
    xp = F.pad(x, [padding[1], padding[1], padding[0], padding[0]])
    rows = torch.ops.analog.im2col2d(xp, kernel, dilation, stride)
    y, _ = torch.ops.analog.tile_forward(rows, weight, sc, bias, seed, in_sizes, out_sizes, *io,
                                         need_mask)
    ho, wo = conv_ops.out_hw(xp, kernel, dilation, stride)
    return y.view(x.shape[0], ho, wo, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: f"c{g[0]}o{g[1]}g{g[2]}k{g[3]}")
def test_equals_tile_forward_over_im2col_rows(geom: tuple, setting: str) -> None:
    """Same noise, same clipping, same values: only the float summation order of the GEMM
    may differ (the block path hands BLAS the transposed block)."""
    head, geometry = problem(geom, scales=setting in ("ideal_with_scales", "nm_cap"))
    io = io_values(**SETTINGS[setting])
    y = torch.ops.analog.tile_conv2d(*head, *geometry, *io)
    expected = via_rows(head, geometry, io)
    assert y.shape == expected.shape and y.is_contiguous()
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    # zero receptive fields with per-vector ABS_MAX scaling: exactly the bias (the vector's
    # alpha is 0, so no output noise either)
    if geom[3] == (1, 1) and SETTINGS[setting].get("nm_type", NM.ABS_MAX) == 1:
        torch.testing.assert_close(y[0, :, :1], head[3].view(-1, 1, 1).expand_as(y[0, :, :1]),
                                   rtol=0, atol=0)


@needs_cpp
@pytest.mark.parametrize("setting", ["default", "pcm_read", "clipping", "no_nm_no_quant",
                                     "nm_max", "worst_case", "nm_np_sum_worst_case", "shift",
                                     "ir_drop"])
def test_cpp_matches_reference_noise_off(setting: str) -> None:
    kw = {k: v for k, v in SETTINGS[setting].items() if k not in ("out_noise", "w_noise")}
    head, geometry = problem(GEOMETRIES[0], scales=True, seed=3)
    io = io_values(**kw)
    y = torch.ops.analog.tile_conv2d(*head, *geometry, *io)
    ref = conv_ops.tile_conv2d_reference(*head, *geometry, *io)
    # ADC rounding of a value within an ulp of a step may flip: allow one step on a few outputs
    close = torch.isclose(y, ref, rtol=1e-5, atol=1e-5)
    assert close.float().mean() > 0.995, (y - ref).abs().max()
    assert (y - ref).abs().max() <= 2 * 24 / 510 * 3 + 1e-4


@needs_cpp
def test_independent_of_thread_count_and_reproducible() -> None:
    head, geometry = problem(GEOMETRIES[0], scales=False)
    io = io_values(**SETTINGS["default"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.analog.tile_conv2d(*head, *geometry, *io)
        torch.set_num_threads(max(2, threads))
        many = torch.ops.analog.tile_conv2d(*head, *geometry, *io)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    head[4] = torch.tensor(99)
    assert not torch.equal(torch.ops.analog.tile_conv2d(*head, *geometry, *io), one)


def test_opcheck() -> None:
    head, geometry = problem(GEOMETRIES[1], scales=True)
    io = io_values(**SETTINGS["clipping"])
    for grad in (False, True):
        args = [t.clone().requires_grad_(grad) if isinstance(t, Tensor) and t.is_floating_point()
                else t for t in head]
        torch.library.opcheck(torch.ops.analog.tile_conv2d.default, (*args, *geometry, *io))


@pytest.mark.parametrize("setting", ["clipping", "pcm_read"])
def test_gradients_equal_the_rows_formulation(setting: str) -> None:
    """The backward recomputes the clip mask from the seed: its gradients equal those of
    tile_forward over the im2col rows, clipped outputs included."""
    head, geometry = problem(GEOMETRIES[0], scales=True)
    io = io_values(**SETTINGS[setting])
    grads = []
    for fn in (lambda h: torch.ops.analog.tile_conv2d(*h, *geometry, *io),
               lambda h: via_rows(h, geometry, io, need_mask=True)):
        h = [t.clone().requires_grad_(True) if i in (0, 1, 3) else t for i, t in enumerate(head)]
        out = fn(h)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([h[i].grad for i in (0, 1, 3)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if setting == "clipping":  # the mask matters: some outputs clipped even after BM
        x, weight, sc, bias, seed = head
        xp = F.pad(x, [geometry[3][1]] * 2 + [geometry[3][0]] * 2)
        rows = ops.im2col2d(xp, *geometry[:3])
        _, keep = torch.ops.analog.tile_forward(rows, weight, sc, bias, seed, *geometry[4:],
                                                *io, True)
        assert 0 < (~keep).sum() < keep.numel()


@pytest.mark.parametrize("ndim", [1, 2])
def test_layer_eval_uses_the_fused_op_and_equals_the_training_path(ndim: int) -> None:
    """Conv2d, and Conv1d as a height-1 Conv2d, gather their fields in the kernel."""
    torch.manual_seed(0)
    digital, analog = (nn.Conv1d, ac.AnalogConv1d) if ndim == 1 else (nn.Conv2d, ac.AnalogConv2d)
    conv = digital(6, 8, 3, padding=1, stride=2, groups=2, dilation=2 if ndim == 1 else 1)
    layer = analog.from_digital(conv, ac.InferenceRPUConfig()).eval()
    x = torch.randn(4, 6, 11, 9)[..., 0] if ndim == 1 else torch.randn(4, 6, 11, 9)
    calls: list[str] = []
    arr = layer.analog_module
    forward = arr.forward
    arr.forward = lambda rows: calls.append("rows") or forward(rows)  # type: ignore[method-assign]
    torch.manual_seed(1)
    with torch.no_grad():
        fused = layer(x)
    assert calls == []
    torch.manual_seed(1)
    rows_path = layer(x.requires_grad_(True))  # autograd: the rows path, same seed
    assert calls == ["rows"]
    torch.testing.assert_close(fused, rows_path.detach(), rtol=1e-5, atol=1e-5)
    assert fused.shape == conv(x).shape


def test_im2col_free_conv_compiles_fullgraph() -> None:
    torch.manual_seed(0)
    layer = ac.AnalogConv2d.from_digital(nn.Conv2d(3, 4, 3, padding=1),
                                         ac.InferenceRPUConfig()).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.manual_seed(2)
        eager = layer(x)
        torch.manual_seed(2)
        out = compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


def test_padding_modes_and_unbatched_input_through_the_fused_path() -> None:
    torch.manual_seed(0)
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(is_perfect=True))
    for mode in ("zeros", "reflect", "circular"):
        conv = nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode=mode)
        layer = ac.AnalogConv2d.from_digital(conv, rc).eval()
        x = torch.randn(3, 9, 9)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)
