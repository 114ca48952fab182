"""torch.compile(model, backend="analog") equals convert (noise off); converted models compile
with fullgraph=True under the default inductor backend."""

from __future__ import annotations

import pytest
import torch
from compiler_models import (
    MLP,
    Encoder,
    FunctionalLinear,
    GPT2Block,
    ResNetTiny,
    encoder_inputs,
    randomize_batchnorm,
)
from torch import nn

import analog_compiler as ac
from analog_compiler.compiler.backend import last_conversion_log, source_to_name


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def flat(out):
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, tuple) else [out]


def quiet():
    """An InferenceRPUConfig with every noise source off (DAC/ADC quantization stays)."""
    rc = ac.InferenceRPUConfig()
    rc.forward.out_noise = 0.0
    rc.forward.w_noise = 0.0
    rc.forward.inp_noise = 0.0
    return rc


def test_source_names():
    assert source_to_name("L['self']._modules['fc1']._parameters['weight']") == "fc1.weight"
    assert source_to_name("L['m']._modules['enc']._modules['0']._parameters['w']") == "enc.0.w"
    assert source_to_name("L['self'].layer1.conv1") == "layer1.conv1"


MODELS = {
    "mlp": (lambda: MLP().eval(), lambda: (torch.randn(3, 20),)),
    "functional": (FunctionalLinear, lambda: (torch.randn(3, 6), torch.randn(2, 2, 5, 5))),
    "resnet": (lambda: randomize_batchnorm(ResNetTiny()).eval(),
               lambda: (torch.randn(2, 3, 8, 8),)),
    "gpt2": (lambda: GPT2Block(conv1d=pytest.importorskip("transformers.pytorch_utils").Conv1D)
             .eval(), lambda: (torch.randn(2, 5, 24),)),
}


@pytest.mark.parametrize("name,config", [("mlp", "quiet"), ("functional", "ideal"),
                                         ("functional", "quiet"), ("resnet", "quiet"),
                                         ("gpt2", "ideal")])
def test_backend_equals_convert(name, config, ideal):
    rc = ideal if config == "ideal" else quiet()
    factory, inputs = MODELS[name]
    model, args = factory(), inputs()
    compiled = torch.compile(model, backend="analog", options={"rpu_config": rc})
    with torch.no_grad():
        got = flat(compiled(*args))
        log = last_conversion_log()
        want = flat(ac.convert(model, rc)(*args))
        ref = flat(model(*args))
    for g, w, r in zip(got, want, ref):
        assert torch.allclose(g, w, atol=1e-6, rtol=1e-6)
        if config == "ideal":
            assert torch.allclose(g, r, atol=1e-5, rtol=1e-5)
    converted = {r.name for r in ac.convert(model, rc).analog_conversion_log.records}
    assert log.capture == "dynamo"
    assert {r.name for r in log.records if r.status == "analog"} == converted


def test_backend_policy_and_bad_options(ideal):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)).eval()
    compiled = torch.compile(model, backend="analog",
                             options={"rpu_config": ideal, "policy": {"2": None}})
    x = torch.randn(2, 8)
    assert torch.allclose(compiled(x), model(x), atol=1e-5)
    status = {r.name: r.status for r in last_conversion_log().records}
    assert status == {"0": "analog", "2": "digital"}
    with pytest.raises(Exception, match="unknown option"):
        torch.compile(model, backend="analog", options={"rpu": 1})(x)


def test_converted_model_compiles_fullgraph_with_inductor():
    model = MLP().eval()
    analog = ac.convert(model, quiet())
    x = torch.randn(3, 20)
    compiled = torch.compile(analog, fullgraph=True)  # a graph break would raise
    with torch.no_grad():
        assert torch.allclose(compiled(x), analog(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_backend_maps_multihead_attention(ideal, batch_first):
    model = Encoder(batch_first).eval()
    tokens, mask = encoder_inputs()
    compiled = torch.compile(model, backend="analog", options={"rpu_config": ideal})
    out = compiled(tokens, mask)  # grad mode: no fused encoder-layer kernel
    records = {(r.name, r.status) for r in last_conversion_log().records}
    assert records == {(r.name, r.status) for r in ac.convert(model, ideal)
                       .analog_conversion_log.records}
    assert ("encoder.layers.1.self_attn.q_proj", "analog") in records
    assert torch.allclose(out, model(tokens, mask), atol=1e-5, rtol=1e-5)


def test_backend_on_an_already_converted_model(ideal):
    analog = ac.convert(MLP().eval(), ideal)
    compiled = torch.compile(analog, backend="analog", options={"rpu_config": ideal})
    x = torch.randn(2, 20)
    assert torch.allclose(compiled(x), analog(x), atol=1e-6)
    assert last_conversion_log().records == []  # nothing digital left to map or report
