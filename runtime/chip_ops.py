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
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config.noise import PCMLikeNoiseModel
from .programming import ChipSample
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


def pcm_chip(weight: Tensor, plan: TilePlan, model: PCMLikeNoiseModel, seed: int | Tensor,
             t_inference: float, read_seed: Tensor | None = None) -> Tensor:
    """Weights of the chip (``weight``, ``seed``) read at ``t_inference`` s; ``read_seed``
    ``None`` reads without read noise (the programmed / drifted conductances only)."""
    seed_t = torch.as_tensor(int(seed), dtype=torch.int64)
    read = read_seed is not None
    rs = read_seed if read else torch.zeros((), dtype=torch.int64)
    return torch.ops.analog.pcm_chip(weight.detach(), list(plan.in_sizes), list(plan.out_sizes),
                                     seed_t, float(t_inference), read, rs, **model_args(model))


from . import _ext  # noqa: E402  (the compiled kernel registers for the schema above)

_ext.load()
