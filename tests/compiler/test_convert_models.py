"""convert() on real architectures: every matrix layer mapped, ideal tiles equal digital."""

from __future__ import annotations

import math

import pytest
import torch
from compiler_models import (
    MLP,
    DataDependent,
    DepthwiseSeparable,
    Encoder,
    FunctionalLinear,
    GPT2Block,
    ResNetTiny,
    TinyConv1D,
    WithUntraceableBranch,
    encoder_inputs,
    randomize_batchnorm,
)
from torch import nn

import analog_compiler as ac
from analog_compiler.nn.base import AnalogLayerBase

ATOL = RTOL = 1e-5


def close(a, b):
    return torch.allclose(a, b, atol=ATOL, rtol=RTOL)


def split_count(size: int, max_size: int) -> int:
    return 1 if max_size == 0 or size <= max_size else math.ceil(size / max_size)


def expected_tiles(model: nn.Module, mp: ac.MappingParameter) -> dict[str, int]:
    """Balanced-split arithmetic from the digital layer shapes."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = split_count(m.in_features, mp.max_input_size) * split_count(
                m.out_features, mp.max_output_size)
        elif isinstance(m, nn.modules.conv._ConvNd):
            k = math.prod(m.kernel_size) * m.in_channels // m.groups
            out[name] = m.groups * split_count(k, mp.max_input_size) * split_count(
                m.out_channels // m.groups, mp.max_output_size)
    return out


def analog_tiles(model: nn.Module) -> dict[str, int]:
    return {n: m.analog_tile_count() for n, m in model.named_modules()
            if isinstance(m, AnalogLayerBase)}


def test_mlp(ideal):
    model = MLP().eval()
    x = torch.randn(4, 20)
    analog = ac.convert(model, ideal)
    assert all(isinstance(analog.get_submodule(n), ac.AnalogLinear) for n in ("fc1", "fc2", "head"))
    assert close(analog(x), model(x))
    assert analog_tiles(analog) == expected_tiles(model, ideal.mapping)
    assert analog_tiles(analog)["fc2"] == 3 * 4  # ceil(37 / 16) x ceil(37 / 12)
    log = analog.analog_conversion_log
    assert {r.name for r in log.records if r.status == "analog"} == {"fc1", "fc2", "head"}
    assert log.capture == "fx" and not log.fallbacks
    assert type(analog) is MLP  # no graph rewrite needed: the original class stays
    assert isinstance(model.fc1, nn.Linear)  # not inplace


def test_resnet_with_batchnorm_and_residuals(ideal):
    model = randomize_batchnorm(ResNetTiny()).eval()
    x = torch.randn(2, 3, 8, 8)
    analog = ac.convert(model, ideal, example_inputs=x)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert {r.name for r in analog.analog_conversion_log.records} == set(convs)
    assert all(isinstance(analog.get_submodule(n), AnalogLayerBase) for n in convs)
    assert isinstance(analog.layer1.bn1, nn.BatchNorm2d)
    assert close(analog(x), model(x))
    assert analog_tiles(analog) == expected_tiles(model, ideal.mapping)


def test_depthwise_separable_and_conv1d_conv3d(ideal):
    model = DepthwiseSeparable().eval()
    x = torch.randn(2, 3, 5, 5)
    analog = ac.convert(model, ideal)
    assert isinstance(analog.dw, ac.AnalogConv2d) and isinstance(analog.seq, ac.AnalogConv1d)
    assert isinstance(analog.vol, ac.AnalogConv3d)
    assert analog.dw.analog_tile_count() == 12  # one tile per group
    assert analog_tiles(analog) == expected_tiles(model, ideal.mapping)
    assert close(analog(x), model(x))


def test_functional_products_become_layers(ideal):
    model = FunctionalLinear()
    x, img = torch.randn(3, 6), torch.randn(2, 2, 5, 5)
    analog = ac.convert(model, ideal)
    records = {r.name: r for r in analog.analog_conversion_log.records}
    assert set(records) == {"w1_linear", "w2_linear", "w3_linear", "w4_linear", "k_conv"}
    assert {r.source_type for r in records.values()} == {"F.linear", "matmul", "addmm",
                                                         "F.conv2d"}
    assert all(r.status == "analog" for r in records.values())
    ref, out = model(x, img), analog(x, img)
    assert isinstance(out, dict) and set(out) == {"vec", "img"}
    assert close(out["vec"], ref["vec"]) and close(out["img"], ref["img"])
    keys = set(analog.state_dict())
    assert "w1_linear.analog_module.weight" in keys and "w1" not in keys and "b1" not in keys
    assert analog.w2_linear.get_weights()[0].shape == (9, 12)  # transposed [out, in]


def test_inplace_and_state_dict_naming(ideal):
    model = MLP()
    same = ac.convert(model, ideal, inplace=True)
    assert same is model and isinstance(model.fc1, ac.AnalogLinear)
    keys = set(model.state_dict())
    assert {"fc1.analog_module.weight", "fc1.analog_module.bias", "fc2.analog_module.weight"} \
        <= keys
    assert "fc2.analog_module.bias" not in keys


def test_root_is_a_layer(ideal):
    lin = nn.Linear(40, 30)
    analog = ac.convert(lin, ideal)
    assert isinstance(analog, ac.AnalogLinear)
    assert analog.analog_tile_count() == 3 * 3
    x = torch.randn(2, 40)
    assert close(analog(x), lin(x))


@pytest.mark.parametrize("noise", [False, True])
def test_inference_config_runs(noise):
    rc = ac.InferenceRPUConfig()
    if not noise:
        rc.forward.is_perfect = True
    analog = ac.convert(MLP().eval(), rc)
    assert analog(torch.randn(3, 20)).shape == (3, 5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_with_multihead_attention(ideal, batch_first):
    model = Encoder(batch_first).eval()
    tokens, mask = encoder_inputs()
    analog = ac.convert(model, ideal)
    attn = analog.encoder.layers[0].self_attn
    assert isinstance(attn, ac.AnalogMultiheadAttention)
    assert all(isinstance(getattr(attn, p), ac.AnalogLinear)
               for p in ("q_proj", "k_proj", "v_proj", "out_proj"))
    records = analog.analog_conversion_log.records
    assert len(records) == 1 + 2 * 6 and all(r.status == "analog" for r in records)
    assert {r.source_type for r in records} >= {"MultiheadAttention.in_proj",
                                                "MultiheadAttention.out_proj"}
    with torch.no_grad():
        assert close(analog(tokens), model(tokens))
        assert close(analog(tokens, mask), model(tokens, mask))
    # 16 x 16 projections with 16 x 12 tiles: 1 x 2 tiles each; linear1 16->40: 1 x 4
    assert attn.q_proj.analog_tile_count() == 2
    assert analog.encoder.layers[0].linear1.analog_tile_count() == 4


@pytest.mark.parametrize("which", ["tiny", "transformers"])
def test_gpt2_block_with_transposed_conv1d(ideal, which):
    if which == "transformers":
        conv1d = pytest.importorskip("transformers.pytorch_utils").Conv1D
    else:
        conv1d = TinyConv1D
    model = GPT2Block(conv1d=conv1d).eval()
    x = torch.randn(2, 5, 24)
    analog = ac.convert(model, ideal)
    records = {r.name: r for r in analog.analog_conversion_log.records}
    assert set(records) == {"c_attn", "c_proj", "c_fc", "mlp_proj"}
    assert {r.source_type for r in records.values()} == {"Conv1D"}
    assert type(analog) is GPT2Block  # module swap, no graph rewrite
    out, att = analog(x)
    ref_out, ref_att = model(x)
    assert close(out, ref_out) and close(att, ref_att)
    w, _ = analog.c_attn.get_weights()
    assert torch.equal(w, model.c_attn.weight.detach().t())  # stored [out, in]
    assert analog.c_fc.analog_tile_count() == 2 * 8  # in 24 / 16 -> 2, out 96 / 12 -> 8


def test_untraceable_branch_falls_back_and_is_recorded(ideal):
    model = WithUntraceableBranch()
    x = torch.randn(3, 6)
    analog = ac.convert(model, ideal)
    log = analog.analog_conversion_log
    assert set(log.fallbacks) == {"branch"} and "control flow" in log.fallbacks["branch"]
    status = {r.name: (r.status, r.reason) for r in log.records}
    assert status["inp"][0] == status["branch.a"][0] == status["branch.b"][0] == "analog"
    assert status["v_linear"][0] == "analog"  # the root's own F.linear is still traced
    assert status["branch.w"][0] == "digital" and status["branch.w"][1].startswith("untraceable")
    assert isinstance(analog.branch, DataDependent)  # kept its Python code
    for sign in (1, -1):  # both branches
        assert close(analog(sign * x), model(sign * x))


def test_linear_subclass_is_mapped(ideal):
    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(MyLinear(8, 4), nn.ReLU(),
                          nn.modules.linear.NonDynamicallyQuantizableLinear(4, 2))
    analog = ac.convert(model, ideal)
    assert isinstance(analog[0], ac.AnalogLinear) and isinstance(analog[2], ac.AnalogLinear)
    x = torch.randn(5, 8)
    assert close(analog(x), model(x))


def test_unsupported_layers_are_reported(ideal):
    model = nn.Sequential(nn.Conv1d(4, 6, 1), nn.ConvTranspose1d(6, 2, 3))
    analog = ac.convert(model, ideal)
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert rec["0"].status == "analog"
    assert rec["1"].status == "digital" and rec["1"].reason.startswith("unsupported")
    x = torch.randn(2, 4, 5)
    assert close(analog(x), model(x))


def test_batched_products_of_parameters_are_reported(ideal):
    class StackedExperts(nn.Module):  # Llama 4's experts: one bmm over all experts
        def __init__(self):
            super().__init__()
            self.up = nn.Parameter(torch.randn(3, 4, 6))
            self.mix = nn.Parameter(torch.randn(6, 5))
            self.out = nn.Linear(5, 2)

        def forward(self, x):
            h = torch.bmm(x.view(3, -1, 4), self.up)
            return self.out(torch.einsum("bti,io->bto", h, self.mix))

    model = StackedExperts()
    analog = ac.convert(model, ideal)
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert rec["out"].status == "analog"
    assert rec["up"].status == "digital" and rec["up"].source_type == "torch.bmm"
    assert rec["mix"].reason == ("unsupported: torch.einsum of the parameter (a batched product: "
                                 "no analog layer)")
    assert "up" in str(ac.report(analog))
    x = torch.randn(6, 4)
    assert close(analog(x), model(x))


def test_linear_subclass_with_its_own_forward_is_traced(ideal):
    class LoRALinear(nn.Linear):
        def __init__(self, d_in, d_out, rank=2):
            super().__init__(d_in, d_out)
            self.lora_a = nn.Linear(d_in, rank, bias=False)
            self.lora_b = nn.Linear(rank, d_out, bias=False)

        def forward(self, x):
            return super().forward(x) + self.lora_b(self.lora_a(x))

    model = nn.Sequential(LoRALinear(8, 6))
    analog = ac.convert(model, ideal)
    names = {r.name: (r.source_type, r.status) for r in analog.analog_conversion_log.records}
    assert names == {"0.weight_linear": ("F.linear", "analog"), "0.lora_a": ("Linear", "analog"),
                     "0.lora_b": ("Linear", "analog")}
    x = torch.randn(3, 8)
    assert close(analog(x), model(x))  # the LoRA branch is kept


def test_recurrent_layers_and_unmapped_attention_are_reported(ideal):
    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6, batch_first=True)
            self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
            self.out = nn.Linear(6, 2)

        def forward(self, x):
            h, _ = self.lstm(x)
            return self.out(self.attn(h, h, h)[0])

    layer_map = {k: v for k, v in ac.DEFAULT_LAYER_MAP.items()
                 if k not in (nn.MultiheadAttention, nn.LSTM)}  # both left out: reported
    model = Rec()
    analog = ac.convert(model, ideal, layer_map=layer_map)
    rec = {r.name: (r.status, r.reason) for r in analog.analog_conversion_log.records}
    assert rec["lstm"] == ("digital", "unsupported: no analog layer for LSTM")
    assert rec["attn"] == ("digital", "unsupported: no analog layer for MultiheadAttention")
    assert rec["out"] == ("analog", "")
    x = torch.randn(2, 3, 4)
    assert close(analog(x), model(x))
