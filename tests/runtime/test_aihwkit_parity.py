"""Parity with aihwkit 1.2.0's C++ inference tile, noise off.

The expected outputs (``tests/fixtures/aihwkit_parity.pt``) were recorded from aihwkit's C++ tile
by ``tests/fixtures/record_aihwkit_parity.py`` on the layers of
``tests/fixtures/aihwkit_parity_cases.py`` (aihwkit is not a dependency; to re-record, install
aihwkit 1.2.0 in a separate virtual environment and run the script there). The cases cover
bound management (vectors that need four or more rounds, and the last-round limits
``max_bm_factor`` and ``max_bm_res``; ITERATIVE_WORST_CASE), noise management (NONE,
CONSTANT, ABS_MAX with ``nm_thres``, MAX, ABS_MAX_NP_SUM), the IR drop, resolutions (7/9
bits, 8 bits, a number of steps, a fraction, none), omega 0 and 1 (columnwise or not) and the
issue's multi-tile layers (1024->700 in 512 splits, 777->333 in
256-tiles, 500->300 on one tile).

Both implementations are checked through the public layer API: the compiled kernels in this
process, the pure-PyTorch reference kernels in a subprocess with ``ANALOG_COMPILER_NO_EXT=1``.
At least 99.9 % of the outputs of every case must be within 1e-4 of aihwkit's; the few that are
not are single ADC steps where a different summation order puts a pre-ADC value on the other
side of a rounding midpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import analog_compiler as ac

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(HERE.parent))

from aihwkit_parity_cases import CASES, ParityCase, case_tensors  # noqa: E402

TOL, MIN_FRACTION = 1e-4, 0.999
IMPLS = ("cpp", "reference")


def build_layer(case: ParityCase) -> tuple[ac.AnalogLinear, dict[str, Tensor]]:
    """Our AnalogLinear of ``case`` in eval mode, with the case's weights and bias."""
    rc = ac.InferenceRPUConfig(forward=ac.IOParameters(**case.io_fields()),
                               mapping=ac.MappingParameter(**case.mapping_fields()),
                               drift_compensation=None)
    layer = ac.AnalogLinear(case.in_features, case.out_features, bias=True, rpu_config=rc)
    t = case_tensors(case)
    layer.set_weights(t["weight"], t["bias"])
    layer.eval()
    return layer, t


def tie_layer() -> tuple[ac.AnalogLinear, Tensor]:
    """A layer whose clipped vector is redone at reduction 2, where its inputs of 1.0 land on
    exactly 63 / 2 = 31.5 DAC steps (7-bit DAC): aihwkit's arithmetic rounds them to 31."""
    io = ac.IOParameters(out_noise=0.0, out_res=-1.0, out_bound=1.5)
    rc = ac.InferenceRPUConfig(forward=io, drift_compensation=None)
    layer = ac.AnalogLinear(4, 2, bias=False, rpu_config=rc)
    layer.set_weights(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]]))
    layer.eval()
    return layer, torch.tensor([[1.0, 1.0, 0.0, 0.0]])


def run_all() -> dict[str, Tensor]:
    """Every fixture case (and the tie layer) through the kernels this process uses."""
    out = {}
    with torch.no_grad():
        for case in CASES:
            layer, t = build_layer(case)
            out[case.name] = layer(t["x"])
        layer, x = tie_layer()
        out["tie"] = layer(x)
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict[str, Tensor]]:
    """``{impl: {case: output}}``: ``cpp`` in this process (when the compiled kernels are
    loaded), ``reference`` in a subprocess that disables them."""
    results = {}
    if ac.runtime.backend()["tile_forward"]["cpu"] == "cpp":
        results["cpp"] = run_all()
    path = tmp_path_factory.mktemp("parity") / "reference.pt"
    # the reference kernels on purpose: CI's ANALOG_COMPILER_REQUIRE_EXT=1 does not apply here
    env = {k: v for k, v in os.environ.items() if k != "ANALOG_COMPILER_REQUIRE_EXT"}
    env.update(ANALOG_COMPILER_NO_EXT="1", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, str(path)], env=env, check=True, timeout=600)
    results["reference"] = torch.load(path, weights_only=True)
    return results


@pytest.fixture(scope="module")
def expected() -> dict[str, Tensor]:
    data = torch.load(FIXTURES / "aihwkit_parity.pt", weights_only=True)
    assert data["aihwkit_version"] == "1.2.0"
    return data


def _get(outputs: dict, impl: str) -> dict[str, Tensor]:
    if impl not in outputs:
        pytest.skip("the compiled kernels are not loaded")
    return outputs[impl]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_aihwkit_cpp_tile(outputs, expected, impl: str, case: ParityCase) -> None:
    y = _get(outputs, impl)[case.name]
    ref = expected[case.name]
    assert y.shape == ref.shape
    close = (y - ref).abs() <= TOL
    frac = float(close.float().mean())
    worst = float((y - ref).abs().max())
    assert frac >= MIN_FRACTION, (
        f"{case.name} ({impl}): {frac:.5%} of outputs within {TOL} of aihwkit's "
        f"({int((~close).sum())} differ, {int((~close).any(1).sum())} of {y.shape[0]} vectors, "
        f"largest difference {worst:.4g})")


@pytest.mark.parametrize("impl", IMPLS)
def test_dac_tie_rounds_as_aihwkit(outputs, impl: str) -> None:
    """At reduction 2 the inputs 1.0 sit on 31.5 DAC steps: aihwkit's ``(x * (1 / alpha)) / red
    / step`` in float32 gives 31.4999981 -> 31 steps, so y0 = 2 * 2 * 31 / 63 (the reciprocal
    form ``x * (1 / (alpha * red * step))`` gave exactly 31.5 -> 32)."""
    y = _get(outputs, impl)["tie"]
    assert y[0, 0].item() == pytest.approx(2 * 2 * 31 / 63, abs=1e-6)
    assert y[0, 1].item() == pytest.approx(2 * 0.5 * 31 / 63, abs=1e-6)  # same reduction


def test_oracle_agrees_and_cases_reach_the_last_round(expected) -> None:
    """The independent oracle (tests/analog_oracle.py) agrees with aihwkit on the multi-tile
    cases, and those cases exercise what they claim: vectors that need four or more rounds
    (reduction >= 8), some up to the last reduction 16 of a 7-bit DAC."""
    from analog_oracle import oracle_forward

    for name in ("bm_500x300", "bm_777x333_tiles256"):
        case = next(c for c in CASES if c.name == name)
        layer, t = build_layer(case)
        plan = layer.analog_module.plan
        w, scales, start = t["weight"].clone(), [], 0
        for size in plan.in_sizes:  # omega 1 columnwise: one scale per row and input split
            s = w[:, start:start + size].abs().amax(1)
            w[:, start:start + size] /= s.unsqueeze(1)
            scales.append(s)
            start += size
        io = ac.IOParameters(**case.io_fields())
        y, _, reds = oracle_forward(t["x"], w.unsqueeze(0), io, list(plan.in_sizes),
                                    list(plan.out_sizes), torch.stack(scales).unsqueeze(0),
                                    t["bias"])
        close = (y - expected[name]).abs() <= TOL
        assert float(close.float().mean()) >= MIN_FRACTION, name
        deepest = reds.amax(dim=(0, 1, 2))  # per vector, over its tiles
        assert int((deepest >= 8).sum()) >= 10, name
        assert int((deepest == 16).sum()) >= 5, name
        assert float(deepest.max()) == 16.0, name


if __name__ == "__main__":  # the subprocess of the ``outputs`` fixture
    torch.set_num_threads(1)
    torch.save(run_all(), sys.argv[1])
