"""``export_onnx``: the analog model's realistic weights (or its whole noise-free periphery) as
an ONNX file, checked against onnxruntime.

Pipeline: ``realistic_copy`` (program / drift a deep copy; the model is untouched) ->
``to_digital`` layers (default) or ``emulate`` layers (``keep_quantization=True``) -> eval mode
-> ``torch.onnx.export`` (TorchScript exporter by default for speed, the dynamo exporter with
``exporter="dynamo"`` or when the former is unavailable; the one used is reported) with a
dynamic batch axis on every input -> the analog
metadata (``metadata.py``) -> optional onnxruntime check.

The exported graph is the model in eval mode (dropout off, norms use running statistics).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..inputs import ExampleInputs, normalize_example_inputs, run_example_inputs
from ..nn.experts import AnalogExperts
from ..runtime import AnalogCompilerError
from ..runtime.checks import check_t_inference
from .digital import check_model, realistic_copy, replace_analog_layers
from .emulate import replace_with_emulation
from .metadata import build_metadata, write_metadata
from .verification import MIN_EXACT, QuantizedAgreement, end_to_end, verify_layers

#: Relative tolerance of the onnxruntime check: max |ort - torch| <= RTOL * max |torch|.
RTOL = 1e-4


class ExportVerificationError(AnalogCompilerError, ValueError):
    """onnxruntime's output differs from the PyTorch reference beyond the tolerance."""


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote and how well onnxruntime reproduced it."""

    path: Path
    """The ONNX file."""
    exporter: str
    """``"dynamo"`` or ``"torchscript"``: the torch.onnx exporter that produced the graph."""
    max_abs_diff: float | None
    """Largest |onnxruntime - PyTorch| on the example inputs (None: not verified)."""
    max_rel_diff: float | None
    """``max_abs_diff / max |PyTorch output|`` (None: not verified)."""
    metadata: dict[str, Any] = field(repr=False, default_factory=dict)
    """The analog metadata stored in the file (see ``metadata.py``)."""
    agreement: QuantizedAgreement | None = field(repr=False, default=None)
    """``keep_quantization=True`` with ``verify``: per-layer and end-to-end agreement of
    onnxruntime with PyTorch (``print(result.agreement)``); None otherwise."""

    def __fspath__(self) -> str:
        return str(self.path)


def check_output_path(path: str | os.PathLike, where: str = "export_onnx") -> Path:
    """``path`` as a ``Path`` if a file can be written there; else ``FileNotFoundError`` (missing
    directory), ``PermissionError`` (not writable) or ``ValueError`` (a directory), each naming
    the ``path`` argument."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"{where}: path {out} is a directory; give a file name such as "
                         f"{out / 'model.onnx'}")
    if not parent.is_dir():
        raise FileNotFoundError(f"{where}: path {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise PermissionError(f"{where}: path {out} is not writable")
    return out


def onnx_inputs(model: nn.Module, example_inputs: Any) -> ExampleInputs:
    """``example_inputs`` (the rule of ``analog_compiler.inputs``) as ONNX graph inputs: every
    value a Tensor (``TypeError`` otherwise: ONNX inputs are tensors), keyword inputs in the
    order of ``model.forward``'s parameters (both exporters order them so)."""
    inputs = normalize_example_inputs(example_inputs, "export_onnx")
    if not inputs.items():
        raise TypeError("export_onnx: example_inputs is empty; the model needs at least one "
                        "Tensor input")
    for label, value in inputs.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"export_onnx: example_inputs must all be Tensors (ONNX graph "
                            f"inputs are tensors); {label} is a {type(value).__name__}")
    if inputs.kwargs:
        try:
            order = list(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):  # no signature: keep the order given
            order = []
        rank = {name: i for i, name in enumerate(order)}
        names = sorted(inputs.kwargs, key=lambda k: rank.get(k, len(order)))
        inputs = ExampleInputs(inputs.args, {k: inputs.kwargs[k] for k in names})
    return inputs


def input_names(inputs: ExampleInputs) -> list[str]:
    """ONNX names of the graph inputs: ``input`` (one positional input), ``input_0``, ...
    (several), the keyword names for keyword inputs."""
    n = len(inputs.args)
    return [f"input_{i}" if n > 1 else "input" for i in range(n)] + list(inputs.kwargs)


#: Loggers of the exporters whose internal messages (e.g. onnxscript's constant folding:
#: "Evaluation failed: cannot reshape array ...") stay out of the user's terminal; set
#: ``ANALOG_COMPILER_EXPORT_LOGS=1`` to see them.
_EXPORT_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' progress prints, warnings and log lines (stdout, stderr and
    their loggers) unless ``ANALOG_COMPILER_EXPORT_LOGS=1``."""
    if os.environ.get("ANALOG_COMPILER_EXPORT_LOGS", "0") == "1":
        yield
        return
    loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


EXPORTERS = ("auto", "torchscript", "dynamo")


def _export_torchscript(model: nn.Module, inputs: ExampleInputs, path: Path,
                        names: list[str], opset: int | None, dynamic_batch: bool) -> None:
    axes = {n: {0: "batch"} for n in [*names, "output"]} if dynamic_batch else None
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with _quiet():
        torch.onnx.export(model, inputs.args, str(path), kwargs=inputs.kwargs or None,
                          dynamo=False, input_names=names, output_names=["output"],
                          dynamic_axes=axes, **kwargs)


def _export_dynamo(model: nn.Module, inputs: ExampleInputs, path: Path,
                   names: list[str], opset: int | None, dynamic_batch: bool) -> None:
    dyn: Any = None
    if dynamic_batch:
        batch = {0: torch.export.Dim.DYNAMIC}
        dyn = {k: batch for k in inputs.kwargs} if inputs.kwargs else tuple(
            batch for _ in inputs.args)
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with _quiet():
        torch.onnx.export(model, inputs.args, str(path), kwargs=inputs.kwargs or None,
                          dynamo=True, dynamic_shapes=dyn, input_names=names,
                          output_names=["output"], verbose=False, **kwargs)


def _export_graph(model: nn.Module, inputs: ExampleInputs, path: Path,
                  opset: int | None, dynamic_batch: bool, exporter: str) -> str:
    """Write ``model`` to ``path`` with torch.onnx; returns the exporter used.

    ``auto`` tries the TorchScript exporter first: for these plain graphs it writes the same
    operators as the dynamo exporter in about a hundredth of the time (0.1 s against 5-20 s on
    two CPU cores). torch marks it deprecated; when it is gone or fails, ``auto`` uses dynamo."""
    names = input_names(inputs)
    if exporter == "dynamo":
        _export_dynamo(model, inputs, path, names, opset, dynamic_batch)
        return "dynamo"
    try:
        _export_torchscript(model, inputs, path, names, opset, dynamic_batch)
        return "torchscript"
    except Exception:  # noqa: BLE001 - the legacy exporter may be removed or fail; try dynamo
        if exporter == "torchscript":
            raise
    _export_dynamo(model, inputs, path, names, opset, dynamic_batch)
    return "dynamo"


def _name_batch_axis(onnx_model: Any) -> None:
    """Call the dynamic first axis of every graph input and output ``batch``."""
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"


def run_onnxruntime(path: str | os.PathLike, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Run the ONNX file at ``path`` on ``inputs`` with onnxruntime (CPU); outputs as tensors."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feed)]


def _flat_outputs(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat_outputs(o)]
    raise TypeError(f"export_onnx: cannot compare model output of type {type(out).__name__}")


def _checked_outputs(path: str | os.PathLike, reference: Any,
                     inputs: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """onnxruntime's outputs and the PyTorch ones, with their number and shapes checked."""
    want = [t.detach().float().cpu() for t in _flat_outputs(reference)]
    got = run_onnxruntime(path, inputs)
    if len(got) != len(want):
        raise ExportVerificationError(f"export_onnx: {path} has {len(got)} outputs, the model "
                                      f"{len(want)}")
    for k, (g, w) in enumerate(zip(got, want)):
        if tuple(g.shape) != tuple(w.shape):
            raise ExportVerificationError(f"export_onnx: output {k} has shape {tuple(g.shape)} "
                                          f"in onnxruntime, {tuple(w.shape)} in PyTorch")
    return got, want


def verify_quantized(path: str | os.PathLike, reference: Any,
                     inputs: ExampleInputs | Sequence[Tensor], model: nn.Module,
                     opset: int | None = None, min_exact: float = MIN_EXACT) -> QuantizedAgreement:
    """Verification of a kept-quantization export (``verification.py``): every analog layer of
    ``model`` (the emulated model that was exported) alone on its recorded input must agree
    exactly on at least ``min_exact`` of its outputs, else ``ExportVerificationError`` names
    it; the whole file's difference is measured and returned, not enforced."""
    if not isinstance(inputs, ExampleInputs):
        inputs = ExampleInputs(tuple(inputs))
    got, want = _checked_outputs(path, reference, [v for _, v in inputs.items()])

    def export(module: nn.Module, args: tuple[Tensor, ...], file: Path) -> None:
        _export_graph(module, ExampleInputs(args), file, opset, False, "auto")

    layers = verify_layers(model, inputs, export, run_onnxruntime)
    for a in layers:
        if a.exact_fraction < min_exact:
            raise ExportVerificationError(
                f"export_onnx: analog layer {a.name} in onnxruntime agrees with PyTorch on "
                f"{a.exact_fraction:.2%} of its outputs on its own input (at least "
                f"{min_exact:.0%} expected; largest difference {a.max_abs_diff:.3g}, "
                f"{a.max_rel_diff:.3g} of its largest output)")
    return end_to_end(got, want, layers)


def verify_onnx(path: str | os.PathLike, reference: Any, inputs: Sequence[Tensor],
                rtol: float = RTOL) -> tuple[float, float]:
    """Compare onnxruntime's outputs on ``inputs`` with ``reference`` (the PyTorch outputs);
    returns ``(max_abs_diff, max_rel_diff)`` or raises ``ExportVerificationError``."""
    got, want = _checked_outputs(path, reference, inputs)
    abs_diff, rel_diff = 0.0, 0.0
    for g, w in zip(got, want):
        d = float((g.float() - w).abs().max()) if w.numel() else 0.0
        scale = float(w.abs().max()) if w.numel() else 0.0
        abs_diff = max(abs_diff, d)
        rel_diff = max(rel_diff, d / scale if scale > 0 else d)
    if not rel_diff <= rtol:
        raise ExportVerificationError(
            f"export_onnx: onnxruntime output of {path} differs from PyTorch: largest "
            f"difference {abs_diff:.3g} ({rel_diff:.3g} relative to the largest output, "
            f"tolerance {rtol:g})")
    return abs_diff, rel_diff


def export_onnx(model: nn.Module, example_inputs: Any, path: str | os.PathLike, *,
                realistic: bool = True, t_inference: float | None = None,
                keep_quantization: bool = False, verify: bool = True, opset: int | None = None,
                seed: int | None = None, dynamic_batch: bool = True,
                exporter: str = "auto") -> OnnxExport:
    """Export the analog model's weights as read from the chip to an ONNX file.

    Args:
        model: a model with analog layers; it is not modified.
        example_inputs: a Tensor, a tuple/list of Tensors (the forward's positional inputs)
            or a dict of Tensors (its keyword inputs, e.g. a tokenizer's output): the rule of
            ``analog_compiler.inputs``, with every value a Tensor. The ONNX inputs are named
            ``input`` (one positional), ``input_0``, ``input_1``, ... (several) or by keyword.
        path: the ``.onnx`` file to write (its directory must exist).
        realistic: chip weights (programmed / drifted / read) rather than the exact targets;
            see ``to_digital``.
        t_inference: drift every layer's chip to this time (s) first; ``None``: as they are.
        keep_quantization: export the deterministic periphery too (noise management, DAC,
            per-split MatMul, ADC, bound management, scales: see ``emulate.py``) so the file
            computes the analog noise-free output, not only the weights'. Supports
            ``AnalogLinear`` and ``AnalogConv1d/2d/3d`` layers.
        verify: run the file with onnxruntime on ``example_inputs`` and raise
            ``ExportVerificationError`` if it differs from PyTorch beyond 1e-4 (relative to
            the largest output), naming the largest difference. With ``keep_quantization``
            exact agreement is impossible in general (a different summation order flips an
            ADC step, and a deep network carries it on): each analog layer is checked alone
            on its recorded input (at least 99 % of its outputs exact, else the error names
            the layer), and the end-to-end agreement is measured and returned as
            ``result.agreement`` (see ``verification.py``), not enforced.
        opset: ONNX opset (``None``: the exporter's default).
        seed: seed of the chip sampling and read noise (``None``: torch's global RNG).
        dynamic_batch: make the first axis of every input a dynamic ``batch`` dimension.
        exporter: ``"auto"`` (TorchScript exporter, dynamo if that is unavailable or fails),
            ``"torchscript"`` or ``"dynamo"`` (``torch.onnx.export(dynamo=True)``).

    Returns:
        An ``OnnxExport`` (path, exporter, differences, metadata); usable as a path.

    Raises:
        TypeError: bad ``model``/``example_inputs``/``path`` types (an input that is not a
            Tensor).
        ValueError: no analog layers, negative ``t_inference``, ``path`` is a directory, the
            model fails on ``example_inputs``.
        FileNotFoundError / PermissionError: ``path``'s directory is missing / not writable.
        ExportVerificationError: onnxruntime disagrees with PyTorch (the file is left in
            place, with its metadata, for inspection).
    """
    check_model(model, "export_onnx")
    moe = [n for n, m in model.named_modules() if isinstance(m, AnalogExperts)]
    if moe:  # its routing picks experts in Python: a trace would keep the example's choice
        raise ValueError(f"export_onnx: {moe[0]!r} is a mixture of experts (AnalogExperts), whose "
                         "routing an ONNX graph traced from one input cannot follow; export the "
                         "weights with ac.to_digital instead")
    if exporter not in EXPORTERS:
        raise ValueError(f"export_onnx: exporter must be one of {', '.join(EXPORTERS)}, "
                         f"got {exporter!r}")
    t = check_t_inference(t_inference, "export_onnx", allow_none=True)
    out = check_output_path(path)
    inputs = onnx_inputs(model, example_inputs)
    work = realistic_copy(model, realistic=realistic, t_inference=t, seed=seed,
                          where="export_onnx")
    metadata = build_metadata(work, realistic=realistic, t_inference=t,
                              keep_quantization=keep_quantization, seed=seed)
    if keep_quantization:
        plain = replace_with_emulation(work, realistic=realistic)
    else:
        plain = replace_analog_layers(work, realistic=realistic, fold_scales=True)
    plain = plain.eval()
    for p in plain.parameters():
        p.requires_grad_(False)
    reference = run_example_inputs(plain, inputs, "export_onnx")
    used = _export_graph(plain, inputs, out, opset, dynamic_batch, exporter)

    import onnx

    onnx_model = onnx.load(str(out))
    _name_batch_axis(onnx_model)
    write_metadata(onnx_model, metadata)
    onnx.save(onnx_model, str(out))
    abs_diff = rel_diff = agreement = None
    if verify and keep_quantization:
        agreement = verify_quantized(out, reference, inputs, plain, opset)
        abs_diff, rel_diff = agreement.max_abs_diff, agreement.max_rel_diff
    elif verify:
        abs_diff, rel_diff = verify_onnx(out, reference, [v for _, v in inputs.items()])
    return OnnxExport(out, used, abs_diff, rel_diff, metadata, agreement)
