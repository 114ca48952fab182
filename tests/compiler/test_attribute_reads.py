"""Forward code that reads a matrix layer's attributes (``layer.weight.dtype``), as Hugging
Face's T5, ViT, CLIP and Qwen2-VL do: the layer still becomes analog, and the model runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analog_compiler as ac
from analog_compiler.nn.base import AnalogLayerBase

ATOL = RTOL = 1e-5


def records(model: nn.Module) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status, r.reason) for r in model.analog_conversion_log.records}


class DtypeCheckedFF(nn.Module):
    """T5's feed-forward: a dtype check on ``wo.weight`` that tracing cannot evaluate."""

    def __init__(self):
        super().__init__()
        self.wi, self.wo = nn.Linear(8, 16, bias=False), nn.Linear(16, 8, bias=False)

    def forward(self, x):
        h = torch.relu(self.wi(x))
        if isinstance(self.wo.weight, torch.Tensor) and h.dtype != self.wo.weight.dtype:
            h = h.to(self.wo.weight.dtype)
        return self.wo(h)


class CastToPatchDtype(nn.Module):
    """ViT's embeddings: the input is cast to the projection's dtype; a functional product of
    the module's own parameter makes the traced graph replace the module's code."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 4, stride=4)
        self.head = nn.Parameter(torch.randn(5, 8))

    def forward(self, x):
        y = self.proj(x.to(self.proj.weight.dtype)).flatten(2).mean(-1)
        return F.linear(y, self.head)


class GainedLinear(nn.Linear):
    def __init__(self, d_in, d_out):
        super().__init__(d_in, d_out)
        self.gain = nn.Parameter(torch.full((d_out,), 2.0))


class ReadsExtraParameter(nn.Module):
    """Reads a parameter the analog layer does not have: that layer must stay digital."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = GainedLinear(6, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.fc(x) * self.fc.gain)


def test_dtype_check_on_a_child_weight_converts_every_layer(ideal):
    model = DtypeCheckedFF()
    analog = ac.convert(model, ideal)
    assert records(analog) == {"wi": ("analog", ""), "wo": ("analog", "")}
    assert not analog.analog_conversion_log.fallbacks
    assert isinstance(analog.wi, ac.AnalogLinear) and isinstance(analog.wo, ac.AnalogLinear)
    x = torch.randn(4, 8)
    torch.testing.assert_close(analog(x), model(x), atol=ATOL, rtol=RTOL)


def test_live_weight_read_is_served_by_the_analog_layer(ideal):
    model = CastToPatchDtype()
    analog = ac.convert(model, ideal)
    assert isinstance(analog, torch.fx.GraphModule)  # the graph, rewritten, runs
    assert isinstance(analog.proj, ac.AnalogConv2d)
    assert records(analog)["proj"] == ("analog", "")
    reads = [n for n in analog.graph.nodes if n.op == "get_attr"]
    assert all(not str(n.target).startswith("proj.") for n in reads)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)  # cast to the layer's float32
    torch.testing.assert_close(analog(x), model(x), atol=ATOL, rtol=RTOL)


def test_read_the_analog_layer_cannot_serve_keeps_the_layer_digital(ideal):
    model = ReadsExtraParameter()
    analog = ac.convert(model, ideal)
    rec = records(analog)
    assert rec["out"] == ("analog", "")
    assert rec["fc"][0] == "digital" and "fc.gain" in rec["fc"][1]
    assert type(analog.fc) is GainedLinear
    report = str(ac.report(analog))
    assert "fc.gain" in report
    x = torch.randn(3, 6)
    torch.testing.assert_close(analog(x), model(x), atol=ATOL, rtol=RTOL)


def test_records_match_the_model_after_a_failed_pipeline(ideal, monkeypatch):
    """A pass failing after the swaps keeps the module's code and still swaps the children the
    records call analog (module swap), so the log never names a layer the model lacks."""
    from analog_compiler.compiler import api, passes

    def failing(gm, ctx, prefix):
        passes.map_modules_pass(gm, ctx, prefix)
        raise RuntimeError("injected")

    monkeypatch.setattr(api, "MAP_MODULES", passes.GraphPass("map_modules", failing))
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    analog = ac.convert(model, ideal)
    assert "injected" in analog.analog_conversion_log.fallbacks[""]
    layers = {n for n, m in analog.named_modules() if isinstance(m, AnalogLayerBase)}
    analog_records = {n for n, (s, _) in records(analog).items() if s == "analog"}
    assert layers == analog_records == {"0", "2"}
    x = torch.randn(3, 5)
    torch.testing.assert_close(analog(x), model(x), atol=ATOL, rtol=RTOL)


def _transformers():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("arch", ["t5", "vit"])
def test_hugging_face_models_that_read_weight_dtype(ideal, arch):
    tf = _transformers()
    torch.manual_seed(0)
    if arch == "t5":
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            num_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, vocab_size=64)).eval()
        inputs = {"input_ids": torch.randint(0, 64, (2, 6)),
                  "decoder_input_ids": torch.randint(0, 64, (2, 3))}
    else:
        model = tf.ViTModel(tf.ViTConfig(num_hidden_layers=1, hidden_size=32,
                                         intermediate_size=64, num_attention_heads=2,
                                         image_size=16, patch_size=8)).eval()
        inputs = {"pixel_values": torch.randn(2, 3, 16, 16)}
    analog = ac.convert(model, ideal)
    digital = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    rec = records(analog)
    assert all(rec[n] == ("analog", "") for n in digital), {n: rec.get(n) for n in digital}
    with torch.no_grad():
        ref, out = model(**inputs), analog(**inputs)
    key = "logits" if arch == "t5" else "last_hidden_state"
    torch.testing.assert_close(out[key], ref[key], atol=1e-4, rtol=1e-4)
