"""Verification of a kept-quantization ONNX export (``export_onnx(..., keep_quantization=True)``):
every analog layer on its own recorded input, and the end-to-end agreement as a statistic.

A quantized periphery makes exact agreement between runtimes impossible in general: a different
accumulation order in a matrix product moves a pre-ADC value across a rounding midpoint, one ADC
step flips, and a deep network carries the difference on. So each emulated analog layer is
exported alone and run by onnxruntime on the very input PyTorch gave it in the reference forward:
nearly all of its outputs must agree to float rounding (``min_exact``), the others differ by the
flipped ADC steps. Then the whole file is run and its difference to PyTorch is reported
(``QuantizedAgreement``), not enforced.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .emulate import EmulatedTileArray

#: An output agrees "exactly" when it is within this fraction of the layer's largest output
#: (float rounding of a different summation order, without an ADC flip).
EXACT_RTOL = 1e-5
#: Default smallest fraction of a layer's outputs that must agree exactly.
MIN_EXACT = 0.99


@dataclass(frozen=True)
class LayerAgreement:
    """onnxruntime against PyTorch for one analog layer on its recorded input."""

    name: str
    """The layer's module name."""
    outputs: int
    """Number of outputs compared."""
    exact_fraction: float
    """Fraction within ``EXACT_RTOL`` of the layer's largest output."""
    max_abs_diff: float
    """Largest |onnxruntime - PyTorch|."""
    max_rel_diff: float
    """``max_abs_diff`` over the layer's largest |output|."""


@dataclass(frozen=True)
class QuantizedAgreement:
    """How closely onnxruntime reproduces a quantized export: per layer and end to end."""

    layers: tuple[LayerAgreement, ...]
    """One entry per analog layer."""
    max_abs_diff: float
    """End to end: largest |onnxruntime - PyTorch| over all outputs."""
    max_rel_diff: float
    """End to end: ``max_abs_diff`` over the largest |PyTorch output|."""
    mean_abs_diff: float
    """End to end: mean |onnxruntime - PyTorch|."""
    exact_fraction: float
    """End to end: fraction of outputs within ``EXACT_RTOL`` of the largest output."""

    @property
    def min_layer_exact_fraction(self) -> float:
        """The worst layer's exact fraction (1.0 without layers)."""
        return min((a.exact_fraction for a in self.layers), default=1.0)

    def summary(self) -> str:
        """A few lines for the user: per-layer agreement, then end to end."""
        worst = min(self.layers, key=lambda a: a.exact_fraction, default=None)
        lines = [f"onnxruntime vs PyTorch, {len(self.layers)} analog layers on their recorded "
                 f"inputs: {sum(a.outputs for a in self.layers)} outputs, worst layer "
                 + (f"{worst.name} {worst.exact_fraction:.4%} exact (max diff "
                    f"{worst.max_rel_diff:.3g} of its largest output)" if worst else "-"),
                 f"end to end: {self.exact_fraction:.2%} of outputs exact, max diff "
                 f"{self.max_abs_diff:.3g} ({self.max_rel_diff:.3g} of the largest output), "
                 f"mean {self.mean_abs_diff:.3g}"]
        return "\n".join(lines)

    __str__ = summary


def _compare(got: Tensor, want: Tensor) -> tuple[float, float, float, float]:
    """``(exact_fraction, max_abs, max_rel, mean_abs)`` of ``got`` against ``want``."""
    if want.numel() == 0:
        return 1.0, 0.0, 0.0, 0.0
    d = (got.float() - want.float()).abs()
    scale = float(want.abs().max())
    tol = EXACT_RTOL * scale if scale > 0 else 0.0
    max_abs = float(d.max())
    return (float((d <= tol).float().mean()), max_abs, max_abs / scale if scale > 0 else max_abs,
            float(d.mean()))


def record_layer_io(model: nn.Module, inputs: Any) -> dict[str, tuple[Tensor, Tensor]]:
    """``{name: (input, output)}`` of every ``EmulatedTileArray`` in one forward of ``model`` on
    ``inputs`` (an ``ExampleInputs``, or a sequence of positional Tensors)."""
    records: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, EmulatedTileArray):
            def hook(_m: nn.Module, args: tuple, out: Tensor, _name: str = name) -> None:
                records[_name] = (args[0].detach().clone(), out.detach().clone())
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            inputs.call(model) if hasattr(inputs, "call") else model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return records


def verify_layers(model: nn.Module, inputs: Any,
                  export: Callable[[nn.Module, tuple[Tensor, ...], Path], Any],
                  run: Callable[[Path, Sequence[Tensor]], list[Tensor]]) -> list[LayerAgreement]:
    """Export every emulated analog layer of ``model`` alone (``export(module, (x,), path)``),
    run it (``run(path, [x])``) on the input it got in ``model``'s forward on ``inputs`` and
    compare with its PyTorch output."""
    out = []
    records = record_layer_io(model, inputs)
    modules = dict(model.named_modules())
    with tempfile.TemporaryDirectory(prefix="analog_layers_") as tmp:
        for k, (name, (x, y)) in enumerate(records.items()):
            path = Path(tmp) / f"layer_{k}.onnx"
            export(modules[name], (x,), path)
            (got,) = run(path, [x])
            exact, max_abs, max_rel, _ = _compare(got, y)
            layer = name.removesuffix(".array") or "<model>"  # the analog layer's own name
            out.append(LayerAgreement(layer, y.numel(), exact, max_abs, max_rel))
    return out


def end_to_end(got: Sequence[Tensor], want: Sequence[Tensor], layers: Sequence[LayerAgreement]
               ) -> QuantizedAgreement:
    """The statistic over all outputs of the whole file (shapes already checked)."""
    flat_got = torch.cat([g.float().flatten() for g in got]) if got else torch.zeros(0)
    flat_want = torch.cat([w.float().flatten() for w in want]) if want else torch.zeros(0)
    exact, max_abs, max_rel, mean_abs = _compare(flat_got, flat_want)
    return QuantizedAgreement(tuple(layers), max_abs, max_rel, mean_abs, exact)
