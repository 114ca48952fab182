"""to_digital and export_onnx of recurrent models: nn.LSTM / nn.GRU / nn.RNN come back with the
chip's weights, and onnxruntime reproduces them."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

import analog_compiler as ac


class Classifier(nn.Module):
    def __init__(self, kind: type[nn.RNNBase] = nn.LSTM):
        super().__init__()
        self.rec = kind(6, 8, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        out, _ = self.rec(x)
        return self.head(out[:, -1])


def pcm_config(is_perfect: bool = True) -> ac.InferenceRPUConfig:
    """PCM programming noise and drift; with ``is_perfect`` an exact periphery, so that the
    analog forward is the digital forward of the chip's weights."""
    cfg = ac.InferenceRPUConfig(mapping=ac.MappingParameter(max_input_size=8,
                                                            max_output_size=16))
    cfg.forward.is_perfect = is_perfect
    return cfg


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
def test_realistic_to_digital_is_the_chip(kind):
    torch.manual_seed(0)
    model = Classifier(kind).eval()
    analog = ac.convert(model, pcm_config()).eval()
    ac.drift_analog_weights(analog, 3600.0)  # every layer: the head too
    digital = ac.to_digital(analog)
    assert type(digital.rec) is kind and type(digital.head) is nn.Linear
    assert digital.rec.batch_first and digital.rec.bidirectional and digital.rec.num_layers == 2
    x = torch.randn(4, 5, 6)
    torch.testing.assert_close(digital(x), analog(x), rtol=1e-4, atol=1e-5)
    # the chip differs from the targets: programming noise and drift
    assert not torch.allclose(digital.rec.weight_hh_l1, model.rec.weight_hh_l1, atol=1e-3)
    exact = ac.to_digital(analog, realistic=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(exact.state_dict()[key], value)


def test_t_inference_and_raw_scales():
    torch.manual_seed(0)
    analog = ac.convert(Classifier(), pcm_config()).eval()
    early = ac.to_digital(analog, t_inference=1.0, seed=3)
    late = ac.to_digital(analog, t_inference=1e6, seed=3)
    assert not analog.rec.cells.l0.weight_ih.analog_module.is_programmed  # model untouched
    assert not torch.equal(early.rec.weight_ih_l0, late.rec.weight_ih_l0)
    raw = ac.to_digital(analog, fold_scales=False)
    scales = raw.rec.analog_output_scales
    assert set(scales) == {f"weight_{m}_l{k}{s}" for m in ("ih", "hh") for k in (0, 1)
                           for s in ("", "_reverse")}
    assert scales["weight_ih_l0"].shape == (1, 1, 32)  # 6 inputs: one split; 32 rows


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_onnx_export_matches_onnxruntime(tmp_path, kind):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    analog = ac.convert(Classifier(kind), pcm_config(is_perfect=False)).eval()
    x = torch.randn(2, 5, 6)
    result = ac.export_onnx(analog, (x,), tmp_path / "rec.onnx", t_inference=86400.0, seed=1)
    assert result.max_rel_diff is not None and result.max_rel_diff <= 1e-4
    import onnx

    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert kind.__name__ in ops  # the recurrent layer is one ONNX LSTM / GRU node
    digital = ac.to_digital(analog, t_inference=86400.0, seed=1).eval()
    got = ac.export.onnx.run_onnxruntime(result.path, [torch.randn(7, 5, 6)])
    assert got[0].shape == (7, 3)  # dynamic batch
    for a, b in zip(tree_leaves(digital(x)), tree_leaves(ac.export.onnx.run_onnxruntime(
            result.path, [x]))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_onnx_keep_quantization_unrolls_the_steps(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    analog = ac.convert(Classifier(nn.GRU), pcm_config(is_perfect=False)).eval()
    x = torch.randn(2, 4, 6)
    result = ac.export_onnx(analog, (x,), tmp_path / "q.onnx", keep_quantization=True, seed=1)
    assert result.max_rel_diff <= 1e-4


def test_aihwkit_rnn_to_digital_keeps_its_class_with_linear_matrices():
    torch.manual_seed(0)
    rnn = ac.AnalogRNN(ac.AnalogLSTMCellCombinedWeight, 6, 8, rpu_config=pcm_config(),
                       num_layers=2).eval()
    model = ac.AnalogSequential(rnn)
    rep = ac.report(model, (torch.randn(5, 2, 6),))
    assert any(n.startswith("0 (AnalogRNN, ") and "2 sequence(s) of 5 time steps" in n
               for n in rep.notes)
    ac.drift_analog_weights(model, 60.0)
    digital = ac.to_digital(model)
    assert type(digital) is nn.Sequential and type(digital[0]) is ac.AnalogRNN
    assert type(digital[0].rnn.layers[1].cell.weight) is nn.Linear
    x = torch.randn(5, 2, 6)
    for a, b in zip(tree_leaves(digital(x)), tree_leaves(model(x))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
