"""torch.compile(fullgraph=True) of the HWA training forward and backward of a converted model,
with learned input ranges (initialised from data inside the compiled graph) and learned output
scales."""

from __future__ import annotations

import os

import pytest
import torch

import analog_compiler as ac

#: Inductor's C++ codegen takes ~1 min on 2 shared cores: run it with AC_SLOW_TESTS=1.
BACKENDS = ["aot_eager", pytest.param("inductor", marks=pytest.mark.skipif(
    not os.environ.get("AC_SLOW_TESTS"), reason="slow: set AC_SLOW_TESTS=1"))]


def _model() -> torch.nn.Module:
    rc = ac.InferenceRPUConfig(
        # deterministic periphery (quantized, no noise) so compiled and eager outputs agree
        forward=ac.IOParameters(out_noise=0.0, noise_management="NONE", bound_management="NONE"),
        mapping=ac.MappingParameter(max_input_size=8, weight_scaling_omega=1.0,
                                    weight_scaling_columnwise=True, learn_out_scaling=True,
                                    out_scaling_columnwise=True),
        clip=ac.WeightClipParameter(type="FIXED_VALUE", fixed_value=1.0),
        pre_post=ac.PrePostProcessingParameter(ac.InputRangeParameter(enable=True,
                                                                      init_from_data=1)))
    torch.manual_seed(0)
    digital = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    model = ac.convert(digital, rc).train()
    assert isinstance(model[0], ac.AnalogLinear)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_training_step_matches_eager(backend: str) -> None:
    eager, twin = _model(), _model()
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, fullgraph=True, backend=backend)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (eager, twin)]
    for opt, m in zip(opts, (eager, twin)):
        ac.attach_hwa_hooks(opt, m)
    torch.manual_seed(1)
    x, target = 4 * torch.randn(16, 12), torch.randint(0, 3, (16,))
    for _ in range(2):  # step 1 initialises the ranges from data, step 2 learns them
        for opt, m in zip(opts, (eager, compiled)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), target)
            loss.backward()
        for (name, p), q in zip(eager.named_parameters(), twin.parameters()):
            assert q.grad is not None, name
            torch.testing.assert_close(q.grad, p.grad, msg=name)
        assert twin[0].analog_module.input_range.grad.abs().sum() > 0
        for opt in opts:
            opt.step()
    for (name, p), q in zip(eager.state_dict().items(), twin.state_dict().values()):
        if isinstance(p, torch.Tensor):
            torch.testing.assert_close(q, p, msg=name)
    assert int(twin[0].analog_module.input_range_update_idx) == 1
