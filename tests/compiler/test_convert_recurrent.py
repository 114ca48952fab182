"""``convert`` on recurrent models: nn.LSTM / nn.GRU / nn.RNN become their analog layers, the
call signature and results stay torch's, the log and the report name every matrix."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

import analog_compiler as ac


class Tagger(nn.Module):
    """A recurrent model with all three kinds, batch-first and sequence-first, bidirectional."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(12, 7)
        self.rnn = nn.RNN(7, 4, nonlinearity="relu")
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h, (h_n, c_n) = self.lstm(self.embed(x))
        g, _ = self.gru(h.transpose(0, 1))
        r, r_n = self.rnn(g)
        return self.head(r[-1]) + h_n.sum() + c_n.sum() + r_n.sum()


def test_ideal_conversion_reproduces_the_digital_model(ideal):
    model = Tagger()
    analog = ac.convert(model, ideal)
    assert type(analog.lstm) is ac.AnalogLSTM and analog.lstm.batch_first
    assert type(analog.gru) is ac.AnalogGRU and type(analog.rnn) is ac.AnalogElmanRNN
    assert analog.rnn.nonlinearity == "relu"
    x = torch.randn(3, 5, 5)
    torch.testing.assert_close(analog(x), model(x), rtol=1e-5, atol=1e-5)


def test_log_names_every_matrix_with_its_torch_parameter(ideal):
    analog = ac.convert(Tagger(), ideal)
    records = {r.name: r for r in analog.analog_conversion_log.records}
    rec = records["lstm.cells.l1_reverse.weight_hh"]
    assert (rec.status, rec.source_type) == ("analog", "LSTM.weight_hh_l1_reverse")
    assert records["gru.cells.l0.weight_ih"].source_type == "GRU.weight_ih_l0"
    assert "lstm" not in records  # the layer itself is no matrix: its matrices are
    lstm_rows = [n for n in records if n.startswith("lstm.")]
    assert len(lstm_rows) == 2 * 2 * 2  # layers x directions x (ih, hh)


def test_report_counts_per_sequence_and_per_time_step(ideal):
    analog = ac.convert(Tagger(), ideal)
    batch, steps = 3, 5
    rep = ac.report(analog, torch.randn(batch, steps, 5))
    rows = {r.name: r for r in rep.analog_rows}
    # every row counts its vectors: batch x steps for each matrix of a recurrent layer
    assert rows["lstm.cells.l0.weight_hh"].vectors == batch * steps
    assert rows["lstm.cells.l0.weight_hh"].macs == batch * steps * 24 * 6
    # per time step of one sequence, LSTM: layer 0: 2 x (24x8 + 24x6), layer 1: 2 x (24x12 + 24x6)
    per_step = 2 * (24 * 8 + 24 * 6) + 2 * (24 * 12 + 24 * 6)
    note = next(n for n in rep.notes if n.startswith("lstm (AnalogLSTM"))
    assert f"{batch} sequence(s) of {steps} time steps" in note
    assert f"per time step {per_step:,} MACs" in note
    assert f"per sequence {per_step * steps:,} MACs" in note
    tiles = sum(r.tile_count for n, r in rows.items() if n.startswith("lstm."))
    assert f"(AnalogLSTM, {tiles} tiles)" in note
    # ideal tiles of 16 inputs x 12 outputs: a 24 x 12 matrix spans 1 x 2 tiles
    assert rows["lstm.cells.l1.weight_ih"].tile_count == 2
    assert any(n.startswith("gru (AnalogGRU") for n in rep.notes)
    # without example inputs: the static work per time step
    static = next(n for n in ac.report(analog).notes if n.startswith("lstm (AnalogLSTM"))
    assert f"per time step {per_step:,} MACs" in static and "sequence" not in static


def test_policy_keeps_a_recurrent_layer_digital(ideal):
    analog = ac.convert(Tagger(), ideal, exclude=["gru"])
    assert type(analog.gru) is nn.GRU and type(analog.lstm) is ac.AnalogLSTM
    records = {r.name: r for r in analog.analog_conversion_log.records}
    assert records["gru"].status == "digital"


def test_recurrent_root_and_convert_to_analog(ideal):
    lstm = nn.LSTM(4, 5)
    analog = ac.convert_to_analog(lstm, ideal)
    assert type(analog) is ac.AnalogLSTM  # already has the container verbs
    assert analog.analog_tile_count() == 2 + 2  # 20 x 4 and 20 x 5 on 12-row tiles
    x = torch.randn(3, 2, 4)
    for a, b in zip(tree_leaves(analog(x)), tree_leaves(lstm(x))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_converting_twice_leaves_the_analog_layers(ideal):
    once = ac.convert(Tagger(), ideal)
    twice = ac.convert(once, ideal)
    assert type(twice.lstm) is ac.AnalogLSTM
    assert not twice.analog_conversion_log.fallbacks  # not traced into, not mapped again


def test_report_of_a_bare_recurrent_root(ideal):
    """A converted nn.LSTM at the root: its records and per-step note name it without a
    leading dot (they used to be '.cells.l0.weight_ih', reported as missing layers)."""
    model = ac.convert(nn.LSTM(8, 16), ideal)
    rep = ac.report(model, (torch.randn(5, 2, 8),))
    text = str(rep)
    assert "no analog layer of that name" not in text
    assert "(model) (AnalogLSTM, " in text and "2 sequence(s) of 5 time steps" in text
    assert [r.name for r in rep.rows] == ["cells.l0.weight_ih", "cells.l0.weight_hh"]
