"""convert on Hugging Face architectures built from small random configs (no download): every
matrix layer becomes analog, and with ideal tiles the converted model computes the digital
model's output."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import analog_compiler as ac

tf = pytest.importorskip("transformers")

SMALL = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
         "num_attention_heads": 2}


def ids() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(3, 100, (2, 9))}


def pixels() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(2, 3, 32, 32)}


def audio() -> dict[str, torch.Tensor]:
    return {"input_values": torch.randn(2, 400)}


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], dict]]] = {
    "gpt2": (lambda: tf.GPT2Model(tf.GPT2Config(n_layer=1, n_embd=32, n_head=2,
                                                vocab_size=100)), ids),
    "bert": (lambda: tf.BertModel(tf.BertConfig(**SMALL, vocab_size=100)), ids),
    "t5": (lambda: tf.T5EncoderModel(tf.T5Config(num_layers=1, d_model=32, d_ff=64,
                                                 num_heads=2, d_kv=16, vocab_size=100)), ids),
    "llama": (lambda: tf.LlamaModel(tf.LlamaConfig(**SMALL, num_key_value_heads=1,
                                                   vocab_size=100)), ids),
    "qwen3_moe": (lambda: tf.Qwen3MoeModel(tf.Qwen3MoeConfig(
        **SMALL, num_key_value_heads=1, vocab_size=100, num_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=16, head_dim=16)), ids),
    "gpt_oss": (lambda: tf.GptOssModel(tf.GptOssConfig(
        **SMALL, num_key_value_heads=1, vocab_size=100, num_local_experts=4,
        num_experts_per_tok=2, head_dim=16, layer_types=["full_attention"])), ids),
    "vit": (lambda: tf.ViTModel(tf.ViTConfig(**SMALL, image_size=32, patch_size=8)), pixels),
    "clip_vision": (lambda: tf.CLIPVisionModel(tf.CLIPVisionConfig(**SMALL, image_size=32,
                                                                   patch_size=8)), pixels),
    "convnext": (lambda: tf.ConvNextModel(tf.ConvNextConfig(hidden_sizes=[16, 32],
                                                            depths=[1, 1], num_stages=2)), pixels),
    "wav2vec2": (lambda: tf.Wav2Vec2Model(tf.Wav2Vec2Config(
        **SMALL, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)), audio),
}


def first_output(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.last_hidden_state


@pytest.mark.parametrize("arch", sorted(CASES))
def test_every_matrix_layer_is_analog_and_ideal_tiles_are_exact(arch):
    make, inputs = CASES[arch]
    torch.manual_seed(0)
    model = make().eval()
    x = inputs()
    analog = ac.convert(model, ac.FloatingPointRPUConfig())
    left = [n for n, m in analog.named_modules()
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]
    assert not left, f"{arch}: digital matrix layers left: {left}"
    digital = [r.name for r in analog.analog_conversion_log.records
               if r.status != "analog" and not r.reason.startswith("untraceable")]
    assert not digital, f"{arch}: kept digital: {digital}"
    with torch.no_grad():
        torch.testing.assert_close(first_output(analog(**x)), first_output(model(**x)),
                                   atol=1e-5, rtol=1e-5)
