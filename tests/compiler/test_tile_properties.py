"""Property: for any layer shape and tile size, convert's tile grid is the balanced split and
ideal tiles reproduce the digital layer."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import analog_compiler as ac


def splits(size: int, max_size: int) -> list[int]:
    n = 1 if max_size == 0 or size <= max_size else math.ceil(size / max_size)
    return [size // n + (1 if i < size % n else 0) for i in range(n)]


@settings(max_examples=25, deadline=None)
@given(d_in=st.integers(1, 70), d_out=st.integers(1, 70), max_in=st.integers(0, 33),
       max_out=st.integers(0, 33), conv=st.booleans(), groups=st.sampled_from([1, 2]))
def test_tile_grid_is_the_balanced_split(d_in, d_out, max_in, max_out, conv, groups):
    torch.manual_seed(0)
    if conv:
        c_in, c_out = 2 * ((d_in + 1) // 2) if groups == 2 else d_in, 2 * ((d_out + 1) // 2)
        layer = nn.Conv1d(c_in, c_out, 3, groups=groups)
        rows, cols, g = c_out // groups, c_in // groups * 3, groups
        x = torch.randn(2, c_in, 5)
    else:
        layer, rows, cols, g = nn.Linear(d_in, d_out), d_out, d_in, 1
        x = torch.randn(3, d_in)
    rc = ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=max_in,
                                                               max_output_size=max_out))
    analog = ac.convert(nn.Sequential(layer), rc)[0]
    plan = analog.analog_module.plan
    assert list(plan.in_sizes) == splits(cols, max_in)
    assert list(plan.out_sizes) == splits(rows, max_out)
    assert analog.analog_tile_count() == g * len(splits(cols, max_in)) * len(splits(rows, max_out))
    assert torch.allclose(analog(x), layer(x), atol=1e-5, rtol=1e-5)
