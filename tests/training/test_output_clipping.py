"""``InputRangeParameter.manage_output_clipping``: while too many tile outputs sit at
``out_bound``, the range's gradient gets ``-(1 - p) * r`` (aihwkit's ``post_backward``), so
the optimizer grows the range and the outputs shrink back inside the ADC range."""

from __future__ import annotations

import pytest
import torch

import analog_compiler as ac

IO = dict(noise_management="NONE", bound_management="NONE", out_noise=0.0, w_noise=0.0,
          inp_res=-1.0, out_res=-1.0, out_bound=1.0)


def _layer(io: dict | None = None, **ir) -> ac.AnalogLinear:
    ir = {"enable": True, "init_from_data": 0, "manage_output_clipping": True, "decay": 0.0,
          **ir}
    rc = ac.InferenceRPUConfig(
        forward=ac.IOParameters(**(IO if io is None else io)),
        mapping=ac.MappingParameter(max_input_size=4),
        pre_post=ac.PrePostProcessingParameter(ac.InputRangeParameter(**ir)))
    torch.manual_seed(0)
    layer = ac.AnalogLinear(8, 6, rpu_config=rc)
    with torch.no_grad():
        layer.analog_module.input_range.copy_(torch.tensor([[1.0, 2.0]]))
    return layer


def _clip_grad(x, g, r) -> torch.Tensor:
    """The clipping part of aihwkit's range gradient (``gradient_relative``) per split, for the
    gradient ``g`` reaching the clipped inputs."""
    rc = r.repeat_interleave(4).view(1, 8)
    col = (g.clamp(max=0) * (x >= rc)).sum(0) - (g.clamp(min=0) * (x <= -rc)).sum(0)
    return col.view(2, 4).sum(1) * r


@pytest.mark.parametrize("min_pct", [0.95, 0.3])
def test_range_gradient_formula(min_pct: float) -> None:
    layer = _layer(output_min_percentage=min_pct).train()
    arr = layer.analog_module
    with torch.no_grad():
        arr.weight.mul_(3.0)  # some outputs clip
    x = 1.5 * torch.randn(64, 8)
    gy = torch.randn(64, 6)
    (layer(x) * gy).sum().backward()
    w = layer.get_weights()[0]
    r = arr.input_range.detach()[0]
    # the oracle: each split's tile outputs, in tile units, are clip(x) / r times its weights
    p, g = [], []
    for i in range(2):
        cols = slice(4 * i, 4 * i + 4)
        xi = torch.minimum(torch.maximum(x[:, cols], -r[i]), r[i]) / r[i]
        keep = (xi @ arr.weight.detach()[0, :, cols].T).abs() < 1.0
        p.append(keep.float().mean())
        g.append((gy * keep) @ w[:, cols])  # clipped outputs pass no gradient
    p, g = torch.stack(p), torch.cat(g, 1)
    assert ((p > 0.3) & (p < 0.95)).all()  # the case where min_pct matters
    extra = -(1 - p) * r * (p < min_pct).float()
    expected = _clip_grad(x, g, r) + extra
    torch.testing.assert_close(arr.input_range.grad[0], expected)
    assert bool((extra != 0).all()) == (min_pct > 0.5)
    if min_pct <= 0.3:  # every split has more unclipped outputs than that: no term
        torch.testing.assert_close(arr.input_range.grad[0], _clip_grad(x, g, r))


def test_ranges_grow_while_outputs_clip() -> None:
    layer = _layer()
    arr = layer.analog_module
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    ac.attach_hwa_hooks(opt, layer)
    x = 0.5 * (torch.rand(64, 8) * 2 - 1)  # inside the ranges: only the output term acts
    with torch.no_grad():
        arr.weight.mul_(8.0)  # outputs clip
    before = arr.input_range.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        layer(x).sum().mul(0.0).backward()  # no loss gradient: the term alone
        opt.step()
    assert (arr.input_range.detach() > before).all()


def test_no_term_without_learning_or_in_eval() -> None:
    layer = _layer(learn_input_range=False).train()
    layer(2 * torch.randn(8, 8)).sum().backward()
    assert layer.analog_module.input_range.grad is None
    layer = _layer().eval()
    x = 2 * torch.randn(8, 8)
    torch.testing.assert_close(layer(x), _layer(manage_output_clipping=False).eval()(x))


@pytest.mark.parametrize("field,value", [("noise_management", "ABS_MAX"),
                                         ("bound_management", "ITERATIVE"),
                                         ("out_bound", 0.0), ("is_perfect", True)])
def test_needs_aihwkit_supported_periphery(field: str, value) -> None:
    with pytest.raises(ValueError, match=f"manage_output_clipping.*forward.{field}"):
        _layer(io={**IO, field: value})


def test_config_round_trip() -> None:
    ir = ac.InputRangeParameter(enable=True, manage_output_clipping=True,
                                output_min_percentage=0.8)
    assert ac.InputRangeParameter.from_json(ir.to_json()) == ir


def test_with_per_batch_sample() -> None:
    """Per-sample weights (noise-free draws here) give the same outputs and range gradient."""
    x = 1.5 * torch.randn(16, 8)
    grads = []
    for per_sample in (False, True):
        layer = _layer()
        layer.rpu_config.modifier = ac.WeightModifierParameter(
            type="add_normal", std_dev=0.0, per_batch_sample=per_sample)
        layer.analog_module.rpu_config = layer.rpu_config
        with torch.no_grad():
            layer.analog_module.weight.mul_(3.0)
        layer.train()(x).sum().backward()
        grads.append(layer.analog_module.input_range.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert bool((grads[0] != 0).all())
