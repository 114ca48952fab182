"""bfloat16 / float16 through the C++ kernels (``csrc/widen.h``): half-precision inputs and
weights are widened to float where the kernels load them, so every output must equal the float
kernel run on the same values widened, rounded once at the end (bit for bit); against the
reference kernel (float32, from the same half-precision values) within one ADC step of each
split plus the output's own rounding. The chip kernel reads and writes half-precision chips.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from analog_compiler.runtime import _ext, reference
from analog_compiler.runtime.periphery import pack_fields
from analog_compiler.runtime.tile_array import new_seed
from torch import Tensor

import analog_compiler as ac

pytestmark = pytest.mark.skipif(
    ac.runtime.backend()["tile_forward"]["cpu"] != "cpp",
    reason=f"C++ kernels not active: {_ext.load_error()}")

HALF = (torch.bfloat16, torch.float16)
OUT_STEP = 24 / 510
SETTINGS = {
    "noise_free": dict(out_noise=0.0),
    "default": dict(),
    "bm_clip": dict(out_bound=1.5, out_step=3 / 510),
    "pcm_noise": dict(w_noise_type=2, w_noise=0.05),
    "additive_noise": dict(w_noise_type=1, w_noise=0.05),
    "stochastic": dict(inp_sto_round=True, out_sto_round=True, inp_noise=0.02),
    "nm_average": dict(nm_type=3),
}


def io(**kw: Any) -> tuple[list[float], list[int]]:
    """The packed periphery: the default InferenceRPUConfig's forward, updated by kw."""
    d = dict(is_perfect=False, nm_type=1, nm_thres=0.0, inp_bound=1.0, inp_step=2 / 126,
             inp_sto_round=False, inp_noise=0.0, out_bound=12.0, out_step=OUT_STEP,
             out_sto_round=False, out_noise=0.06, w_noise_type=0, w_noise=0.0, bm_rounds=12)
    d.update(kw)
    return pack_fields(**d)


def problem(dtype: torch.dtype, groups: int = 1, n: int = 40) -> list:
    """tile_forward's leading arguments: two input splits, two output splits, scales, bias."""
    g = torch.Generator().manual_seed(4)
    ins, outs = (70, 61), (33, 30)
    x = torch.randn(n, groups * sum(ins), generator=g)
    x[3] = 0  # a zero vector
    w = torch.randn(groups, sum(outs), sum(ins), generator=g) * 0.1
    sc = torch.rand(groups, len(ins), sum(outs), generator=g) + 0.5
    b = torch.randn(groups * sum(outs), generator=g)
    return [x.to(dtype), w.to(dtype), sc.to(dtype), b.to(dtype), torch.tensor(21), list(ins),
            list(outs)]


def widened(args: list) -> list:
    return [a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("groups", [1, 2])
def test_forward_equals_the_float_kernel_on_the_widened_values(dtype, setting, groups) -> None:
    args = problem(dtype, groups)
    y, mask = torch.ops.analog.tile_forward(*args, *io(**SETTINGS[setting]), True)
    y32, mask32 = torch.ops.analog.tile_forward(*widened(args), *io(**SETTINGS[setting]), True)
    assert y.dtype == dtype
    assert torch.equal(y, y32.to(dtype)) and torch.equal(mask, mask32)


@pytest.mark.parametrize("dtype", HALF)
def test_forward_matches_the_float32_reference(dtype) -> None:
    """Noise off: each element within one ADC step per input split (a value on a step boundary
    may round either way, by summation order) plus the rounding of the result to ``dtype``."""
    args = problem(dtype, groups=2)
    y, _ = torch.ops.analog.tile_forward(*args, *io(out_noise=0.0), False)
    ref, _ = reference.tile_forward(*widened(args), *io(out_noise=0.0), False)
    x = args[0].float().view(args[0].shape[0], 2, -1)
    alpha = x.abs().amax(2).repeat_interleave(63, 1)  # per vector and group (bounds each split)
    step = 2 * OUT_STEP * alpha * args[2].float().amax()  # two input splits
    ulp = ref.abs() * torch.finfo(dtype).eps  # one rounding of the output (half an ulp, x2)
    err = (y.float() - ref).abs()
    assert (err <= step + ulp + 1e-6).all(), (err - step - ulp).max()
    # and most elements agree to the output's rounding alone
    assert (err <= ulp + 1e-6).float().mean() > 0.95


@pytest.mark.parametrize("dtype", HALF)
def test_conv2d_and_readout_equal_the_float_kernel(dtype) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 9, 8, generator=g)
    w = torch.randn(2, 2, 27, generator=g) * 0.3
    sc = torch.rand(2, 2, 2, generator=g) + 0.5
    b = torch.randn(4, generator=g)
    head = [x, w, sc, b, torch.tensor(9), [3, 3], [1, 1], [1, 2], [1, 1], [14, 13], [1, 1]]
    half = [t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t for t in head]
    for kw in (dict(), dict(w_noise_type=2, w_noise=0.05)):
        y = torch.ops.analog.tile_conv2d(*half, *io(**kw))
        y32 = torch.ops.analog.tile_conv2d(*widened(half), *io(**kw))
        assert y.dtype == dtype and torch.equal(y, y32.to(dtype))
        wt = half[1][:, :, :14].contiguous()
        r = torch.ops.analog.tile_readout(wt, torch.tensor(3), [1, 1], *io(**kw))
        r32 = torch.ops.analog.tile_readout(wt.float(), torch.tensor(3), [1, 1], *io(**kw))
        assert r.dtype == dtype and torch.equal(r, r32.to(dtype))


@pytest.mark.parametrize("dtype", HALF)
def test_pcm_chip_reads_and_writes_half_precision(dtype) -> None:
    w = (torch.randn(2, 50, 70, generator=torch.Generator().manual_seed(6)) * 0.1).to(dtype)
    args = ([40, 30], [25, 25], torch.tensor(7), 3600.0, True, torch.tensor(8), 25.0,
            [0.26348, 1.9650, -1.1731], 250e-9, 20.0, 1.0, 1.0, 1.0)
    chip = torch.ops.analog.pcm_chip(w, *args)
    chip32 = torch.ops.analog.pcm_chip(w.float(), *args)
    assert chip.dtype == dtype and torch.equal(chip, chip32.to(dtype))


@pytest.mark.parametrize("kw", [dict(), dict(w_noise_type=2, w_noise=0.05, out_bound=1.5)])
def test_opcheck_bfloat16(kw: dict) -> None:
    args = problem(torch.bfloat16, groups=2, n=12)
    torch.library.opcheck(torch.ops.analog.tile_forward.default, (*args, *io(**kw), False))
    torch.library.opcheck(torch.ops.analog.tile_readout.default,
                          (args[1][:, :, :70].contiguous(), torch.tensor(3), [33, 30], *io(**kw)))


def test_bfloat16_layer_programs_drifts_and_runs_in_bfloat16() -> None:
    """A bfloat16 layer keeps its chip in bfloat16 and its forward equals the float32 layer's
    on the same weights and chip (rounded once)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40).to(torch.bfloat16)
    layer = ac.convert(torch.nn.Sequential(lin), ac.InferenceRPUConfig()).eval()
    ac.program_analog_weights(layer)
    ac.drift_analog_weights(layer, 3600.0)
    tile = next(m for m in layer.modules() if hasattr(m, "chip_weight"))
    assert tile.chip_weight.dtype == torch.bfloat16
    x = torch.randn(8, 96).to(torch.bfloat16)
    torch.manual_seed(1)
    y = layer(x)
    torch.manual_seed(1)
    seed = new_seed()
    scales = tile.output_scales()
    y32, _ = torch.ops.analog.tile_forward(
        x.float(), tile.chip_weight.float(), None if scales is None else scales.float(),
        tile.bias.float(), seed, list(tile.plan.in_sizes), list(tile.plan.out_sizes),
        *tile.kernel_io, False)
    assert y.dtype == torch.bfloat16 and torch.equal(y, y32.to(torch.bfloat16))
