"""Per-forward counts: input vectors (tokens, conv reuse), MACs vs the flop counter of the digital
twin, tile MVMs, ADC conversions, the analog share, and no side effects of the counting run."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import analog_compiler as ac
from analog_compiler.reporting.build import BM_NOTE
from analog_compiler.reporting.counting import vector_work


def digital_macs(model: nn.Module, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(x)
    return flops.get_total_flops() // 2


def small_tiles() -> ac.InferenceRPUConfig:
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(max_input_size=64,
                                                             max_output_size=48))


def test_conv_reuse_factor_and_macs_match_digital_twin():
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Conv2d(3, 80, 3, stride=2, padding=1), nn.ReLU(),
                            nn.Conv2d(80, 80, 3, groups=4, padding=1)).eval()
    analog = nn.Sequential(ac.AnalogConv2d.from_digital(digital[0], small_tiles()), nn.ReLU(),
                           ac.AnalogConv2d.from_digital(digital[2], small_tiles())).eval()
    x = torch.randn(2, 3, 16, 16)
    rep = ac.report(analog, x)
    conv0, conv2 = rep.rows
    assert conv0.vectors == conv2.vectors == 2 * 8 * 8   # batch x output positions
    assert conv0.macs + conv2.macs == digital_macs(digital, x)
    plan = analog[2].analog_module.plan                  # 4 groups, in 180 -> 3x60, out 20
    assert (plan.groups, plan.n_in, plan.n_out) == (4, 3, 1)
    assert conv2.tile_mvms == 128 * 12
    assert conv2.adc_conversions == 128 * 4 * 3 * 20     # used rows of every tile MVM
    assert conv0.adc_conversions == 128 * 80 and conv0.tile_mvms == 128 * 2
    assert rep.totals.digital_macs == 0 and rep.totals.analog_share == 1.0
    assert rep.input_shape == (2, 3, 16, 16)
    assert BM_NOTE in rep.notes


def test_token_count_and_analog_share_with_attention():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = ac.AnalogLinear(32, 96)
            self.out = nn.Linear(32, 32)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
            return self.out(att @ v)

    x = torch.randn(3, 7, 32)
    rep = ac.report(Block(), x)
    qkv, out = rep.rows
    assert qkv.vectors == 21 and qkv.macs == 21 * 32 * 96
    assert out.status == "digital" and out.macs == 21 * 32 * 32
    attention = 2 * 3 * 7 * 7 * 32
    assert rep.totals.digital_macs == 21 * 32 * 32 + attention
    assert rep.totals.analog_share == pytest.approx(qkv.macs / (qkv.macs + 21 * 32 * 32
                                                                + attention))


def test_shared_layer_counts_every_call_and_kwargs_inputs():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = ac.AnalogLinear(8, 8, rpu_config=ac.FloatingPointRPUConfig())

        def forward(self, a, *, b):
            return self.fc(self.fc(a)) + b

    rep = ac.report(Twice(), {"a": torch.randn(5, 8), "b": torch.zeros(5, 8)})
    assert rep.rows[0].vectors == 10 and rep.rows[0].macs == 640
    assert BM_NOTE not in rep.notes  # ideal tiles: no bound management

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = ac.AnalogLinear(8, 8)

        def forward(self, a, b):
            return self.fc(torch.cat([a, b]))

    rep = ac.report(Pair(), (torch.randn(4, 8), torch.randn(2, 8)))
    assert rep.rows[0].vectors == 6 and rep.input_shape == (4, 8)


def test_counting_run_has_no_side_effects():
    model = nn.Sequential(ac.AnalogConv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).train()
    stats = model[1].running_mean.clone()
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    ac.report(model, torch.ones(2, 3, 8, 8))
    assert torch.equal(torch.rand(3), expected)            # RNG stream untouched
    assert torch.equal(model[1].running_mean, stats)        # ran in eval mode
    assert all(m.training for m in model.modules())         # modes restored


def test_vector_work_is_plan_arithmetic():
    plan = ac.TilePlan.build(1000, 700, 512, 512, groups=2)
    work = vector_work(plan)
    assert work.macs == 2 * 1000 * 700
    assert work.tile_mvms == 2 * 2 * 2
    assert work.adc_conversions == 2 * 2 * 700


def test_cpu_scaled_dot_product_attention_counts_as_digital():
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = ac.AnalogLinear(64, 64)

        def forward(self, x):
            q = self.qkv(x).view(2, 5, 4, 16).transpose(1, 2)
            mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    rep = ac.report(Attention(), torch.randn(2, 5, 64))
    assert rep.totals.digital_macs == 2 * (2 * 4 * 5 * 5 * 16)  # scores and weighted values
