"""Loading of the compiled kernels and ``analog_compiler.runtime.backend()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from analog_compiler.runtime import _ext, backend

import analog_compiler as ac

HAS_BUILD = any(f.startswith("_C.") for f in os.listdir(os.path.dirname(ac.__file__)))
needs_build = pytest.mark.skipif(not HAS_BUILD or not _ext.is_loaded(),
                                 reason="analog_compiler._C is not built or not loaded here")


def run_python(code: str, expect_ok: bool = True, **env: str) -> dict | str:
    """Run ``code`` in a fresh interpreter; it prints one JSON object (returned), or, with
    ``expect_ok=False``, fails (its stderr is returned)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("ANALOG_COMPILER_NO_EXT", "ANALOG_COMPILER_REQUIRE_EXT")}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                         capture_output=True, text=True, timeout=300)
    if not expect_ok:
        assert out.returncode != 0, out.stdout
        return out.stderr
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_backend_names_every_op_and_device() -> None:
    b = backend()
    assert set(b) == {"tile_forward", "tile_backward", "tile_conv2d", "tile_readout",
                      "tile_readout_mean", "im2col2d",
                      "pcm_chip", "device_chip", "tile_update", "transfer_update",
                      "agad_update"}
    for per_device in b.values():
        assert set(per_device) == {"cpu", "cuda"}
        assert per_device["cpu"] in ("cpp", "reference")
        assert per_device["cuda"] in ("cuda", "reference")
    assert ac.runtime.backend is backend


@needs_build
def test_loaded_extension_serves_cpu() -> None:
    assert _ext.is_loaded() and _ext.load_error() is None
    assert backend()["tile_forward"]["cpu"] == "cpp"
    assert backend()["tile_backward"]["cpu"] == "cpp"
    assert backend()["im2col2d"]["cpu"] == "cpp"
    assert backend()["tile_conv2d"]["cpu"] == "cpp"
    assert backend()["tile_readout"]["cpu"] == "cpp"
    assert backend()["tile_readout_mean"]["cpu"] == "cpp"
    assert backend()["pcm_chip"]["cpu"] == "cpp"
    assert backend()["device_chip"]["cpu"] == "cpp"
    assert backend()["agad_update"]["cpu"] == "cpp"
    if not torch.cuda.is_available():
        assert backend()["tile_forward"]["cuda"] == "reference"


PROBE = """
    import json, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        {prelude}
        import torch
        import analog_compiler as ac
        from analog_compiler.runtime import _ext, kernel_io
        io = kernel_io(ac.IOParameters(inp_res=0.0, out_res=0.0, out_noise=0.0))
        y, _ = torch.ops.analog.tile_forward(
            torch.ones(2, 4), torch.ones(1, 3, 4), None, None, torch.tensor(0), [4], [3],
            io.io_f, io.io_i, False)
    print(json.dumps({{"backend": ac.runtime.backend(), "loaded": _ext.is_loaded(),
                      "error": _ext.load_error(), "y": y.tolist(),
                      "warnings": [str(w.message) for w in caught
                                   if "analog_compiler._C" in str(w.message)]}}))
"""


def test_no_ext_env_keeps_the_reference_silently() -> None:
    r = run_python(PROBE.format(prelude="pass"), ANALOG_COMPILER_NO_EXT="1")
    assert r["backend"]["tile_forward"] == {"cpu": "reference", "cuda": "reference"}
    assert not r["loaded"] and "ANALOG_COMPILER_NO_EXT" in r["error"]
    assert r["warnings"] == []
    assert r["y"] == [[4.0] * 3] * 2


def test_failed_load_warns_once_and_keeps_the_reference() -> None:
    prelude = "import sys; sys.modules['analog_compiler._C'] = None"
    r = run_python(PROBE.format(prelude=prelude))
    assert r["backend"]["tile_forward"]["cpu"] == "reference"
    assert len(r["warnings"]) == 1 and "reference" in r["warnings"][0]
    assert r["y"] == [[4.0] * 3] * 2


@needs_build
@pytest.mark.parametrize("first", ["library", "schemas"])
def test_load_order_does_not_matter(first: str) -> None:
    """The C++ library registers nothing when it is loaded, only when ``_ext.load`` asks after
    the layout check: loading it before the package (and its schemas) changes nothing."""
    prelude = "pass"
    if first == "library":  # dlopen the library before the package (and its schemas) exists
        prelude = ("import glob, os, importlib.util, torch; "
                   "spec = importlib.util.find_spec('analog_compiler'); "
                   "torch.ops.load_library(glob.glob(os.path.join("
                   "os.path.dirname(spec.origin), '_C.*'))[0]); "
                   "assert 'analog_compiler' not in __import__('sys').modules")
    r = run_python(PROBE.format(prelude=prelude))
    assert r["backend"]["tile_forward"]["cpu"] == "cpp"
    assert r["loaded"] and r["warnings"] == []
    assert r["y"] == [[4.0] * 3] * 2


# The compiled module, loaded by hand before the package, with one function replaced.
PATCHED_LIBRARY = (
    "import glob, os, sys, importlib.util, torch; "
    "path = glob.glob(os.path.join(os.path.dirname(importlib.util.find_spec("
    "'analog_compiler').origin), '_C.*'))[0]; "
    "spec = importlib.util.spec_from_file_location('analog_compiler._C', path); "
    "lib = importlib.util.module_from_spec(spec); spec.loader.exec_module(lib); "
    "lib.{name} = {value}; sys.modules['analog_compiler._C'] = lib")


@needs_build
def test_layout_matches_the_python_spec() -> None:
    """Both sides pack the same fields in the same order with the same enum codes."""
    import analog_compiler._C as lib
    from analog_compiler.runtime import periphery

    assert lib.periphery_layout() == periphery.layout()
    assert periphery.layout().startswith("float:nm_thres,")


@needs_build
def test_layout_mismatch_keeps_the_reference_and_says_why() -> None:
    prelude = PATCHED_LIBRARY.format(name="periphery_layout",
                                     value="lambda: 'float:nm_thres;int:is_perfect'")
    r = run_python(PROBE.format(prelude=prelude))
    assert r["backend"]["tile_forward"]["cpu"] == "reference" and not r["loaded"]
    assert "periphery layout differs" in r["error"]
    assert "float:nm_thres;int:is_perfect" in r["error"]
    assert len(r["warnings"]) == 1
    assert r["y"] == [[4.0] * 3] * 2


def test_cpu_without_avx2_keeps_the_reference() -> None:
    prelude = ("import torch, platform; platform.machine = lambda: 'x86_64'; "
               "torch.backends.cpu.get_cpu_capability = lambda: 'DEFAULT'")
    r = run_python(PROBE.format(prelude=prelude))
    assert r["backend"]["tile_forward"]["cpu"] == "reference"
    assert "AVX2" in r["error"] and len(r["warnings"]) == 1


@pytest.mark.parametrize("why", ["missing", "layout"])
def test_require_ext_turns_any_fallback_into_an_error(why: str) -> None:
    """CI sets ANALOG_COMPILER_REQUIRE_EXT=1: a broken build must fail, not skip the C++ tests."""
    prelude = ("import sys; sys.modules['analog_compiler._C'] = None" if why == "missing" else
               PATCHED_LIBRARY.format(name="periphery_layout", value="lambda: 'float:'"))
    err = run_python(PROBE.format(prelude=prelude), expect_ok=False,
                     ANALOG_COMPILER_REQUIRE_EXT="1")
    assert "ImportError" in err and "ANALOG_COMPILER_REQUIRE_EXT=1" in err
