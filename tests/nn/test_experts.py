"""AnalogExperts: the 3-D expert matrices of Hugging Face MoE blocks on tiles, one AnalogLinear
per expert and matrix; compared with the digital experts' own forward (ideal tiles)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analog_compiler as ac
from analog_compiler.nn.experts import is_experts_module

IDEAL = ac.FloatingPointRPUConfig()


class PlainExperts(nn.Module):
    """An experts module with the layout flags of Hugging Face's ``use_experts_implementation``
    and its reference forward written out (the oracle): transposed storage, biases, and a
    gate or not."""

    def __init__(self, n: int, hidden: int, inter: int, *, gate: bool, bias: bool,
                 transposed: bool):
        super().__init__()
        self.num_experts, self.has_gate, self.has_bias = n, gate, bias
        self.is_transposed, self.has_post_expert_norm = transposed, False
        first = (2 if gate else 1) * inter

        def shape(out: int, inp: int) -> tuple[int, int, int]:
            return (n, inp, out) if transposed else (n, out, inp)

        name = "gate_up_proj" if gate else "up_proj"
        setattr(self, name, nn.Parameter(torch.randn(shape(first, hidden)) / hidden ** 0.5))
        self.down_proj = nn.Parameter(torch.randn(shape(hidden, inter)) / inter ** 0.5)
        if bias:
            setattr(self, name + "_bias", nn.Parameter(torch.randn(n, first)))
            self.down_proj_bias = nn.Parameter(torch.randn(n, hidden))
        self.act_fn = nn.SiLU()

    def _apply_gate(self, h: torch.Tensor) -> torch.Tensor:
        gate, up = h.chunk(2, dim=-1)
        return self.act_fn(gate) * up

    def _matrix(self, name: str, e: int) -> torch.Tensor:
        w = getattr(self, name)[e]
        return w.T if self.is_transposed else w

    def forward(self, x, top_k_index, top_k_weights):
        out = torch.zeros_like(x)
        first = "gate_up_proj" if self.has_gate else "up_proj"
        for t in range(x.shape[0]):
            for slot, e in enumerate(top_k_index[t].tolist()):
                h = self._matrix(first, e) @ x[t]
                if self.has_bias:
                    h = h + getattr(self, first + "_bias")[e]
                h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
                h = self._matrix("down_proj", e) @ h
                if self.has_bias:
                    h = h + self.down_proj_bias[e]
                out[t] += top_k_weights[t, slot] * h
        return out


def routing(tokens: int, n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(tokens)])
    return idx, torch.rand(tokens, k, generator=g).softmax(-1)


@pytest.mark.parametrize("gate,bias,transposed", [(True, False, False), (True, True, True),
                                                  (False, True, False), (False, False, True)])
def test_layouts_match_the_digital_experts(gate, bias, transposed):
    torch.manual_seed(0)
    digital = PlainExperts(5, 12, 8, gate=gate, bias=bias, transposed=transposed)
    assert is_experts_module(digital)
    analog = ac.AnalogExperts.from_digital(digital, IDEAL)
    first = "gate_up" if gate else "up"
    assert len(getattr(analog, first)) == len(analog.down) == 5
    assert analog.down[0].in_features == 8 and analog.down[0].out_features == 12
    x = torch.randn(7, 12)
    idx, wts = routing(7, 5, 2)
    with torch.no_grad():
        torch.testing.assert_close(analog(x, idx, wts), digital(x, idx, wts), atol=1e-5,
                                   rtol=1e-5)
    # the digital module is untouched, and to_digital gives its matrices back
    back = ac.AnalogExperts.to_digital(analog)
    for name, p in digital.named_parameters():
        torch.testing.assert_close(getattr(back, name), p, atol=1e-6, rtol=1e-6)
    assert isinstance(back, PlainExperts)


def test_tokens_routed_nowhere_and_unused_experts():
    torch.manual_seed(1)
    digital = PlainExperts(4, 6, 4, gate=True, bias=False, transposed=False)
    analog = ac.AnalogExperts.from_digital(digital, IDEAL)
    x = torch.randn(3, 6)
    idx = torch.tensor([[0], [0], [4]])  # expert 4 does not exist: the EP sentinel, skipped
    wts = torch.ones(3, 1)
    with torch.no_grad():
        y = analog(x, idx, wts)
    assert torch.equal(y[2], torch.zeros(6))
    torch.testing.assert_close(y[:2], digital(x[:2], idx[:2], wts[:2]), atol=1e-5, rtol=1e-5)


def test_bad_input():
    with pytest.raises(TypeError, match="AnalogExperts.from_digital expects a Hugging Face"):
        ac.AnalogExperts.from_digital(nn.Linear(3, 3), IDEAL)
    digital = PlainExperts(3, 4, 2, gate=True, bias=False, transposed=False)
    digital.num_experts = 4
    with pytest.raises(ValueError, match="PlainExperts.gate_up_proj: 3 experts, num_experts is 4"):
        ac.AnalogExperts.from_digital(digital, IDEAL)


def test_convert_maps_experts_and_policy_can_keep_them_digital():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(6, 4, bias=False)
            self.experts = PlainExperts(4, 6, 4, gate=True, bias=True, transposed=False)

        def forward(self, x):
            w, idx = self.router(x).softmax(-1).topk(2, dim=-1)
            return self.experts(x, idx, w)

    torch.manual_seed(2)
    model = Block().eval()
    analog = ac.convert(model, IDEAL)
    assert isinstance(analog.experts, ac.AnalogExperts)
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert rec["experts.gate_up.3"].status == "analog"
    assert rec["experts.down.0"].source_type == "PlainExperts.down_proj[0]"
    assert {n for n, _ in ac.analog_layers(analog)} == {"router"} | {
        f"experts.{k}.{e}" for k in ("gate_up", "down") for e in range(4)}
    x = torch.randn(9, 6)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x), atol=1e-5, rtol=1e-5)
    assert model.experts.gate_up_proj.shape == (4, 8, 6)  # the input model keeps its experts
    kept = ac.convert(model, IDEAL, exclude=["experts"])
    assert type(kept.experts) is PlainExperts
    assert {r.name: r.status for r in kept.analog_conversion_log.records}["experts"] == "digital"


def test_chip_verbs_state_dict_and_export():
    torch.manual_seed(3)
    digital = PlainExperts(3, 8, 6, gate=True, bias=False, transposed=False)
    analog = ac.convert(nn.ModuleDict({"experts": digital}), ac.InferenceRPUConfig()).eval()
    experts = analog["experts"]
    ac.program_analog_weights(analog)
    ac.drift_analog_weights(analog, 3600.0)
    assert all(layer.analog_module.is_programmed for _, layer in ac.analog_layers(analog))
    x = torch.randn(5, 8)
    idx, wts = routing(5, 3, 2)
    with torch.no_grad():
        y = experts(x, idx, wts)
    assert torch.isfinite(y).all()
    twin = ac.convert(nn.ModuleDict({"experts": digital}), ac.InferenceRPUConfig()).eval()
    twin.load_state_dict(analog.state_dict())
    for (_, a), (_, b) in zip(ac.analog_layers(analog), ac.analog_layers(twin), strict=True):
        torch.testing.assert_close(b.get_weights()[0], a.get_weights()[0])  # the same chips
    plain = ac.to_digital(analog, realistic=True)
    assert type(plain["experts"]) is PlainExperts
    assert plain["experts"].gate_up_proj.shape == digital.gate_up_proj.shape
    assert not torch.equal(plain["experts"].gate_up_proj, digital.gate_up_proj)  # the chip's
    with pytest.raises(ValueError, match="'experts' is a mixture of experts.*ac.to_digital"):
        ac.export_onnx(analog, (x,), "unused.onnx")


def test_hugging_face_mixtral():
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tf.MixtralConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=48,
                           num_attention_heads=2, num_key_value_heads=1, vocab_size=64,
                           num_local_experts=4, num_experts_per_tok=2)
    model = tf.MixtralForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 7))
    analog = ac.convert(model, IDEAL)
    assert isinstance(analog.model.layers[0].mlp.experts, ac.AnalogExperts)
    assert all(r.status == "analog" for r in analog.analog_conversion_log.records)
    with torch.no_grad():
        torch.testing.assert_close(analog(input_ids=ids).logits, model(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
    back = ac.to_digital(analog, realistic=False)
    torch.testing.assert_close(back.model.layers[0].mlp.experts.gate_up_proj,
                               model.model.layers[0].mlp.experts.gate_up_proj)
