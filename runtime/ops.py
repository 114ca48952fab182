"""The ``analog`` custom op library: schemas, reference kernels, fake kernels and autograd.

The schemas live here, in Python, so the ops exist without the compiled library; the C++/CUDA
library (``analog_compiler._C``) only registers faster CPU/CUDA kernels for the same schemas,
which the dispatcher prefers over the ``CompositeExplicitAutograd`` reference.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from . import reference

_lib = torch.library.Library("analog", "FRAGMENT")

TILE_FORWARD_SCHEMA = (
    "tile_forward(Tensor x, Tensor weight, Tensor? out_scales, Tensor? bias, Tensor seed, "
    "int[] in_sizes, int[] out_sizes, bool is_perfect, int nm_type, float nm_thres, "
    "float inp_bound, float inp_step, bool inp_sto_round, float inp_noise, float out_bound, "
    "float out_step, bool out_sto_round, float out_noise, int w_noise_type, float w_noise, "
    "int bm_rounds, bool need_mask) -> (Tensor, Tensor)"
)
TILE_BACKWARD_SCHEMA = (
    "tile_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor? out_scales, Tensor? mask, "
    "int[] in_sizes, int[] out_sizes, bool need_input_grad, bool need_weight_grad) "
    "-> (Tensor, Tensor)"
)
_lib.define(TILE_FORWARD_SCHEMA)
_lib.define(TILE_BACKWARD_SCHEMA)
_lib.impl("tile_forward", reference.tile_forward, "CompositeExplicitAutograd")
_lib.impl("tile_backward", reference.tile_backward, "CompositeExplicitAutograd")


@torch.library.register_fake("analog::tile_forward")
def _tile_forward_fake(x, weight, out_scales, bias, seed, in_sizes, out_sizes, is_perfect,
                       nm_type, nm_thres, inp_bound, inp_step, inp_sto_round, inp_noise,
                       out_bound, out_step, out_sto_round, out_noise, w_noise_type, w_noise,
                       bm_rounds, need_mask):
    groups, out_g, _ = weight.shape
    y = x.new_empty((x.shape[0], groups * out_g))
    if need_mask:
        mask = x.new_empty((groups, len(in_sizes), x.shape[0], out_g), dtype=torch.bool)
    else:
        mask = x.new_empty((0,), dtype=torch.bool)
    return y, mask


@torch.library.register_fake("analog::tile_backward")
def _tile_backward_fake(grad_y, x, weight, out_scales, mask, in_sizes, out_sizes,
                        need_input_grad, need_weight_grad):
    gx = torch.empty_like(x) if need_input_grad else x.new_empty((0,))
    gw = torch.empty_like(weight) if need_weight_grad else x.new_empty((0,))
    return gx, gw


def _setup_context(ctx, inputs, output):
    x, weight, out_scales, bias, _seed, in_sizes, out_sizes = inputs[:7]
    _, mask = output
    ctx.in_sizes, ctx.out_sizes = list(in_sizes), list(out_sizes)
    ctx.has_bias = bias is not None
    ctx.use_mask = mask.numel() > 0
    ctx.save_for_backward(x, weight, out_scales, mask if ctx.use_mask else None)


def _backward(ctx, grad_y, _grad_mask):
    x, weight, out_scales, mask = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx = gw = None
    if need_x or need_w:
        gx_, gw_ = torch.ops.analog.tile_backward(
            grad_y.contiguous(), x, weight, out_scales, mask, ctx.in_sizes, ctx.out_sizes,
            need_x, need_w)
        gx = gx_ if need_x else None
        gw = gw_ if need_w else None
    gb = grad_y.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
    return (gx, gw, None, gb) + (None,) * 18


torch.library.register_autograd("analog::tile_forward", _backward, setup_context=_setup_context)


def tile_forward(x: Tensor, weight: Tensor, out_scales: Tensor | None, bias: Tensor | None,
                 seed: Tensor, in_sizes: list[int], out_sizes: list[int], io: dict,
                 need_mask: bool) -> tuple[Tensor, Tensor]:
    """Call ``analog::tile_forward`` with the kernel arguments of ``io`` (see
    ``runtime.tile_array.kernel_io``)."""
    with dispatch_scope(need_mask, x, weight, out_scales, bias):
        return torch.ops.analog.tile_forward(x, weight, out_scales, bias, seed, in_sizes,
                                             out_sizes, **io, need_mask=need_mask)


def dispatch_scope(need_mask: bool, *tensors: Tensor | None) -> AbstractContextManager:
    """Where to call an ``analog`` op on ``tensors``: below autograd when there is nothing to
    differentiate (skipping the Python autograd kernel's checks and redispatch, tens of
    microseconds, most of a batch-1 layer's overhead), else as usual. Traced code always takes
    the usual call, whose dispatch the compiler resolves at trace time."""
    if (need_mask or torch.compiler.is_compiling()
            or (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                for t in tensors))):
        return nullcontext()
    return torch._C._AutoDispatchBelowAutograd()


# After the schemas: the compiled CPU/CUDA kernels (if built) register for them.
from . import _ext  # noqa: E402

_ext.load()
