"""Compiler test set-up: the shared model zoo (``compiler_models``) and configs."""

import sys
from pathlib import Path

import pytest
import torch

import analog_compiler as ac

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def ideal():
    """Ideal tiles, small so that layers split into several tiles."""
    return ac.FloatingPointRPUConfig(mapping=ac.MappingParameter(max_input_size=16,
                                                                 max_output_size=12))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
