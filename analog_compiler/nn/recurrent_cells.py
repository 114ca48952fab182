"""Analog recurrent cells with aihwkit 1.2.0's names and constructor arguments.

Each cell keeps its matrices in ``AnalogLinear`` layers (so programming, drift, the report,
``to_digital`` and the ONNX export see ordinary analog layers):

==============================  ==========================================================
cell                            tile arrays (torch names of the digital twin)
==============================  ==========================================================
``AnalogVanillaRNNCell``        ``weight_ih`` [H, I], ``weight_hh`` [H, H]
``AnalogLSTMCell``              ``weight_ih`` [4H, I], ``weight_hh`` [4H, H (P)],
                                ``weight_hr`` [P, H] with ``proj_size`` P > 0
``AnalogLSTMCellCombinedWeight``  ``weight`` [4H, I + H]: input and hidden on one array
``AnalogGRUCell``               ``weight_ih`` [3H, I], ``weight_hh`` [3H, H]
==============================  ==========================================================

Gate order and formulas are torch's (``nn.LSTM``: i, f, g, o; ``nn.GRU``: r, z, n with the
hidden bias inside the reset product), which are also aihwkit's. ``forward(input, state)``
returns ``(output, new_state)`` as in aihwkit (``(h, (h, c))`` for the LSTM cells, ``(h, h)``
for the others). The layers split a step into ``input_gates`` (the input matrix, which the
layers run once for a whole sequence: every input vector still passes the full periphery)
and ``step`` (the hidden matrix and the gate arithmetic).

Difference to aihwkit: ``rpu_config=None`` gives the default ``InferenceRPUConfig`` (as every
layer of this package), where aihwkit builds digital ``nn.Linear`` layers for the LSTM and
vanilla cells.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import FloatingPointRPUConfig, InferenceRPUConfig, TileArray
from .containers import AnalogContainerMixin
from .linear import AnalogLinear

LSTMState = namedtuple("LSTMState", ["hx", "cx"])
"""The state of an LSTM cell: hidden ``hx`` and cell ``cx`` (aihwkit's name)."""

RPUConfig = InferenceRPUConfig | FloatingPointRPUConfig


def check_size(cell: str, field: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an integer >= ``minimum``, else a ``ValueError`` naming ``cell.field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{cell}: {field} must be an integer >= {minimum}, got {value!r}")
    return value


class AnalogRNNCellBase(AnalogContainerMixin, nn.Module):
    """What the recurrent layers need of a cell: ``input_gates``, ``step``, ``get_zero_state``.

    Subclasses set ``GATES`` (matrix rows per hidden unit) and build their ``AnalogLinear``
    layers in ``__init__``.
    """

    GATES = 1
    #: Whether the state is an ``LSTMState`` ``(hx, cx)`` rather than one tensor.
    HAS_CELL_STATE = False

    def __init__(self, input_size: int, hidden_size: int, bias: bool,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check_size(name, "input_size", input_size)
        self.hidden_size = check_size(name, "hidden_size", hidden_size)
        if not isinstance(bias, bool):
            raise TypeError(f"{name}: bias must be a bool, got {bias!r}")
        self.bias = bias

    @property
    def state_size(self) -> int:
        """Size of the hidden state ``h`` (the output of a step)."""
        return self.hidden_size

    def _linear(self, n_in: int, n_out: int, bias: bool, rpu_config: RPUConfig | None,
                tile_module_class: type[TileArray] | None) -> AnalogLinear:
        return AnalogLinear(n_in, n_out, bias, rpu_config, tile_module_class)

    def _param(self) -> Tensor:
        return next(self.parameters())

    def get_zero_state(self, batch_size: int) -> Tensor | LSTMState:
        """A zero state for ``batch_size`` sequences."""
        p = self._param()
        h = torch.zeros(batch_size, self.state_size, device=p.device, dtype=p.dtype)
        if self.HAS_CELL_STATE:
            return LSTMState(h, torch.zeros(batch_size, self.hidden_size, device=p.device,
                                            dtype=p.dtype))
        return h

    def input_gates(self, x: Tensor) -> Tensor | None:
        """The input matrix applied to ``x`` ``[N, input_size]`` (``None`` for a cell whose
        input and hidden share one array: ``step`` then does it)."""
        return self.weight_ih(x)

    def step(self, x: Tensor, gates_x: Tensor | None,
             state: Tensor | LSTMState) -> tuple[Tensor, Tensor | LSTMState]:
        """One time step: ``(output, new_state)`` from the input ``x``, its ``input_gates`` and
        the previous state."""
        raise NotImplementedError

    def forward(self, input_: Tensor,
                state: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Any]:
        """``input_`` ``[batch, input_size]`` and the state -> ``(output, new_state)``."""
        if input_.dim() != 2 or input_.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input must be [batch, {self.input_size}], "
                             f"got {list(input_.shape)}")
        if self.HAS_CELL_STATE:
            state = LSTMState(*state)
        return self.step(input_, self.input_gates(input_), state)


class AnalogVanillaRNNCell(AnalogRNNCellBase):
    """Elman RNN cell on tiles: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` (aihwkit's
    ``AnalogVanillaRNNCell``; ``nonlinearity='relu'`` is an addition for ``nn.RNN``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None,
                 nonlinearity: str = "tanh") -> None:
        super().__init__(input_size, hidden_size, bias, rpu_config, tile_module_class)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"AnalogVanillaRNNCell: nonlinearity must be 'tanh' or 'relu', "
                             f"got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.weight_ih = self._linear(input_size, hidden_size, bias, rpu_config,
                                      tile_module_class)
        self.weight_hh = self._linear(hidden_size, hidden_size, bias, rpu_config,
                                      tile_module_class)

    def step(self, x: Tensor, gates_x: Tensor | None, state: Tensor) -> tuple[Tensor, Tensor]:
        """``h' = act(gates_x + W_hh h)``; the output is the new state."""
        pre = gates_x + self.weight_hh(state)
        out = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return out, out


class AnalogLSTMCell(AnalogRNNCellBase):
    """LSTM cell on tiles (aihwkit's ``AnalogLSTMCell``): input and hidden matrix each on its
    own array. ``proj_size > 0`` (an addition for ``nn.LSTM(proj_size=...)``) adds the
    projection ``h = W_hr (o * tanh(c))`` on a third array; the hidden state then has
    ``proj_size`` features."""

    GATES = 4
    HAS_CELL_STATE = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, proj_size: int = 0) -> None:
        super().__init__(input_size, hidden_size, bias, rpu_config, tile_module_class)
        self.proj_size = check_size("AnalogLSTMCell", "proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(f"AnalogLSTMCell: proj_size ({proj_size}) must be smaller than "
                             f"hidden_size ({hidden_size})")
        self.weight_ih = self._linear(input_size, 4 * hidden_size, bias, rpu_config,
                                      tile_module_class)
        self.weight_hh = self._linear(self.state_size, 4 * hidden_size, bias, rpu_config,
                                      tile_module_class)
        if proj_size:
            self.weight_hr = self._linear(hidden_size, proj_size, False, rpu_config,
                                          tile_module_class)

    @property
    def state_size(self) -> int:
        """``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _gates_to_state(self, gates: Tensor, c_x: Tensor) -> tuple[Tensor, LSTMState]:
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, 1)
        c_y = torch.sigmoid(forget_gate) * c_x + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
        h_y = torch.sigmoid(out_gate) * torch.tanh(c_y)
        if self.proj_size:
            h_y = self.weight_hr(h_y)
        return h_y, LSTMState(h_y, c_y)

    def step(self, x: Tensor, gates_x: Tensor | None,
             state: LSTMState) -> tuple[Tensor, LSTMState]:
        """Gates ``gates_x + W_hh h``, then the LSTM update; output ``h'``."""
        h_x, c_x = state
        return self._gates_to_state(gates_x + self.weight_hh(h_x), c_x)


class AnalogLSTMCellCombinedWeight(AnalogLSTMCell):
    """LSTM cell whose input and hidden matrices share one array ``weight`` ``[4H, I + H]``
    (aihwkit's ``AnalogLSTMCellCombinedWeight``): one tile call per step on ``[x, h]``, one
    bias (the sum of the digital ``b_ih`` and ``b_hh``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None) -> None:
        AnalogRNNCellBase.__init__(self, input_size, hidden_size, bias, rpu_config,
                                   tile_module_class)
        self.proj_size = 0
        self.weight = self._linear(input_size + hidden_size, 4 * hidden_size, bias, rpu_config,
                                   tile_module_class)

    def input_gates(self, x: Tensor) -> None:
        """``None``: the combined array sees ``[x, h]`` in ``step``."""
        return None

    def step(self, x: Tensor, gates_x: Tensor | None,
             state: LSTMState) -> tuple[Tensor, LSTMState]:
        """Gates ``W [x, h] + b``, then the LSTM update; output ``h'``."""
        h_x, c_x = state
        return self._gates_to_state(self.weight(torch.cat((x, h_x), 1)), c_x)


class AnalogGRUCell(AnalogRNNCellBase):
    """GRU cell on tiles (aihwkit's ``AnalogGRUCell``, torch's ``nn.GRU`` formulas):
    ``r, z = sigmoid(.)``, ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = n + z * (h - n)``."""

    GATES = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None) -> None:
        super().__init__(input_size, hidden_size, bias, rpu_config, tile_module_class)
        self.weight_ih = self._linear(input_size, 3 * hidden_size, bias, rpu_config,
                                      tile_module_class)
        self.weight_hh = self._linear(hidden_size, 3 * hidden_size, bias, rpu_config,
                                      tile_module_class)

    def step(self, x: Tensor, gates_x: Tensor | None, state: Tensor) -> tuple[Tensor, Tensor]:
        """The GRU update; the output is the new state."""
        i_r, i_z, i_n = gates_x.chunk(3, 1)
        h_r, h_z, h_n = self.weight_hh(state).chunk(3, 1)
        reset_gate = torch.sigmoid(i_r + h_r)
        update_gate = torch.sigmoid(i_z + h_z)
        new_gate = torch.tanh(i_n + reset_gate * h_n)
        h_y = new_gate + update_gate * (state - new_gate)
        return h_y, h_y


CELLS = (AnalogVanillaRNNCell, AnalogLSTMCell, AnalogLSTMCellCombinedWeight, AnalogGRUCell)
