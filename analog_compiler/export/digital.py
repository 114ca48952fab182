"""``to_digital``: read the weights back out of an analog model into a plain PyTorch model.

Every analog layer of a deep copy of the model is replaced by its digital counterpart
(``nn.Linear``, ``nn.Conv1d/2d/3d``; whatever the layer class's ``to_digital`` returns); the rest
of the model (activations, norms, the FX graph of a converted model) is kept as it is. The
analog model itself is never modified: programming and drifting happen on the copy.

Which weights come out:

- ``realistic=False``: the target weights (what ``set_weights`` stored, mapping scales
  multiplied back): the digital model the analog one was converted from.
- ``realistic=True``: the weights the chip holds. A programmed layer's chip is used as it is
  (its current drift time and read noise); an unprogrammed layer gets a freshly programmed chip
  (no drift, no read noise). With ``t_inference`` every layer's chip (programmed first where it
  is not yet) is drifted to that time and read with fresh read noise, as
  ``drift_analog_weights(t_inference)`` does. With ``fold_scales`` the digital output scales of
  the eval-mode forward (weight-scaling mapping scales, the drift-compensation alpha, learned
  output scales) are multiplied into the weight rows, so the plain model's output equals the
  analog model's *noise-free* output (``out_noise = w_noise = 0``, no DAC/ADC quantization, no
  bound management) up to float rounding.

Arrays trained hardware-aware with learned input ranges clip their inputs to ``+-r`` before
the DAC; a plain layer cannot clip, so the digital model equals the analog noise-free output for
inputs inside the learned ranges (``export_onnx(keep_quantization=True)`` keeps the clipping).
Learned output scales are folded like the other scales. ``AnalogMultiheadAttention`` keeps its
class with plain ``nn.Linear`` projections (its digital form, the same math). ``AnalogLSTM``,
``AnalogGRU`` and ``AnalogElmanRNN`` become ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (aihwkit's
``AnalogRNN`` keeps its class with ``nn.Linear`` matrices); ``AnalogSequential`` becomes
``nn.Sequential`` and an ``AnalogWrapper`` its wrapped class.

``fold_scales=False`` returns the raw tile weights (as the crossbar holds them, normalised
conductance units) without any digital output scale; the plain model's output then differs
from the analog one row by row by those scales (exactly equal only when every scale is 1). The
per-row scales the forward would apply are attached to each digital layer as the plain tensor
attribute ``analog_output_scales`` (``[groups, n_in_splits, out_per_group]``, not a parameter or
buffer, so ``state_dict`` stays the plain layer's). Use it to inspect the chip, not to deploy.

Randomness: with ``seed`` the chip sampling and the read noise are drawn from
``torch.manual_seed(seed)`` inside a forked RNG state (the global RNG is left as it was); without
it they come from torch's global RNG (so ``torch.manual_seed`` before the call reproduces too).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..chip import analog_layers
from ..nn.base import AnalogLayerBase
from ..nn.containers import AnalogSequential, AnalogWrapper
from ..nn.experts import AnalogExperts
from ..nn.recurrent_torch import AnalogRecurrentBase
from ..runtime.checks import check_t_inference


def check_model(model: nn.Module, where: str) -> list[tuple[str, AnalogLayerBase]]:
    """The analog layers of ``model``; a ``TypeError`` for a non-module and a ``ValueError`` for a
    model without analog layers (there is nothing to read back)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module, got {type(model).__name__}")
    layers = list(analog_layers(model))
    if not layers:
        raise ValueError(f"{where}: model ({type(model).__name__}) has no analog layers; convert "
                         "it first (ac.convert) or export the digital model directly")
    return layers


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded by ``seed`` and restore it afterwards; ``None``:
    use (and advance) the global RNG as it is."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def realistic_copy(model: nn.Module, *, realistic: bool = True, t_inference: float | None = None,
                   seed: int | None = None, where: str = "to_digital") -> nn.Module:
    """A deep copy of ``model`` whose analog layers hold the chip state that ``to_digital``
    reads (see the module docstring); ``model`` is not modified. With ``realistic=False`` the
    copy is returned as it is."""
    check_model(model, where)
    t = check_t_inference(t_inference, where, allow_none=True)
    model_copy = copy.deepcopy(model)
    if not realistic:
        return model_copy
    with _seeded(seed), torch.no_grad():
        for _, layer in analog_layers(model_copy):
            arr = layer.analog_module
            if t is not None:
                arr.drift(t)
            elif not arr.is_programmed:
                arr.program()
    return model_copy


def _eval_output_scales(layer: AnalogLayerBase, realistic: bool) -> torch.Tensor | None:
    """The per tile-row output scales the eval-mode forward applies (None: all 1)."""
    arr = layer.analog_module
    was_training = arr.training
    arr.eval()
    try:
        return arr.digital_scales("forward" if realistic else "mapping")
    finally:
        arr.train(was_training)


def digital_layer(layer: AnalogLayerBase, *, realistic: bool = True,
                  fold_scales: bool = True) -> nn.Module:
    """The digital counterpart of one analog layer with the weights it holds now (no copying or
    programming: see ``realistic_copy``), in the layer's training mode."""
    was_training = layer.training
    layer.eval()
    try:
        # building the digital template initialises (then overwrites) its weights: keep that
        # from advancing torch's global RNG
        with torch.random.fork_rng(devices=[]):
            digital = type(layer).to_digital(layer, realistic=realistic)
    finally:
        layer.train(was_training)
    if not fold_scales:
        arr = layer.analog_module
        raw = arr.weights(chip=realistic, scales="none")
        with torch.no_grad():
            digital.weight.copy_(layer._from_array_layout(raw))
        scales = _eval_output_scales(layer, realistic)
        digital.analog_output_scales = (torch.ones_like(arr.mapping_scales) if scales is None
                                        else scales.detach().clone())
    return digital.train(was_training)


#: Analog layers made of several matrices, each an ``AnalogLinear`` (``digital_twin``).
MULTI_MATRIX = (AnalogRecurrentBase, AnalogExperts)


def digital_composite(module: AnalogRecurrentBase | AnalogExperts, *, realistic: bool = True,
                      fold_scales: bool = True) -> nn.Module:
    """The ``nn.LSTM``/``nn.GRU``/``nn.RNN`` of an analog recurrent layer (the Hugging Face
    experts module of an ``AnalogExperts``) with the weights its matrices hold now (each read
    as ``digital_layer`` reads one layer). With ``fold_scales=False`` the per-row scales are
    attached as the dict ``analog_output_scales`` (torch weight name -> scales)."""
    names = {id(layer): module.digital_parameter_name(name)
             for name, layer in module.named_analog_layers()}
    scales: dict[str, torch.Tensor] = {}

    def linear_fn(layer: nn.Module) -> nn.Module:
        linear = digital_layer(layer, realistic=realistic, fold_scales=fold_scales)
        if not fold_scales:
            scales[names[id(layer)]] = linear.analog_output_scales
        return linear

    digital = module.digital_twin(linear_fn)
    if not fold_scales:
        digital.analog_output_scales = scales
    return digital


def _plain_container(module: nn.Module) -> nn.Module:
    """``AnalogSequential`` -> ``nn.Sequential``, ``AnalogWrapper<Class>`` -> ``Class`` (the
    same children); anything else as it is."""
    if isinstance(module, AnalogSequential | AnalogWrapper):
        return type(module).to_digital(module)
    return module


def replace_analog_layers(model: nn.Module, *, realistic: bool = True,
                          fold_scales: bool = True) -> nn.Module:
    """Replace, in place, every analog layer of ``model`` by its digital counterpart (recurrent
    layers by ``nn.LSTM``/``nn.GRU``/``nn.RNN``, ``AnalogExperts`` by the experts module it
    came from, ``AnalogSequential`` and ``AnalogWrapper`` by
    their plain classes); returns the model (the digital layer itself when ``model`` is one
    analog layer)."""
    if isinstance(model, AnalogLayerBase):
        return digital_layer(model, realistic=realistic, fold_scales=fold_scales)
    if isinstance(model, MULTI_MATRIX):
        return digital_composite(model, realistic=realistic, fold_scales=fold_scales)
    for name, module in list(model.named_modules()):
        if name and isinstance(module, MULTI_MATRIX) and _attached(model, name, module):
            model.set_submodule(name, digital_composite(module, realistic=realistic,
                                                        fold_scales=fold_scales))
    for name, layer in list(analog_layers(model)):
        model.set_submodule(name, digital_layer(layer, realistic=realistic,
                                                fold_scales=fold_scales))
    for name, module in list(model.named_modules()):
        if name and isinstance(module, AnalogSequential | AnalogWrapper):
            model.set_submodule(name, _plain_container(module))
    return _plain_container(model)


def _attached(model: nn.Module, name: str, module: nn.Module) -> bool:
    """Whether ``module`` is still at ``name`` (not inside a module replaced before it)."""
    try:
        return model.get_submodule(name) is module
    except AttributeError:
        return False


def to_digital(model: nn.Module, *, realistic: bool = True, t_inference: float | None = None,
               fold_scales: bool = True, seed: int | None = None) -> nn.Module:
    """A plain PyTorch model with the weights the analog layers of ``model`` hold.

    Args:
        model: a model with analog layers (``ac.convert`` output, or built from analog layers).
        realistic: ``False``: the exact target weights. ``True``: the chip's programmed
            (and drifted, read-noisy) weights; unprogrammed layers get a fresh chip.
        t_inference: seconds after programming to drift every layer's chip to before reading
            (``None``: keep each programmed layer's current state). Must be >= 0.
        fold_scales: fold mapping scales, drift compensation and learned output scales into
            the weights (the output then equals the analog noise-free output); ``False``: raw
            tile weights, scales attached as ``analog_output_scales`` (see the module docstring).
        seed: seed of the chip sampling and read noise (``None``: torch's global RNG).

    Returns:
        A deep copy of ``model`` with every analog layer replaced; ``model`` is untouched.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has no analog layers, or ``t_inference`` is negative / not a number.
    """
    work = realistic_copy(model, realistic=realistic, t_inference=t_inference, seed=seed)
    return replace_analog_layers(work, realistic=realistic, fold_scales=fold_scales)
