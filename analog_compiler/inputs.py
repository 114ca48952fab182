"""Example inputs: one rule for every verb that runs the model (``convert``, ``report``,
``export_onnx``).

``example_inputs`` is one of

- a ``Tensor``: the forward's one positional input, ``model(x)``;
- a tuple or list: the positional inputs, ``model(*inputs)``;
- a dict with string keys: the keyword inputs, ``model(**inputs)`` (e.g. a tokenizer's output).

Anything else is a ``TypeError`` that names the verb. A verb that cannot honour a form says so
with its own clear error (``export_onnx`` needs every input to be a Tensor: ONNX graph inputs
are tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: The accepted forms, for error messages.
FORMS = "a Tensor, a tuple/list of positional inputs or a dict of keyword inputs"


@dataclass(frozen=True)
class ExampleInputs:
    """Example inputs in one form: ``model(*args, **kwargs)`` (one of the two is empty)."""

    args: tuple[Any, ...] = ()
    """The positional inputs."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The keyword inputs, in the order given."""

    def call(self, model: nn.Module) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def items(self) -> list[tuple[str, Any]]:
        """``(label, value)`` of every input: ``input 0``, ... then the keyword names."""
        return [(f"input {i}", v) for i, v in enumerate(self.args)] + list(self.kwargs.items())

    def describe(self) -> str:
        """``input 0: shape (2, 3); mask: shape (2,)`` (a type name for non-tensors)."""
        return "; ".join(f"{k}: shape {tuple(v.shape)}" if isinstance(v, Tensor)
                         else f"{k}: {type(v).__name__}" for k, v in self.items())

    def first_shape(self) -> tuple[int, ...] | None:
        """Shape of the first tensor input (None if there is none)."""
        return next((tuple(v.shape) for _, v in self.items() if isinstance(v, Tensor)), None)


def normalize_example_inputs(example_inputs: Any, where: str) -> ExampleInputs:
    """``example_inputs`` in the one form (see the module docstring); a ``TypeError`` starting
    with ``where`` (the verb) for anything else or for a dict with non-string keys."""
    if isinstance(example_inputs, ExampleInputs):
        return example_inputs
    if isinstance(example_inputs, Tensor):
        return ExampleInputs((example_inputs,))
    if isinstance(example_inputs, (tuple, list)):
        return ExampleInputs(tuple(example_inputs))
    if isinstance(example_inputs, Mapping):
        bad = [k for k in example_inputs if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: the keys of a dict of example_inputs are the forward's "
                            f"argument names (strings), got {bad[0]!r}")
        return ExampleInputs(kwargs=dict(example_inputs))
    raise TypeError(f"{where}: example_inputs must be {FORMS}, "
                    f"got {type(example_inputs).__name__}")


def model_failed(where: str, model: nn.Module, inputs: ExampleInputs, exc: BaseException,
                 at: str = "") -> ValueError:
    """The one error for a model that fails on its example inputs: names the verb, the model,
    the inputs' shapes, where it failed (``at``) and the original error."""
    return ValueError(f"{where}: the model ({type(model).__name__}) failed on example_inputs "
                      f"({inputs.describe()}){at}: {type(exc).__name__}: {exc}")


def run_example_inputs(model: nn.Module, example_inputs: Any, where: str) -> Any:
    """Run ``model`` once on ``example_inputs`` without gradients and return its output; a
    ``TypeError`` for inputs of the wrong form, a ``ValueError`` (``model_failed``) when the
    model fails on them."""
    inputs = normalize_example_inputs(example_inputs, where)
    try:
        with torch.no_grad():
            return inputs.call(model)
    except Exception as exc:  # noqa: BLE001 - any model error becomes one clear message
        raise model_failed(where, model, inputs, exc) from exc
