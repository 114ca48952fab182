"""``analog::pcm_chip``: the weights a PCM chip holds, re-derived from (target weights, seed).

One call maps each tile's weights onto a ``G+``/``G-`` pair (one scale per tile,
``s = g_max / max|W_tile|``), applies the programming noise, draws the drift exponents, drifts to
``t_inference`` and (with ``read_noise``) adds 1/f read noise, returning ``(G+ - G-) / s``.
The per-device randoms of programming come from ``seed`` only, so every call with the same
(weights, seed) sees the same chip; the read noise comes from ``read_seed``.

The reference kernel below (``runtime.programming.ChipSample``, torch generators) defines the
statistics; the C++ library registers a fused CPU kernel (xoshiro128+ streams seeded by Philox
from the seed and the element's block of 256: the same statistics, not the same numbers, and
independent of the thread count and the tile layout).

``analog::device_chip`` serves every other model of the noise family (``HermesNoiseModel``,
``StateIndependentNoiseModel``, ``CustomDriftPCMLikeNoiseModel``, the ReRAM models) and any
conductance converter: the model and converter travel in the compact encoding of
``chip_codec`` (two kinds, two lists of floats). Its reference kernel below decodes them into a
model and runs ``runtime.programming.DeviceChipSample``; the C++ library registers a CPU kernel
(``csrc/device_chip.cpp``) that reads the encoding directly, with its own random streams (the
same block streams as ``pcm_chip``'s: the same statistics, not the same numbers; independent
of the thread count). ``ops.pcm_chip``
picks the op.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import chip_codec
from .config.noise import PCMLikeNoiseModel
from .programming import ChipSample, DeviceChipSample
from .tiling import TilePlan


def pcm_chip_reference(weight: Tensor, in_sizes: list[int], out_sizes: list[int], seed: Tensor,
                       t_inference: float, read_noise: bool, read_seed: Tensor, g_max: float,
                       prog_coeff: list[float], t_read: float, t_0: float,
                       prog_noise_scale: float, read_noise_scale: float,
                       drift_scale: float) -> Tensor:
    """Reference kernel of ``analog::pcm_chip`` (``ChipSample`` with seeded generators)."""
    model = PCMLikeNoiseModel(prog_coeff=tuple(prog_coeff), g_max=g_max, t_read=t_read, t_0=t_0,
                              prog_noise_scale=prog_noise_scale,
                              read_noise_scale=read_noise_scale, drift_scale=drift_scale)
    plan = TilePlan(weight.shape[0], tuple(in_sizes), tuple(out_sizes))
    chip = ChipSample(weight, plan, model, int(seed))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(read_seed))
    return chip.at(float(t_inference), gen, read_noise=read_noise)


def model_args(model: PCMLikeNoiseModel) -> dict:
    """The ``analog::pcm_chip`` keyword arguments that encode ``model``."""
    return dict(g_max=float(model.g_max), prog_coeff=[float(c) for c in model.prog_coeff],
                t_read=float(model.t_read), t_0=float(model.t_0),
                prog_noise_scale=float(model.prog_noise_scale),
                read_noise_scale=float(model.read_noise_scale),
                drift_scale=float(model.drift_scale))


def device_chip_reference(weight: Tensor, in_sizes: list[int], out_sizes: list[int],
                          seed: Tensor, t_inference: float, read_noise: bool, read_seed: Tensor,
                          model_kind: int, model_params: list[float], converter_kind: int,
                          converter_params: list[float]) -> Tensor:
    """Reference kernel of ``analog::device_chip`` (``DeviceChipSample`` of the model that
    ``chip_codec.decode`` rebuilds from the encoding)."""
    model = chip_codec.decode(int(model_kind), tuple(float(v) for v in model_params),
                              int(converter_kind), tuple(float(v) for v in converter_params))
    plan = TilePlan(weight.shape[0], tuple(in_sizes), tuple(out_sizes))
    chip = DeviceChipSample(weight, plan, model, int(seed))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(read_seed))
    return chip.at(float(t_inference), gen, read_noise=read_noise)
