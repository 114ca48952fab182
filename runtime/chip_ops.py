"""``analog::pcm_chip``: the weights a PCM chip holds, re-derived from (target weights, seed).

One call maps each tile's weights onto a ``G+``/``G-`` pair (one scale per tile,
``s = g_max / max|W_tile|``), applies the programming noise, draws the drift exponents, drifts to
``t_inference`` and (with ``read_noise``) adds 1/f read noise, returning ``(G+ - G-) / s``.
The per-device randoms of programming come from ``seed`` only, so every call with the same
(weights, seed) sees the same chip; the read noise comes from ``read_seed``.

The reference kernel below (``runtime.programming.ChipSample``, torch generators) defines the
statistics; the C++ library registers a fused CPU kernel (Philox streams keyed by the seed and
the element index: the same statistics, not the same numbers, and independent of the thread
count).

``analog::device_chip`` serves every other model of the noise family (``HermesNoiseModel``,
``StateIndependentNoiseModel``, ``CustomDriftPCMLikeNoiseModel``, the ReRAM models) and any
conductance converter: the model travels as its JSON, its reference kernel is
``runtime.programming.DeviceChipSample`` (no compiled kernel yet). ``pcm_chip`` picks the op.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .config.noise import PCMLikeNoiseModel
from .config.noise_base import NoiseModel
from .programming import ChipSample, DeviceChipSample
from .tiling import TilePlan

_lib = torch.library.Library("analog", "FRAGMENT")
PCM_CHIP_SCHEMA = (
    "pcm_chip(Tensor weight, int[] in_sizes, int[] out_sizes, Tensor seed, float t_inference, "
    "bool read_noise, Tensor read_seed, float g_max, float[] prog_coeff, float t_read, "
    "float t_0, float prog_noise_scale, float read_noise_scale, float drift_scale) -> Tensor"
)
_lib.define(PCM_CHIP_SCHEMA)


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


_lib.impl("pcm_chip", pcm_chip_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::pcm_chip")
def _pcm_chip_fake(weight, in_sizes, out_sizes, seed, t_inference, read_noise, read_seed, g_max,
                   prog_coeff, t_read, t_0, prog_noise_scale, read_noise_scale, drift_scale):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def model_args(model: PCMLikeNoiseModel) -> dict:
    """The ``analog::pcm_chip`` keyword arguments that encode ``model``."""
    return dict(g_max=float(model.g_max), prog_coeff=[float(c) for c in model.prog_coeff],
                t_read=float(model.t_read), t_0=float(model.t_0),
                prog_noise_scale=float(model.prog_noise_scale),
                read_noise_scale=float(model.read_noise_scale),
                drift_scale=float(model.drift_scale))


# Every other noise model of the family (and PCMLikeNoiseModel with another converter): the
# model travels as its JSON (a chip stays a function of the targets, the seeds and the model).
DEVICE_CHIP_SCHEMA = (
    "device_chip(Tensor weight, int[] in_sizes, int[] out_sizes, Tensor seed, float t_inference, "
    "bool read_noise, Tensor read_seed, str model) -> Tensor"
)
_lib.define(DEVICE_CHIP_SCHEMA)


@functools.lru_cache(maxsize=64)
def _model_from_json(text: str) -> NoiseModel:
    return NoiseModel.from_json(text)


def device_chip_reference(weight: Tensor, in_sizes: list[int], out_sizes: list[int],
                          seed: Tensor, t_inference: float, read_noise: bool, read_seed: Tensor,
                          model: str) -> Tensor:
    """Reference kernel of ``analog::device_chip`` (``DeviceChipSample``)."""
    plan = TilePlan(weight.shape[0], tuple(in_sizes), tuple(out_sizes))
    chip = DeviceChipSample(weight, plan, _model_from_json(model), int(seed))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(read_seed))
    return chip.at(float(t_inference), gen, read_noise=read_noise)


_lib.impl("device_chip", device_chip_reference, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::device_chip")
def _device_chip_fake(weight, in_sizes, out_sizes, seed, t_inference, read_noise, read_seed,
                      model):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def pcm_chip(weight: Tensor, plan: TilePlan, model: NoiseModel, seed: int | Tensor,
             t_inference: float, read_seed: Tensor | None = None) -> Tensor:
    """Weights of the chip (``weight``, ``seed``) of ``model`` read at ``t_inference`` s;
    ``read_seed`` ``None`` reads without read noise (the programmed / drifted conductances
    only). ``PCMLikeNoiseModel`` runs ``analog::pcm_chip``, every other model of the family
    ``analog::device_chip``."""
    model.check_time(float(t_inference))
    seed_t = torch.as_tensor(int(seed), dtype=torch.int64)
    read = read_seed is not None
    rs = read_seed if read else torch.zeros((), dtype=torch.int64)
    args = (weight.detach(), list(plan.in_sizes), list(plan.out_sizes), seed_t,
            float(t_inference), read, rs)
    if type(model) is PCMLikeNoiseModel:
        return torch.ops.analog.pcm_chip(*args, **model_args(model))
    return torch.ops.analog.device_chip(*args, model.to_json())



from . import _ext  # noqa: E402  (the compiled kernel registers for the schema above)

_ext.load()
