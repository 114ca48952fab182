"""AnalogMultiheadAttention computes nn.MultiheadAttention's math (ideal tiles)."""

from __future__ import annotations

import pytest
import torch
from compiler_models import Encoder, encoder_inputs
from torch import nn

import analog_compiler as ac

IDEAL = ac.FloatingPointRPUConfig()


def close(a, b):
    return torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def pair(**kw):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, **kw).eval()
    if kw.get("add_bias_kv"):
        with torch.no_grad():
            mha.bias_k.normal_()
            mha.bias_v.normal_()
    return mha, ac.AnalogMultiheadAttention.from_digital(mha, IDEAL).eval()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_self_attention_with_masks(batch_first, need_weights, average):
    mha, amha = pair(batch_first=batch_first)
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    kpm = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    for kwargs in ({}, {"key_padding_mask": kpm}, {"attn_mask": causal},
                   {"attn_mask": causal.isinf(), "key_padding_mask": kpm}):
        ref = mha(x, x, x, need_weights=need_weights, average_attn_weights=average, **kwargs)
        out = amha(x, x, x, need_weights=need_weights, average_attn_weights=average, **kwargs)
        assert close(out[0], ref[0])
        assert (out[1] is None) == (ref[1] is None)
        if ref[1] is not None:
            assert close(out[1], ref[1])


def test_cross_attention_kdim_vdim_bias_kv_zero_attn():
    mha, amha = pair(kdim=6, vdim=7, add_bias_kv=True, add_zero_attn=True, batch_first=True)
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 3, 6), torch.randn(2, 3, 7)
    kpm = torch.tensor([[False, False, True], [False, False, False]])
    ref = mha(q, k, v, key_padding_mask=kpm)
    out = amha(q, k, v, key_padding_mask=kpm)
    assert close(out[0], ref[0]) and close(out[1], ref[1])


def test_unbatched_and_3d_attn_mask():
    mha, amha = pair()
    x = torch.randn(5, 16)
    assert close(amha(x, x, x)[0], mha(x, x, x)[0])
    xb = torch.randn(5, 2, 16)
    mask = torch.randn(2 * 4, 5, 5)
    assert close(amha(xb, xb, xb, attn_mask=mask)[0], mha(xb, xb, xb, attn_mask=mask)[0])


def test_to_digital_round_trip():
    mha, amha = pair(batch_first=True, bias=False)
    back = ac.AnalogMultiheadAttention.to_digital(amha)
    assert isinstance(back, nn.MultiheadAttention)
    x = torch.randn(2, 5, 16)
    assert close(back(x, x, x)[0], mha(x, x, x)[0])
    assert isinstance(amha.q_proj, ac.AnalogLinear) and amha.q_proj.analog_module.bias is None


def test_per_projection_policy_keeps_out_proj_digital():
    model = nn.Sequential(nn.MultiheadAttention(16, 4))
    analog = ac.convert(model, IDEAL, policy={"0.out_proj": None})
    attn = analog[0]
    assert isinstance(attn.q_proj, ac.AnalogLinear) and type(attn.out_proj) is nn.Linear
    status = {r.name: r.status for r in analog.analog_conversion_log.records}
    assert status == {"0.q_proj": "analog", "0.k_proj": "analog", "0.v_proj": "analog",
                      "0.out_proj": "digital"}


def test_attention_kept_digital_by_type_policy():
    model = nn.Sequential(nn.MultiheadAttention(16, 4))
    analog = ac.convert(model, IDEAL, policy={nn.MultiheadAttention: None})
    assert isinstance(analog[0], nn.MultiheadAttention)
    rec = {r.name: r for r in analog.analog_conversion_log.records}
    assert set(rec) == {"0.in_proj", "0.out_proj"}
    assert all(r.status == "digital" and "policy" in r.reason for r in rec.values())


def test_encoder_with_digital_attention_and_analog_feedforward_avoids_fused_path():
    model = Encoder(batch_first=True).eval()
    analog = ac.convert(model, IDEAL, policy={nn.MultiheadAttention: None})
    assert isinstance(analog.encoder.layers[0].self_attn, nn.MultiheadAttention)
    assert isinstance(analog.encoder.layers[0].linear1, ac.AnalogLinear)
    tokens, mask = encoder_inputs()
    with torch.no_grad():  # eval + no_grad: where the fused kernel would read linear1.weight
        assert close(analog(tokens, mask), model(tokens, mask))
        assert close(analog(tokens), model(tokens))
