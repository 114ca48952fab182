"""``AnalogLSTM``, ``AnalogGRU``, ``AnalogElmanRNN``: ``nn.LSTM``/``nn.GRU``/``nn.RNN`` on tiles
with torch's constructor, call signature and results (what ``convert`` puts in their place).

``forward(input, hx=None)`` takes ``[T, batch, features]`` (``[batch, T, features]`` with
``batch_first``), an unbatched ``[T, features]`` or a ``PackedSequence``, and returns
``(output, h_n)`` (``(output, (h_n, c_n))`` for the LSTM) shaped as torch's. Every matrix is an
``AnalogLinear`` inside one cell per layer and direction, stored as ``cells.l<k>`` and
``cells.l<k>_reverse`` (torch's parameter suffixes): ``weight_ih_l1_reverse`` of the digital
module lives in ``cells.l1_reverse.weight_ih``, ``bias_hh_l0`` is the bias of
``cells.l0.weight_hh`` and ``weight_hr_l0`` (``proj_size > 0``) is ``cells.l0.weight_hr``.

Dropout between layers (training mode) draws its own masks, so a training-mode forward with
dropout matches torch's in distribution, not value by value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..runtime import TileArray
from .base import AnalogLayerBase
from .containers import AnalogContainerMixin
from .recurrent import run_cell
from .recurrent_cells import (
    AnalogGRUCell,
    AnalogLSTMCell,
    AnalogRNNCellBase,
    AnalogVanillaRNNCell,
    LSTMState,
    RPUConfig,
    check_size,
)

LinearFn = Callable[[nn.Module], nn.Module]


class AnalogRecurrentBase(AnalogContainerMixin, nn.Module):
    """The shared implementation of ``AnalogLSTM``, ``AnalogGRU`` and ``AnalogElmanRNN``."""

    DIGITAL: type[nn.RNNBase] = nn.RNNBase
    """The digital class this layer stands for (``from_digital``/``to_digital``)."""
    CELL: type[AnalogRNNCellBase] = AnalogRNNCellBase

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, *, proj_size: int = 0,
                 nonlinearity: str = "tanh", device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        check_size(name, "input_size", input_size)
        check_size(name, "hidden_size", hidden_size)
        for field, value in (("bias", bias), ("batch_first", batch_first),
                             ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: {field} must be a bool, got {value!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be an integer >= 1, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        self.nonlinearity = nonlinearity
        dirs = 2 if bidirectional else 1
        extra: dict[str, Any] = {}
        if proj_size:
            extra["proj_size"] = proj_size
        if nonlinearity != "tanh":
            extra["nonlinearity"] = nonlinearity
        self.cells = nn.ModuleDict()
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else dirs * (proj_size or hidden_size)
            for suffix in self._suffixes(layer):
                self.cells[suffix] = self.CELL(n_in, hidden_size, bias, rpu_config,
                                               tile_module_class, **extra)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def _suffixes(self, layer: int) -> list[str]:
        return [f"l{layer}"] + ([f"l{layer}_reverse"] if self.bidirectional else [])

    @property
    def _out_size(self) -> int:
        return self.proj_size or self.hidden_size

    # ------------------------------------------------------------ forward
    def _initial_state(self, hx: Any, batch: int, batched: bool, ref: Tensor) -> list[Any]:
        """One cell state per (layer, direction), from ``hx`` or zeros."""
        n = self.num_layers * (2 if self.bidirectional else 1)
        name = type(self).__name__
        lstm = self.CELL.HAS_CELL_STATE
        if hx is None:
            h = ref.new_zeros(n, batch, self._out_size)
            parts = [h, ref.new_zeros(n, batch, self.hidden_size)] if lstm else [h]
        else:
            if lstm and (not isinstance(hx, tuple | list) or len(hx) != 2):
                raise ValueError(f"{name}: hx must be a tuple (h_0, c_0), got "
                                 f"{type(hx).__name__}")
            parts = list(hx) if lstm else [hx]
            sizes = [self._out_size, self.hidden_size][:len(parts)]
            for k, (t, size) in enumerate(zip(parts, sizes)):
                want = [n, batch, size] if batched else [n, size]
                if not isinstance(t, Tensor) or list(t.shape) != want:
                    got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
                    raise ValueError(f"{name}: {('h_0', 'c_0')[k]} must have shape {want}, "
                                     f"got {got}")
            if not batched:
                parts = [t.unsqueeze(1) for t in parts]
        if lstm:
            return [LSTMState(parts[0][k], parts[1][k]) for k in range(n)]
        return [parts[0][k] for k in range(n)]

    def forward(self, input: Tensor | PackedSequence,  # noqa: A002 - torch's argument name
                hx: Any = None) -> tuple[Tensor | PackedSequence, Any]:
        """As ``nn.LSTM``/``nn.GRU``/``nn.RNN``: returns ``(output, h_n)`` or, for the LSTM,
        ``(output, (h_n, c_n))``."""
        name = type(self).__name__
        lengths = None
        if isinstance(input, PackedSequence):
            x, lengths = pad_packed_sequence(input)
            lengths = lengths.to(x.device)
            batched = True
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                raise ValueError(f"{name}: input must be a 2-D (unbatched) or 3-D tensor or a "
                                 f"PackedSequence, got {getattr(input, 'shape', type(input))}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[-1]} features, expected "
                             f"{self.input_size}")
        states = self._initial_state(hx, x.shape[1], batched, x)
        finals: list[Any] = []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = len(finals)
                out, state = run_cell(self.cells[suffix], x, states[k], d == 1, lengths)
                outputs.append(out)
                finals.append(state)
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        if self.CELL.HAS_CELL_STATE:
            h_n = torch.stack([s.hx for s in finals])
            c_n = torch.stack([s.cx for s in finals])
            h_n, c_n = (h_n, c_n) if batched else (h_n.squeeze(1), c_n.squeeze(1))
            state_out: Any = (h_n, c_n)
        else:
            h_n = torch.stack(finals)
            state_out = h_n if batched else h_n.squeeze(1)
        if lengths is not None:
            return _repack(x, lengths, input), state_out
        if not batched:
            return x.squeeze(1), state_out
        return (x.transpose(0, 1) if self.batch_first else x), state_out

    def digital_parameter_name(self, layer_name: str) -> str:
        """The digital module's weight name of the analog layer ``layer_name``
        (``cells.l1_reverse.weight_ih`` -> ``weight_ih_l1_reverse``)."""
        _, suffix, matrix = layer_name.split(".")
        return f"{matrix}_{suffix}"

    def sequence_shape(self, input: Any, *_: Any) -> tuple[int, int]:  # noqa: A002
        """``(time steps, sequences)`` of a forward on ``input`` (for the report)."""
        if isinstance(input, PackedSequence):
            return len(input.batch_sizes), int(input.batch_sizes[0])
        if input.dim() == 2:
            return int(input.shape[0]), 1
        t_axis = 1 if self.batch_first else 0
        return int(input.shape[t_axis]), int(input.shape[1 - t_axis])

    # ------------------------------------------------------------ digital twin
    def _digital_kwargs(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "dropout": self.dropout,
                "bidirectional": self.bidirectional}

    def digital_twin(self, linear_fn: LinearFn) -> nn.RNNBase:
        """The digital module (``nn.LSTM``/``nn.GRU``/``nn.RNN``) whose matrices are
        ``linear_fn(layer)`` of each of this module's ``AnalogLinear`` layers (an ``nn.Linear``
        with the weights to use; digital layers are passed as they are)."""
        ref = next(self.parameters())
        with torch.random.fork_rng(devices=[]):  # the template's init must not touch the RNG
            digital = self.DIGITAL(self.input_size, self.hidden_size, **self._digital_kwargs(),
                                   device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for suffix, cell in self.cells.items():
                for matrix in ("ih", "hh", "hr"):
                    layer = getattr(cell, f"weight_{matrix}", None)
                    if layer is None:
                        continue
                    linear = linear_fn(layer) if isinstance(layer, AnalogLayerBase) else layer
                    getattr(digital, f"weight_{matrix}_{suffix}").copy_(linear.weight)
                    if matrix != "hr" and self.bias:
                        getattr(digital, f"bias_{matrix}_{suffix}").copy_(linear.bias)
        return digital.train(self.training)

    @classmethod
    def to_digital(cls, module: AnalogRecurrentBase, realistic: bool = False) -> nn.RNNBase:
        """The digital module with the exact target weights, or with ``realistic`` the chip's
        current weights with every digital output scale folded in."""
        if not isinstance(module, AnalogRecurrentBase):
            raise TypeError(f"{cls.__name__}.to_digital expects an analog recurrent layer, got "
                            f"{type(module).__name__}")
        return module.digital_twin(lambda layer: type(layer).to_digital(layer, realistic))

    @classmethod
    def from_digital(cls, module: nn.RNNBase, rpu_config: RPUConfig | None = None,
                     tile_module_class: type[TileArray] | None = None) -> AnalogRecurrentBase:
        """The analog layer with ``module``'s configuration, weights and biases."""
        if not isinstance(module, cls.DIGITAL):
            raise TypeError(f"{cls.__name__}.from_digital expects an {cls.DIGITAL.__name__}, "
                            f"got {type(module).__name__}")
        extra: dict[str, Any] = {}
        if getattr(module, "proj_size", 0):
            extra["proj_size"] = module.proj_size
        if isinstance(module, nn.RNN):
            extra["nonlinearity"] = module.nonlinearity
        ref = module.weight_ih_l0
        layer = cls(module.input_size, module.hidden_size, num_layers=module.num_layers,
                    bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                    bidirectional=module.bidirectional, rpu_config=rpu_config,
                    tile_module_class=tile_module_class, device=ref.device, dtype=ref.dtype,
                    **extra)
        for suffix, cell in layer.cells.items():
            for matrix in ("ih", "hh", "hr"):
                target = getattr(cell, f"weight_{matrix}", None)
                if target is None:
                    continue
                bias = getattr(module, f"bias_{matrix}_{suffix}", None) if module.bias else None
                target.set_weights(getattr(module, f"weight_{matrix}_{suffix}").detach(),
                                   None if bias is None else bias.detach(), force_exact=True)
        return layer.train(module.training)

    def extra_repr(self) -> str:
        """torch's ``repr`` arguments (the non-default ones)."""
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for field, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                               ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, field) != default:
                text += f", {field}={getattr(self, field)}"
        return text


def _repack(padded: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """``padded`` ``[T, batch, F]`` (original batch order) as a PackedSequence with ``like``'s
    ordering."""
    order = like.sorted_indices
    if order is not None:
        padded, lengths = padded.index_select(1, order), lengths.index_select(0, order)
    packed = pack_padded_sequence(padded, lengths.cpu(), enforce_sorted=True)
    return PackedSequence(packed.data, packed.batch_sizes, like.sorted_indices,
                          like.unsorted_indices)


class AnalogLSTM(AnalogRecurrentBase):
    """``nn.LSTM`` on analog tiles (torch's arguments plus ``rpu_config`` and
    ``tile_module_class``; ``proj_size`` puts the projection on its own tiles)."""

    DIGITAL = nn.LSTM
    CELL = AnalogLSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, *, proj_size: int = 0,
                 device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rpu_config, tile_module_class, proj_size=proj_size,
                         device=device, dtype=dtype)

    def _digital_kwargs(self) -> dict[str, Any]:
        return {**super()._digital_kwargs(), "proj_size": self.proj_size}


class AnalogGRU(AnalogRecurrentBase):
    """``nn.GRU`` on analog tiles (torch's arguments plus ``rpu_config`` and
    ``tile_module_class``)."""

    DIGITAL = nn.GRU
    CELL = AnalogGRUCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, *, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rpu_config, tile_module_class, device=device,
                         dtype=dtype)


class AnalogElmanRNN(AnalogRecurrentBase):
    """``nn.RNN`` (the Elman RNN, ``tanh`` or ``relu``) on analog tiles (torch's arguments plus
    ``rpu_config`` and ``tile_module_class``)."""

    DIGITAL = nn.RNN
    CELL = AnalogVanillaRNNCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False,
                 rpu_config: RPUConfig | None = None,
                 tile_module_class: type[TileArray] | None = None, *, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rpu_config, tile_module_class,
                         nonlinearity=nonlinearity, device=device, dtype=dtype)

    def _digital_kwargs(self) -> dict[str, Any]:
        return {**super()._digital_kwargs(), "nonlinearity": self.nonlinearity}


RECURRENT_LAYERS = (AnalogLSTM, AnalogGRU, AnalogElmanRNN)
