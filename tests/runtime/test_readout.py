"""``analog::tile_readout``: the analog forward of the identity (drift compensation's readout)
equals ``tile_forward`` over the rows of the identity, without building it."""

from __future__ import annotations

import pytest
import torch
from analog_compiler.runtime import kernel_io, ops, reference

import analog_compiler as ac

CPP = ac.runtime.backend()["tile_readout"]["cpu"] == "cpp"
SETTINGS = {
    "default": {}, "noise_off": {"out_noise": 0.0}, "pcm": {"w_noise": 0.03,
                                                            "w_noise_type": "PCM_READ"},
    "additive": {"w_noise": 0.03, "w_noise_type": "ADDITIVE_CONSTANT"},
    "inp_noise": {"inp_noise": 0.02},  # the DAC'd vectors are dense: the GEMM path
    "clipping": {"out_bound": 0.05, "out_noise": 0.0},  # bound management on one-hot vectors
    "perfect": {"is_perfect": True},
}


def problem(groups: int, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(groups)
    w = torch.randn(groups, 13, 9, generator=g, dtype=dtype) * 0.2
    return w, torch.tensor(77), [7, 6]


def via_forward(w: torch.Tensor, seed: torch.Tensor, out_sizes, io) -> torch.Tensor:
    groups, _, in_g = w.shape
    eye = torch.eye(in_g, dtype=w.dtype).repeat(1, groups)
    return torch.ops.analog.tile_forward(eye, w, None, None, seed, [in_g], out_sizes, *io,
                                         False)[0]


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_equals_tile_forward_over_the_identity(setting: str, groups: int) -> None:
    w, seed, out_sizes = problem(groups)
    io = kernel_io(ac.IOParameters(**SETTINGS[setting]))
    y = ops.tile_readout(w, seed, out_sizes, io)
    assert y.shape == (9, groups * 13)
    assert torch.equal(y, via_forward(w, seed, out_sizes, io))  # same keys, same arithmetic
    assert torch.equal(reference.tile_readout(w, seed, out_sizes, *io),
                       via_forward(w, seed, out_sizes, io))


@pytest.mark.skipif(not CPP, reason="C++ kernels not active")
def test_cpp_matches_reference_noise_off() -> None:
    w, seed, out_sizes = problem(2, torch.float64)
    io = kernel_io(ac.IOParameters(out_noise=0.0))
    ref = reference.tile_forward(torch.eye(9, dtype=w.dtype).repeat(1, 2), w, None, None, seed,
                                 [9], out_sizes, *io, False)[0]
    torch.testing.assert_close(ops.tile_readout(w, seed, out_sizes, io), ref)


def test_opcheck() -> None:
    w, seed, out_sizes = problem(2)
    io = kernel_io(ac.IOParameters())
    torch.library.opcheck(torch.ops.analog.tile_readout.default, (w, seed, out_sizes, *io))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("setting", ["default", "pcm", "clipping"])
def test_column_slice_reads_out_as_its_copy(setting: str, groups: int, dtype) -> None:
    # drift_readout hands the kernel one input split as a view of the whole weight (row stride
    # in_g of the whole); the kernel reads it in place, with the result of the copy
    g = torch.Generator().manual_seed(groups)
    whole = torch.randn(groups, 13, 25, generator=g, dtype=dtype) * 0.2
    io = kernel_io(ac.IOParameters(**SETTINGS[setting]))
    for off, size in ((0, 9), (9, 9), (18, 7)):
        view = whole[:, :, off:off + size]
        assert not view.is_contiguous()
        y = ops.tile_readout(view, torch.tensor(5), [7, 6], io)
        assert y.dtype == dtype
        assert torch.equal(y, ops.tile_readout(view.contiguous(), torch.tensor(5), [7, 6], io))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_abs_mean_rows_in_chunks(dtype) -> None:
    from analog_compiler.runtime.chip_state import _abs_mean_rows

    y = torch.randn(37, 11, generator=torch.Generator().manual_seed(3)).to(dtype)
    want = y.double().abs().mean(0)
    got = _abs_mean_rows(y.clone(), chunk=8)
    assert got.dtype == dtype and got.shape == (11,)
    # half types: float sums, one rounding to the dtype; float32: 37 roundings at most
    eps = float(torch.finfo(dtype).eps)
    torch.testing.assert_close(got.double(), want, rtol=eps * (37 if dtype == torch.float32 else 1),
                               atol=0)
