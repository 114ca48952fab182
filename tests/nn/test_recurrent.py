"""Recurrent cells and layers on tiles: ideal tiles against torch's own modules (the oracle),
gradients, checkpoints (weights_only=True), the custom op under opcheck, and clear errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils._pytree import tree_leaves

import analog_compiler as ac

ANALOG = {nn.LSTM: ac.AnalogLSTM, nn.GRU: ac.AnalogGRU, nn.RNN: ac.AnalogElmanRNN}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def ideal() -> ac.FloatingPointRPUConfig:
    """Exact tiles, small enough that every matrix spans several tiles."""
    return ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=5,
                                                                 max_output_size=7))


def close(a, b, tol: float = 1e-5) -> None:
    for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def set_linear(layer: ac.AnalogLinear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    layer.set_weights(weight.detach(), None if bias is None else bias.detach())


# ---------------------------------------------------------------- cells
@pytest.mark.parametrize("kind", ["lstm", "gru", "tanh", "relu"])
def test_cells_match_torch_cells(kind):
    torch_cell, cell = {
        "lstm": (nn.LSTMCell(6, 8), ac.AnalogLSTMCell(6, 8, True, ideal())),
        "gru": (nn.GRUCell(6, 8), ac.AnalogGRUCell(6, 8, True, ideal())),
        "tanh": (nn.RNNCell(6, 8), ac.AnalogVanillaRNNCell(6, 8, True, ideal())),
        "relu": (nn.RNNCell(6, 8, nonlinearity="relu"),
                 ac.AnalogVanillaRNNCell(6, 8, True, ideal(), nonlinearity="relu")),
    }[kind]
    set_linear(cell.weight_ih, torch_cell.weight_ih, torch_cell.bias_ih)
    set_linear(cell.weight_hh, torch_cell.weight_hh, torch_cell.bias_hh)
    x, h = torch.randn(3, 6), torch.randn(3, 8)
    if kind == "lstm":
        c = torch.randn(3, 8)
        out, state = cell(x, (h, c))
        want = torch_cell(x, (h, c))
        close(out, want[0])
        close(tuple(state), want)
        assert state.hx is out and cell.get_zero_state(2).cx.shape == (2, 8)
    else:
        out, state = cell(x, h)
        close(out, torch_cell(x, h))
        assert state is out and cell.get_zero_state(2).shape == (2, 8)


def test_combined_weight_cell_holds_one_array():
    ref = nn.LSTMCell(4, 6)
    cell = ac.AnalogLSTMCellCombinedWeight(4, 6, True, ideal())
    assert [n for n, _ in cell.named_analog_layers()] == ["weight"]
    assert cell.weight.get_weights()[0].shape == (24, 10)
    set_linear(cell.weight, torch.cat([ref.weight_ih, ref.weight_hh], 1),
               ref.bias_ih + ref.bias_hh)
    x, h, c = torch.randn(2, 4), torch.randn(2, 6), torch.randn(2, 6)
    out, state = cell(x, (h, c))
    close(tuple(state), ref(x, (h, c)))


# ---------------------------------------------------------------- aihwkit's AnalogRNN
def copy_into_aihwkit_rnn(rnn: ac.AnalogRNN, digital: nn.RNNBase) -> None:
    for k, layer in enumerate(rnn.rnn.layers):
        dirs = layer.directions if rnn.bidir else [layer]
        for d, direction in enumerate(dirs):
            sfx = f"l{k}" + ("_reverse" if d else "")
            cell = direction.cell
            if isinstance(cell, ac.AnalogLSTMCellCombinedWeight):
                set_linear(cell.weight, torch.cat([getattr(digital, f"weight_ih_{sfx}"),
                                                   getattr(digital, f"weight_hh_{sfx}")], 1),
                           getattr(digital, f"bias_ih_{sfx}") + getattr(digital, f"bias_hh_{sfx}"))
                continue
            for m in ("ih", "hh"):
                set_linear(getattr(cell, f"weight_{m}"), getattr(digital, f"weight_{m}_{sfx}"),
                           getattr(digital, f"bias_{m}_{sfx}"))


@pytest.mark.parametrize("cell,digital_cls", [
    (ac.AnalogLSTMCell, nn.LSTM), (ac.AnalogLSTMCellCombinedWeight, nn.LSTM),
    (ac.AnalogGRUCell, nn.GRU), (ac.AnalogVanillaRNNCell, nn.RNN)])
@pytest.mark.parametrize("bidir", [False, True])
def test_aihwkit_rnn_matches_torch(cell, digital_cls, bidir):
    rnn = ac.AnalogRNN(cell, 5, 6, rpu_config=ideal(), num_layers=2, bidir=bidir)
    digital = digital_cls(5, 6, num_layers=2, bidirectional=bidir)
    copy_into_aihwkit_rnn(rnn, digital)
    x = torch.randn(4, 3, 5)  # [T, batch, features]: sequence first, as aihwkit
    out, states = rnn(x)
    want, hn = digital(x)
    close(out, want)
    assert len(states) == 2
    flat = [s for layer in states for s in (layer if bidir else [layer])]
    if digital_cls is nn.LSTM:
        close(torch.stack([s.hx for s in flat]), hn[0])
        close(torch.stack([s.cx for s in flat]), hn[1])
    else:
        close(torch.stack(flat), hn)
    if not bidir:  # explicit states continue the sequence: two halves = the whole
        first, mid = rnn(x[:2])
        second, _ = rnn(x[2:], mid)
        close(torch.cat([first, second]), out)


def test_aihwkit_rnn_names_init_and_errors():
    rnn = ac.AnalogRNN(ac.AnalogLSTMCell, 4, 8, num_layers=2, bidir=True)
    names = [n for n, _ in rnn.named_analog_layers()]
    assert names[0] == "rnn.layers.0.directions.0.cell.weight_ih"
    assert len(names) == 8 and rnn.analog_tile_count() == 8
    bound = 1 / 8 ** 0.5
    assert all(layer.get_weights()[0].abs().max() <= bound for layer in rnn.analog_layers())
    xav = ac.AnalogRNN(ac.AnalogGRUCell, 4, 8, xavier=True)
    assert all(not layer.get_weights()[1].any() for layer in xav.analog_layers())  # zero bias
    with pytest.raises(TypeError, match="AnalogRNN: cell must be one of"):
        ac.AnalogRNN(nn.LSTMCell, 4, 8)
    with pytest.raises(ValueError, match="num_layers"):
        ac.AnalogRNN(ac.AnalogLSTMCell, 4, 8, num_layers=0)
    with pytest.raises(ValueError, match=r"sequence first"):
        rnn(torch.randn(3, 4))
    with pytest.raises(ValueError, match="one state per layer"):
        rnn(torch.randn(3, 2, 4), [rnn.get_zero_state(2)[0]])
    with pytest.warns(UserWarning, match="dropout"):
        ac.AnalogRNN(ac.AnalogLSTMCell, 4, 8, dropout=0.5)


# ---------------------------------------------------------------- torch-signature layers
CASES = [
    (nn.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True)),
    (nn.LSTM, dict(num_layers=2, proj_size=3)),
    (nn.LSTM, dict(bias=False)),
    (nn.GRU, dict(num_layers=3, batch_first=True)),
    (nn.GRU, dict(bidirectional=True)),
    (nn.RNN, dict(num_layers=2, nonlinearity="relu", bidirectional=True)),
    (nn.RNN, dict()),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("digital_cls,kw", CASES)
def test_from_digital_reproduces_torch(digital_cls, kw):
    digital = digital_cls(5, 6, **kw)
    analog = ANALOG[digital_cls].from_digital(digital, ideal())
    bf = kw.get("batch_first", False)
    x = torch.randn(3, 4, 5) if bf else torch.randn(4, 3, 5)
    close(analog(x), digital(x))
    # given initial states
    _, hn = digital(x)
    hx = tuple(t.clone().normal_() for t in hn) if digital_cls is nn.LSTM else hn.clone().normal_()
    close(analog(x, hx), digital(x, hx))
    # unbatched input [T, features]
    close(analog(x[0] if bf else x[:, 0]), digital(x[0] if bf else x[:, 0]))
    back = type(analog).to_digital(analog)
    assert type(back) is digital_cls
    for key, value in digital.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value)


@pytest.mark.parametrize("digital_cls", [nn.LSTM, nn.GRU])
def test_packed_sequences(digital_cls):
    digital = digital_cls(5, 6, num_layers=2, bidirectional=True)
    analog = ANALOG[digital_cls].from_digital(digital, ideal())
    x = torch.randn(6, 4, 5)
    lengths = torch.tensor([3, 6, 1, 4])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_a, h_a = analog(packed)
    out_d, h_d = digital(packed)
    torch.testing.assert_close(out_a.batch_sizes, out_d.batch_sizes)
    torch.testing.assert_close(out_a.unsorted_indices, out_d.unsorted_indices)
    close(out_a.data, out_d.data)
    close(h_a, h_d)
    padded, lens = pad_packed_sequence(out_a)
    assert lens.tolist() == lengths.tolist() and not padded[3:, 0].any()


def test_gradients_match_torch():
    digital = nn.LSTM(5, 6, num_layers=2, bidirectional=True)
    analog = ac.AnalogLSTM.from_digital(digital, ideal())
    x = torch.randn(4, 3, 5)
    xa, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, (h_a, c_a) = analog(xa)
    out_d, (h_d, c_d) = digital(xd)
    g = torch.randn_like(out_a)
    ((out_a * g).sum() + h_a.square().sum() + c_a.sum()).backward()
    ((out_d * g).sum() + h_d.square().sum() + c_d.sum()).backward()
    close(xa.grad, xd.grad, 1e-4)
    for name, layer in analog.named_analog_layers():
        torch_name = analog.digital_parameter_name(name)
        arr = layer.analog_module
        close(arr.weight.grad[0], getattr(digital, torch_name).grad, 1e-4)
        close(arr.bias.grad, getattr(digital, torch_name.replace("weight", "bias")).grad, 1e-4)


def test_training_mode_dropout_and_hwa_noise_train():
    analog = ac.AnalogGRU(4, 6, num_layers=2, dropout=0.5, rpu_config=ac.InferenceRPUConfig())
    x = torch.randn(5, 2, 4)
    opt = torch.optim.SGD(analog.parameters(), lr=0.1)
    loss = analog(x)[0].square().mean()
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in analog.parameters())
    analog.eval()
    torch.manual_seed(1)
    a = analog(x)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(analog(x)[0], a)  # reproducible per seed


def test_checkpoint_weights_only_roundtrip():
    analog = ac.AnalogLSTM(5, 6, num_layers=2, bidirectional=True,
                           rpu_config=ac.InferenceRPUConfig()).eval()
    analog.drift_analog_weights(3600.0)
    buffer = io.BytesIO()
    torch.save(analog.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert "cells.l1_reverse.weight_hh.analog_module.weight" in state
    fresh = ac.AnalogLSTM(5, 6, num_layers=2, bidirectional=True).eval()
    fresh.load_state_dict(state)
    x = torch.randn(4, 2, 5)
    torch.manual_seed(5)
    want = analog(x)
    torch.manual_seed(5)
    close(fresh(x), want, 0)


def test_tile_op_passes_opcheck_as_the_recurrent_layers_call_it(monkeypatch):
    calls = []
    real = torch.ops.analog.tile_forward

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.ops.analog, "tile_forward", spy)
    cfg = ac.InferenceRPUConfig(mapping=ac.MappingParameter(max_input_size=8,
                                                            max_output_size=16))
    cfg.forward.out_noise = 0.06
    analog = ac.AnalogLSTM(6, 10, rpu_config=cfg)
    analog(torch.randn(3, 2, 6, requires_grad=True))[0].sum().backward()
    # one whole-sequence call of the input matrix, one hidden-matrix call per step
    assert [args[0].shape[0] for args, _ in calls] == [6, 2, 2, 2]
    monkeypatch.undo()
    for args, kwargs in calls[:2]:
        x = args[0].detach().requires_grad_()
        torch.library.opcheck(torch.ops.analog.tile_forward.default, (x, *args[1:]), kwargs)


def test_errors_name_the_layer_and_field():
    lstm = ac.AnalogLSTM(5, 6, num_layers=2)
    with pytest.raises(ValueError, match="AnalogLSTM: input has 4 features, expected 5"):
        lstm(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match=r"AnalogLSTM: h_0 must have shape \[2, 2, 6\]"):
        lstm(torch.randn(3, 2, 5), (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6)))
    with pytest.raises(ValueError, match=r"hx must be a tuple"):
        lstm(torch.randn(3, 2, 5), torch.zeros(2, 2, 6))
    with pytest.raises(ValueError, match="AnalogLSTM: hidden_size must be an integer >= 1"):
        ac.AnalogLSTM(5, 0)
    with pytest.raises(TypeError, match="AnalogGRU: batch_first must be a bool"):
        ac.AnalogGRU(5, 6, batch_first="yes")
    with pytest.raises(ValueError, match="AnalogGRU: num_layers"):
        ac.AnalogGRU(5, 6, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        ac.AnalogGRU(5, 6, dropout=2.0)
    with pytest.raises(ValueError, match="proj_size"):
        ac.AnalogLSTM(5, 6, proj_size=6)
    with pytest.raises(ValueError, match="nonlinearity"):
        ac.AnalogElmanRNN(5, 6, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        ac.AnalogLSTMCell(5, 0, True)
    with pytest.raises(TypeError, match="from_digital expects an LSTM"):
        ac.AnalogLSTM.from_digital(nn.GRU(2, 2))
    with pytest.raises(ValueError, match="AnalogGRUCell: input must be"):
        ac.AnalogGRUCell(3, 4, True)(torch.randn(2, 5), torch.zeros(2, 4))
