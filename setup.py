"""Build script: the Python packages plus the optional C++ (and CUDA) kernel library.

``runtime/`` is installed as ``analog_compiler.runtime`` (no top-level ``runtime`` module).
The extension ``analog_compiler._C`` is built from ``csrc/`` when it exists and torch's
toolchain works; ``ANALOG_COMPILER_NO_EXT=1`` skips it, and a failed build falls back to the
pure-PyTorch reference kernels with a warning (``ANALOG_COMPILER_REQUIRE_EXT=1``, as CI sets it,
makes a failed build fail the install). CUDA sources (``csrc/cuda/*.cu``, none yet) are compiled
only when CUDA is available (``ANALOG_COMPILER_NO_CUDA=1`` forces a CPU-only build).
"""

from __future__ import annotations

import glob
import os
import platform
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def find_packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {"analog_compiler": "analog_compiler",
                                 "analog_compiler.runtime": "runtime"}
    for pkg, base in package_dir.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            if "__init__.py" in files and "__pycache__" not in dirpath:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, base))
                name = pkg if rel == "." else pkg + "." + rel.replace(os.sep, ".")
                if name.startswith("analog_compiler.runtime") and pkg == "analog_compiler":
                    continue
                packages.append(name)
    return sorted(set(packages)), package_dir


def extension_kwargs() -> dict:
    if os.environ.get("ANALOG_COMPILER_NO_EXT", "0") == "1":
        return {}
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    if not sources:
        return {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except Exception as exc:  # pragma: no cover - depends on the build machine
        print(f"analog-compiler: building without the C++ kernels ({exc})", file=sys.stderr)
        return {}
    debug = os.environ.get("DEBUG", "0") == "1"
    # Portable code, not -march=native (a wheel built on one machine must run on another): on
    # x86-64 the AVX2/FMA baseline of every x86 CPU since 2013; runtime/_ext.py checks the CPU
    # before it loads the library and otherwise keeps the reference kernels, with a message.
    isa = ["-mavx2", "-mfma", "-mf16c"] if platform.machine().lower() in ("x86_64", "amd64") \
        else []
    cxx = ["-O0", "-g"] if debug else ["-O3", *isa, "-fopenmp", "-fno-math-errno"]
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    use_cuda = (bool(cuda_sources) and torch.cuda.is_available()
                and os.environ.get("ANALOG_COMPILER_NO_CUDA") != "1")
    if use_cuda:
        ext = CUDAExtension("analog_compiler._C", sources + cuda_sources,
                            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
                            extra_link_args=["-fopenmp"], py_limited_api=False)
    else:
        ext = CppExtension("analog_compiler._C", sources, extra_compile_args={"cxx": cxx},
                           extra_link_args=[] if debug else ["-fopenmp"])

    class OptionalBuild(BuildExtension):
        """Keep installing when the compiler fails (the reference kernels take over), unless
        ``ANALOG_COMPILER_REQUIRE_EXT=1`` (CI) asks for the compiled kernels."""

        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # pragma: no cover - depends on the build machine
                if os.environ.get("ANALOG_COMPILER_REQUIRE_EXT", "0") == "1":
                    raise
                print(f"analog-compiler: WARNING: C++ kernels failed to build ({exc}); "
                      "the pure-PyTorch reference kernels will be used", file=sys.stderr)

    return {"ext_modules": [ext], "cmdclass": {"build_ext": OptionalBuild.with_options(
        use_ninja=True)}}


packages, package_dir = find_packages()
setup(packages=packages, package_dir=package_dir, **extension_kwargs())
