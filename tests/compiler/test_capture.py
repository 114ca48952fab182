"""Capture: tracing with leaf rules, shape propagation, failures returned as text."""

from __future__ import annotations

import pytest
import torch
from compiler_models import DataDependent, ResNetTiny

from analog_compiler.compiler.capture import has_forward, propagate_shapes, trace


def test_trace_keeps_the_whole_tree_and_annotates_shapes():
    model = ResNetTiny()
    gm, error = trace(model, lambda m, qn: False)
    assert error == "" and set(dict(gm.named_children())) == set(dict(model.named_children()))
    assert gm.layer1 is model.layer1  # the same submodule objects
    propagate_shapes(gm, torch.randn(2, 3, 8, 8))
    shapes = {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
              if "tensor_meta" in n.meta}
    assert shapes["x"] == (2, 3, 8, 8) and shapes["fc"] == (2, 10)


def test_trace_failure_is_returned_not_raised():
    gm, error = trace(DataDependent(), lambda m, qn: False)
    assert gm is None and error.startswith("TraceError:") and "\n" not in error


def test_shape_errors_name_the_node(capsys):
    gm, _ = trace(ResNetTiny(), lambda m, qn: False)
    with pytest.raises(ValueError, match=r"input 0: shape \(2, 1, 8, 8\).*node 'stem_0'"):
        propagate_shapes(gm, (torch.randn(2, 1, 8, 8),))
    assert "Traceback" not in capsys.readouterr().err


def test_containers_have_no_forward():
    assert not has_forward(torch.nn.ModuleList()) and has_forward(torch.nn.Sequential())
