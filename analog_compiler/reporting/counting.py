"""Per-inference work counts: input vectors, MACs, tile MVMs and ADC conversions.

Static counts come from a layer's tile plan; the number of input vectors a layer sees per
forward (batch x tokens for sequence models, batch x output positions for convolutions: the
conv reuse factor) needs ``example_inputs``: the model runs once with forward pre-hooks on every
analog layer's tile array (which receives exactly one row per input vector) and on the digital
matrix modules, under ``torch.utils.flop_counter.FlopCounterMode`` to count every digital matrix
product (remaining ``nn.Linear``/``nn.Conv*``, ``F.linear``, ``matmul``, attention). The analog
custom op ``analog::tile_forward`` is not a matrix op for the flop counter, so analog work is
never counted twice.

The forward runs in eval mode under ``torch.no_grad`` with the RNG state forked, so it neither
updates BatchNorm statistics nor perturbs the caller's random stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from ..inputs import model_failed, normalize_example_inputs
from ..runtime import TilePlan

#: Digital modules whose matrix products the report lists one by one.
DIGITAL_MATRIX_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _cpu_flash_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *_args: Any,
                               out_shape: Any = None, **_kwargs: Any) -> int:
    """FLOPs of the CPU flash-attention kernel (missing from torch's flop registry)."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_flop_formulas() -> dict[Any, Any]:
    """Flop formulas for matrix ops torch's counter does not know (looked up defensively)."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _cpu_flash_attention_flops} if op is not None else {}


@dataclass(frozen=True)
class VectorWork:
    """Work of one analog layer for one input vector (static, from the tile plan)."""

    macs: int
    """Multiply-accumulates: the used cells (``groups * in_g * out_g``)."""
    tile_mvms: int
    """Tile matrix-vector products: every tile of every group reads the vector once."""
    adc_conversions: int
    """Output conversions: each tile MVM converts the rows it uses (``out_sizes[j]``), i.e.
    ``groups * n_in * out_g``; unused rows of the physical crossbar are not converted."""


def vector_work(plan: TilePlan) -> VectorWork:
    """Static per-vector counts of ``plan``."""
    return VectorWork(macs=plan.groups * plan.in_features * plan.out_features,
                      tile_mvms=plan.tile_count,
                      adc_conversions=plan.groups * plan.n_in * plan.out_features)


@dataclass
class ForwardCounts:
    """What one forward of ``example_inputs`` did."""

    vectors: dict[str, int] = field(default_factory=dict)
    """Analog layer name -> input vectors it received (summed over repeated calls)."""
    digital_module_macs: dict[str, int] = field(default_factory=dict)
    """Digital ``nn.Linear``/``nn.Conv*`` name -> its MACs."""
    digital_macs: int = 0
    """Every digital matrix MAC of the forward (flop counter: FLOPs / 2)."""
    batch_shape: tuple[int, ...] | None = None
    """Shape of the first tensor of ``example_inputs`` (for the report header)."""
    sequences: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Recurrent layer name -> ``(sequence steps, sequences)``: the sum over its calls of
    time steps x sequences, and of sequences."""


def digital_module_macs(module: nn.Module, output: Any) -> int:
    """MACs of one call of a digital ``nn.Linear``/``nn.Conv*`` that produced ``output``."""
    if not isinstance(output, Tensor):
        return 0
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return output.numel() * per_output


def count_forward(model: nn.Module, analog: Mapping[str, nn.Module],
                  digital: Mapping[str, nn.Module], example_inputs: Any,
                  recurrent: Mapping[str, nn.Module] | None = None) -> ForwardCounts:
    """Run ``model`` once on ``example_inputs`` (the rule of ``analog_compiler.inputs``) and
    count what every listed layer did.

    ``analog`` maps names to analog layers (their ``analog_module`` is hooked), ``digital`` to
    digital matrix modules, ``recurrent`` to recurrent layers (their ``sequence_shape(*args)``
    gives the time steps and sequences of each call). A failing forward raises ``ValueError``
    naming the original error.
    """
    inputs = normalize_example_inputs(example_inputs, "report")
    counts = ForwardCounts(vectors={name: 0 for name in analog},
                           digital_module_macs={name: 0 for name in digital},
                           batch_shape=inputs.first_shape())
    handles = []

    def vector_hook(name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], Tensor):
                counts.vectors[name] += int(args[0].shape[0])
        return hook

    def digital_hook(name: str):
        def hook(module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            counts.digital_module_macs[name] += digital_module_macs(module, output)
        return hook

    def sequence_hook(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            steps, seqs = module.sequence_shape(*args)
            old = counts.sequences.get(name, (0, 0))
            counts.sequences[name] = (old[0] + steps * seqs, old[1] + seqs)
        return hook

    for name, module in (recurrent or {}).items():
        handles.append(module.register_forward_pre_hook(sequence_hook(name)))
    for name, layer in analog.items():
        handles.append(layer.analog_module.register_forward_pre_hook(vector_hook(name)))
    for name, module in digital.items():
        handles.append(module.register_forward_hook(digital_hook(name)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad(), \
                FlopCounterMode(display=False,
                                                 custom_mapping=_extra_flop_formulas()) as flops:
            inputs.call(model)
    except Exception as exc:  # noqa: BLE001 - any model error becomes one clear message
        raise model_failed("report", model, inputs, exc) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    counts.digital_macs = int(flops.get_total_flops()) // 2
    return counts
