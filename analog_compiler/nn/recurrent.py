"""``AnalogRNN``: aihwkit 1.2.0's modular recurrent network on analog tiles, and the time loop
that every recurrent layer of this package shares (``run_cell``).

The module tree mirrors aihwkit's (``rnn.layers.<k>.cell.weight_ih`` or, bidirectional,
``rnn.layers.<k>.directions.<0|1>.cell.weight_ih``), so checkpoints name the same layers.
Inputs are sequence-first ``[T, batch, features]`` as in aihwkit; ``states`` is a list with one
entry per layer (a cell state, or ``[forward, backward]`` for a bidirectional layer).

The time loop runs the input matrix of a layer once over the whole sequence (``T x batch``
vectors in one tile call) and only the hidden matrix step by step; every vector passes the
same periphery (noise management, DAC, ADC, bound management are per input vector), so the
result is the one of stepping both, with far fewer calls.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import TileArray
from .containers import AnalogContainerMixin
from .linear import AnalogLinear
from .recurrent_cells import CELLS, AnalogRNNCellBase, LSTMState, RPUConfig


def _where_live(live: Tensor, new: Any, old: Any) -> Any:
    """``new`` where ``live`` (``[batch, 1]``), else ``old`` (tensors or tuples of them)."""
    if isinstance(new, tuple):
        return type(new)(*(_where_live(live, n, o) for n, o in zip(new, old)))
    return torch.where(live, new, old)


def run_cell(cell: AnalogRNNCellBase, x: Tensor, state: Any, reverse: bool = False,
             lengths: Tensor | None = None) -> tuple[Tensor, Any]:
    """Run ``cell`` over ``x`` ``[T, batch, features]`` from ``state``; returns the outputs
    ``[T, batch, out]`` and the final state.

    ``reverse`` runs from the last step to the first (outputs stay in time order).
    ``lengths`` (``[batch]``, for padded sequences) freezes each sequence's state after its
    last step and zeroes its outputs there, so a reverse pass starts at each sequence's own
    last step, as torch's packed sequences do.
    """
    steps, batch = x.shape[0], x.shape[1]
    gates = cell.input_gates(x.reshape(steps * batch, x.shape[-1]))
    if gates is not None:
        gates = gates.reshape(steps, batch, gates.shape[-1])
    outputs: list[Tensor] = [x] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        out, new_state = cell.step(x[t], None if gates is None else gates[t], state)
        if lengths is not None:
            live = (lengths > t).unsqueeze(1)
            out = torch.where(live, out, torch.zeros_like(out))
            new_state = _where_live(live, new_state, state)
        outputs[t], state = out, new_state
    return torch.stack(outputs), state


class AnalogRNNLayer(nn.Module):
    """One direction of one layer: the cell run forward in time (aihwkit's name)."""

    REVERSE = False

    def __init__(self, cell: type[AnalogRNNCellBase], *cell_args: Any) -> None:
        super().__init__()
        self.cell = cell(*cell_args)

    def get_zero_state(self, batch_size: int) -> Any:
        """The cell's zero state."""
        return self.cell.get_zero_state(batch_size)

    def forward(self, input_: Tensor, state: Any) -> tuple[Tensor, Any]:
        """``[T, batch, features]`` and a state -> stacked outputs and the final state."""
        return run_cell(self.cell, input_, _as_state(self.cell, state), self.REVERSE)


class AnalogReverseRNNLayer(AnalogRNNLayer):
    """One layer run backward in time (outputs in time order; aihwkit's name)."""

    REVERSE = True


class AnalogBidirRNNLayer(nn.Module):
    """Both directions of one layer; outputs concatenated on the feature axis."""

    def __init__(self, cell: type[AnalogRNNCellBase], *cell_args: Any) -> None:
        super().__init__()
        self.directions = nn.ModuleList([AnalogRNNLayer(cell, *cell_args),
                                         AnalogReverseRNNLayer(cell, *cell_args)])

    def get_zero_state(self, batch_size: int) -> list[Any]:
        """``[forward state, backward state]``."""
        return [d.get_zero_state(batch_size) for d in self.directions]

    def forward(self, input_: Tensor, states: list[Any]) -> tuple[Tensor, list[Any]]:
        """Both directions over ``input_``: outputs concatenated, states as a list."""
        outputs, out_states = [], []
        for direction, state in zip(self.directions, states):
            out, out_state = direction(input_, state)
            outputs.append(out)
            out_states.append(out_state)
        return torch.cat(outputs, -1), out_states


def _as_state(cell: AnalogRNNCellBase, state: Any) -> Any:
    """An LSTM cell's ``(h, c)`` pair as an ``LSTMState``; other states as they are."""
    return LSTMState(*state) if cell.HAS_CELL_STATE else state


class ModularRNN(nn.Module):
    """``num_layers`` stacked layers with dropout between them (aihwkit's ``ModularRNN``)."""

    def __init__(self, num_layers: int, layer: type[nn.Module], dropout: float,
                 first_layer_args: list[Any], other_layer_args: list[Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([layer(*first_layer_args)] + [
            layer(*other_layer_args) for _ in range(num_layers - 1)])
        self.num_layers = num_layers
        if num_layers == 1 and dropout > 0:
            warnings.warn("AnalogRNN: dropout is applied after every layer but the last; with "
                          "num_layers = 1 it does nothing", UserWarning, stacklevel=3)
        self.dropout_layer = nn.Dropout(dropout) if dropout > 0.0 else None

    def get_zero_state(self, batch_size: int) -> list[Any]:
        """One zero state per layer."""
        return [layer.get_zero_state(batch_size) for layer in self.layers]

    def forward(self, input: Tensor, states: list[Any]) -> tuple[Tensor, list[Any]]:  # noqa: A002
        """Every layer in turn; returns the last layer's outputs and every layer's state."""
        output, out_states = input, []
        for i, layer in enumerate(self.layers):
            output, state = layer(output, states[i])
            if i < self.num_layers - 1 and self.dropout_layer is not None:
                output = self.dropout_layer(output)
            out_states.append(state)
        return output, out_states


class AnalogRNN(AnalogContainerMixin, nn.Module):
    """Modular recurrent network on analog tiles (aihwkit 1.2.0's ``AnalogRNN``).

    Args:
        cell: the cell class: ``AnalogLSTMCell``, ``AnalogLSTMCellCombinedWeight``,
            ``AnalogGRUCell`` or ``AnalogVanillaRNNCell``.
        input_size: features of the input (``in_features`` of the first layer's input matrix).
        hidden_size: features of the hidden state.
        bias: a digital bias on every matrix.
        rpu_config: the tile config of every matrix (``None``: the default
            ``InferenceRPUConfig``).
        tile_module_class: the ``TileArray`` subclass the matrices use.
        xavier: Xavier-uniform weights and zero biases instead of torch's
            ``U(-1/sqrt(hidden), 1/sqrt(hidden))`` initialisation.
        num_layers: stacked layers.
        bidir: bidirectional layers (outputs ``2 * hidden_size`` features).
        dropout: dropout on the outputs of every layer but the last (training mode).

    ``forward(input, states=None)``: ``input`` ``[T, batch, input_size]``; returns
    ``(output [T, batch, D * hidden_size], states)`` with one state per layer.
    ``convert`` maps ``nn.LSTM``/``nn.GRU``/``nn.RNN`` onto ``AnalogLSTM``/``AnalogGRU``/
    ``AnalogElmanRNN`` instead, which keep torch's call signature.
    """

    def __init__(self, cell: type[AnalogRNNCellBase], input_size: int, hidden_size: int,
                 bias: bool = True, rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, xavier: bool = False,
                 num_layers: int = 1, bidir: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(cell, type) and issubclass(cell, AnalogRNNCellBase)):
            names = ", ".join(c.__name__ for c in CELLS)
            raise TypeError(f"AnalogRNN: cell must be one of {names} (a class), got {cell!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"AnalogRNN: num_layers must be an integer >= 1, got {num_layers!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"AnalogRNN: dropout must be in [0, 1], got {dropout!r}")
        layer, dirs = (AnalogBidirRNNLayer, 2) if bidir else (AnalogRNNLayer, 1)
        tail = [bias, rpu_config, tile_module_class]
        self.rnn = ModularRNN(num_layers, layer, float(dropout),
                              [cell, input_size, hidden_size, *tail],
                              [cell, dirs * hidden_size, hidden_size, *tail])
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bidir = num_layers, bidir
        self.reset_parameters(xavier)

    @torch.no_grad()
    def init_layers(self, weight_init_fn: Callable[[Tensor], Any],
                    bias_init_fn: Callable[[Tensor], Any] | None = None) -> None:
        """Initialise every matrix in place with ``weight_init_fn`` (and its bias with
        ``bias_init_fn``, default ``weight_init_fn``); digital ``nn.Linear`` layers too."""
        for module in self.modules():
            if isinstance(module, AnalogLinear):
                weight, bias = module.get_target_weights()
                weight_init_fn(weight)
                if bias is not None:
                    (bias_init_fn or weight_init_fn)(bias)
                module.set_weights(weight, bias, force_exact=True)
            elif isinstance(module, nn.Linear):
                weight_init_fn(module.weight)
                if module.bias is not None:
                    (bias_init_fn or weight_init_fn)(module.bias)

    def reset_parameters(self, xavier: bool = False) -> None:
        """torch's recurrent initialisation, or Xavier-uniform weights and zero biases."""
        if xavier:
            self.init_layers(nn.init.xavier_uniform_, nn.init.zeros_)
        else:
            std = 1.0 / math.sqrt(self.hidden_size)
            self.init_layers(lambda t: t.uniform_(-std, std))

    def get_zero_state(self, batch_size: int) -> list[Any]:
        """One zero state per layer (``[forward, backward]`` for bidirectional layers)."""
        return self.rnn.get_zero_state(batch_size)

    def forward(self, input: Tensor,  # noqa: A002 - aihwkit's argument name
                states: list[Any] | None = None) -> tuple[Tensor, list[Any]]:
        """``input`` ``[T, batch, input_size]`` -> ``(output, states)``."""
        if input.dim() != 3 or input.shape[-1] != self.input_size:
            raise ValueError(f"AnalogRNN: input must be [T, batch, {self.input_size}] "
                             f"(sequence first), got {list(input.shape)}")
        if states is None:
            states = self.get_zero_state(input.shape[1])
        elif len(states) != self.num_layers:
            raise ValueError(f"AnalogRNN: states must hold one state per layer "
                             f"({self.num_layers}), got {len(states)}")
        return self.rnn(input, states)

    def sequence_shape(self, input: Tensor, *_: Any) -> tuple[int, int]:  # noqa: A002
        """``(time steps, sequences)`` of a forward on ``input`` (for the report)."""
        return int(input.shape[0]), int(input.shape[1])
