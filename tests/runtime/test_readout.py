"""``analog::tile_readout``: the analog forward of the identity (drift compensation's readout)
equals ``tile_forward`` over the rows of the identity, without building it; and
``analog::tile_readout_mean`` is its mean |y| per output, without the readout."""

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


# (out_g, in_g, out_sizes): a small tile pair, and one whose one-hot runs cover the kernel's
# 16- and 8-column transposes, their remainders, rows beyond a multiple of 8 and several
# blocks of vectors
SHAPES = {"small": (13, 9, [7, 6]), "wide": (70, 45, [35, 35])}


def problem(groups: int, dtype: torch.dtype = torch.float32, shape: str = "small"):
    out_g, in_g, out_sizes = SHAPES[shape]
    g = torch.Generator().manual_seed(groups)
    w = torch.randn(groups, out_g, in_g, generator=g, dtype=dtype) * 0.2
    return w, torch.tensor(77), out_sizes


def via_forward(w: torch.Tensor, seed: torch.Tensor, out_sizes, io) -> torch.Tensor:
    groups, _, in_g = w.shape
    eye = torch.eye(in_g, dtype=w.dtype).repeat(1, groups)
    return torch.ops.analog.tile_forward(eye, w, None, None, seed, [in_g], out_sizes, *io,
                                         False)[0]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_equals_tile_forward_over_the_identity(setting: str, groups: int, shape: str) -> None:
    w, seed, out_sizes = problem(groups, shape=shape)
    io = kernel_io(ac.IOParameters(**SETTINGS[setting]))
    y = ops.tile_readout(w, seed, out_sizes, io)
    assert y.shape == (w.shape[2], groups * w.shape[1])
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


def mean_of_readout(w: torch.Tensor, seed: torch.Tensor, out_sizes, io) -> torch.Tensor:
    """The oracle: mean |y| of the readout (y in the weight's dtype) per output, in float64."""
    return ops.tile_readout(w, seed, out_sizes, io).double().abs().mean(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_mean_is_the_mean_abs_of_the_readout(setting: str, groups: int, shape: str,
                                            dtype: torch.dtype) -> None:
    w, seed, out_sizes = problem(groups, dtype, shape)
    io = kernel_io(ac.IOParameters(**SETTINGS[setting]))
    m = ops.tile_readout_mean(w, seed, out_sizes, io)
    assert m.dtype == dtype and m.shape == (groups * w.shape[1],)
    want = mean_of_readout(w, seed, out_sizes, io)
    # the same |y| summed in another order in float64: one rounding to the dtype apart at most
    # (float64 itself: the order's in_g roundings)
    eps = float(torch.finfo(dtype).eps) * (w.shape[2] if dtype == torch.float64 else 1)
    torch.testing.assert_close(m.double(), want, rtol=eps, atol=0)
    ref = reference.tile_readout_mean(w, seed, out_sizes, *io)
    torch.testing.assert_close(ref.double(), want, rtol=eps, atol=0)


@pytest.mark.skipif(not CPP, reason="C++ kernels not active")
def test_mean_is_independent_of_the_thread_count_and_of_slicing() -> None:
    g = torch.Generator().manual_seed(4)
    whole = torch.randn(2, 300, 700, generator=g) * 0.2
    io = kernel_io(ac.IOParameters())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [ops.tile_readout_mean(whole[:, :, off:off + 350], torch.tensor(3), [150, 150], io)
               for off in (0, 350)]
        torch.set_num_threads(2)
        two = [ops.tile_readout_mean(whole[:, :, off:off + 350].contiguous(), torch.tensor(3),
                                     [150, 150], io) for off in (0, 350)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    assert not torch.equal(one[0], one[1])  # each split reads its own columns


def test_mean_opcheck() -> None:
    w, seed, out_sizes = problem(2)
    io = kernel_io(ac.IOParameters())
    torch.library.opcheck(torch.ops.analog.tile_readout_mean.default, (w, seed, out_sizes, *io))
