"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [docs/hooks.py]``).

Three jobs, so that the site follows the code without anyone editing the docs:

1. **Sources as installed.** ``runtime/`` is installed as ``analog_compiler.runtime``; a copy of
   the sources under ``build/docs-src`` lays the package out that way, so griffe (the
   static analyser behind mkdocstrings) resolves every re-export and reads the field docstrings
   of the config dataclasses (griffe finds sub-packages only inside their parent's folder).
2. **API reference from ``analog_compiler.__all__``.** One page per public name
   (``api/<Name>.md``) plus an index page, grouped by kind (functions, layers, configs, enums,
   errors, other objects) in the order of ``__all__``; a name added to ``__all__`` appears on the
   next build. A public name whose docstring is missing (or is only the signature that
   ``@dataclass`` writes) is logged as a warning, which ``mkdocs build --strict`` turns into a
   failure.
3. **Figures from the examples.** ``docs/figures.py`` draws them at build time into a cache keyed
   by the hash of everything they depend on (package, runtime, C++ sources, examples, the script,
   which kernels serve the ops),
   so a rebuild or ``mkdocs serve`` costs nothing and a figure is never older than the code.
   ``ANALOG_DOCS_QUICK_FIGURES=1`` draws them from fewer chips (the test suite's fast build);
   ``ANALOG_DOCS_CACHE`` moves the cache.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.util
import inspect
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "analog_compiler"
#: Where the staged copy of the package goes (``plugins.mkdocstrings...paths`` in mkdocs.yml).
STAGE = ROOT / "build" / "docs-src"
#: Groups of the API reference, in nav order.
GROUPS = ("Functions", "Layers", "Configs", "Enums", "Errors", "Other objects")
#: Trees whose content decides the figures.
FIGURE_INPUTS = ("analog_compiler", "runtime", "csrc", "examples", "docs/figures.py")

log = logging.getLogger("mkdocs.plugins.analog_compiler_docs")


# --- 1. the package laid out as installed -------------------------------------------------------

def stage_sources(root: Path = ROOT, stage: Path = STAGE) -> Path:
    """Copy ``analog_compiler`` under ``stage`` with ``runtime/`` inside it, as installed;
    returns ``stage`` (a copy of the sources only: a few hundred kB)."""
    pkg = stage / PACKAGE
    shutil.rmtree(pkg, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    shutil.copytree(root / PACKAGE, pkg, ignore=ignore)
    shutil.copytree(root / "runtime", pkg / "runtime", ignore=ignore)
    return stage


# --- 2. the API reference -----------------------------------------------------------------------

def group_of(obj: Any) -> str:
    """Which group of the API reference a public object belongs to."""
    import torch

    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "Errors"
        if issubclass(obj, enum.Enum):
            return "Enums"
        if issubclass(obj, torch.nn.Module):
            return "Layers"
        if dataclasses.is_dataclass(obj) and obj.__module__.startswith(f"{PACKAGE}.runtime.config"):
            return "Configs"
        return "Other objects"
    if inspect.isroutine(obj):
        return "Functions"
    return "Other objects"


def public_names(module: Any) -> list[str]:
    """``module.__all__``, checked: every name listed once and importable."""
    names = list(getattr(module, "__all__", []))
    if not names:
        raise ValueError(f"{module.__name__}.__all__ is missing or empty")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        log.warning("%s.__all__ lists %s more than once", module.__name__, ", ".join(dupes))
    for name in names:
        if not hasattr(module, name):
            log.warning("%s.__all__ lists %r, which the package does not define",
                        module.__name__, name)
    return list(dict.fromkeys(n for n in names if hasattr(module, n)))


def docstrings(names: list[str], search_path: Path, package: str = PACKAGE) -> dict[str, str]:
    """``{name: docstring}`` of ``package``'s names as griffe reads them statically from
    ``search_path`` (the object's own docstring, or the string literal under an assignment for
    data such as ``DEFAULT_LAYER_MAP``); "" where there is none or the name does not resolve."""
    import griffe

    loader = griffe.GriffeLoader(search_paths=[str(search_path)], allow_inspection=False)
    pkg = loader.load(package, try_relative_path=False)
    loader.resolve_aliases(implicit=False, external=False)
    docs = {}
    for name in names:
        try:
            target = pkg[name]
            docs[name] = target.docstring.value.strip() if target.docstring else ""
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            docs[name] = ""
    return docs


def missing_docstrings(names: list[str], search_path: Path, package: str = PACKAGE) -> list[str]:
    """The names of ``package`` whose object has no docstring of its own (see ``docstrings``)."""
    return [n for n, doc in docstrings(names, search_path, package).items() if not doc]


def summary(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, for the index table."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]
    return sentence.replace("|", "\\|")


def api_pages(module: Any, docs: dict[str, str]
              ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``({path: markdown}, {group: [path, ...]})`` of the API reference of ``module``'s names
    (the keys of ``docs``, in order; the values are their docstrings)."""
    pages: dict[str, str] = {}
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    rows: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, doc in docs.items():
        group = group_of(getattr(module, name))
        path = f"api/{name}.md"
        pages[path] = (f"::: {module.__name__}.{name}\n    options:\n"
                       "      heading_level: 1\n      show_root_heading: true\n"
                       "      show_root_full_path: false\n")
        groups[group].append(path)
        rows[group].append(f"| [`{name}`]({name}.md) | {summary(doc)} |")
    index = ["# API reference", "",
             f"Every public name of `{module.__name__}` (its `__all__`), one page each, built "
             "from the docstrings. Import them from the package: "
             f"`import {module.__name__} as ac; ac.convert(...)`.", ""]
    for group in GROUPS:
        if rows[group]:
            index += [f"## {group}", "", "| name | what it is |", "| --- | --- |",
                      *rows[group], ""]
    pages["api/index.md"] = "\n".join(index)
    return pages, {g: p for g, p in groups.items() if p}


def _import_package() -> Any:
    import importlib

    return importlib.import_module(PACKAGE)


#: The API reference of the current build: ``{"missing": [...], "pages": {...}}`` (on_config).
_BUILD: dict[str, Any] = {}


@event_priority(100)
def on_config(config: Any) -> Any:
    """Stage the sources, read the docstrings, add the API reference to the nav."""
    module = _import_package()
    docs = docstrings(public_names(module), stage_sources())
    pages, groups = api_pages(module, docs)
    _BUILD.update(missing=[n for n, doc in docs.items() if not doc], pages=pages)
    section: list[Any] = [{"Overview": "api/index.md"}]
    section += [{group: [{Path(p).stem: p} for p in paths]} for group, paths in groups.items()]
    nav = config["nav"] or []
    nav.append({"API reference": section})
    config["nav"] = nav
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the API pages (checking docstrings) and the figures to the site's files."""
    for name in _BUILD["missing"]:
        log.warning("%s.%s has no docstring: every public name needs one (it is its page of "
                    "the API reference)", PACKAGE, name)
    for path, text in _BUILD["pages"].items():
        files.append(File.generated(config, path, content=text))
    for path in build_figures():
        files.append(File.generated(config, f"figures/{path.name}", abs_src_path=str(path)))
    return files


# --- 3. figures ---------------------------------------------------------------------------------

def inputs_hash(root: Path = ROOT, inputs: tuple[str, ...] = FIGURE_INPUTS, extra: str = "") -> str:
    """sha256 over the paths and contents of every source file under ``inputs``."""
    digest = hashlib.sha256(extra.encode())
    for top in inputs:
        base = root / top
        files = [base] if base.is_file() else sorted(
            p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".so", ".pyc"))
        for path in files:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _figures_module() -> Any:
    spec = importlib.util.spec_from_file_location("analog_docs_figures",
                                                  ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build_figures() -> list[Path]:
    """The figure files, drawn now unless the cache already holds them for these inputs."""
    quick = os.environ.get("ANALOG_DOCS_QUICK_FIGURES", "0") == "1"
    cache = Path(os.environ.get("ANALOG_DOCS_CACHE", ROOT / "build" / "docs-figures"))
    from analog_compiler.runtime import backend  # C++ and reference kernels draw differently

    out = cache / f"{'quick' if quick else 'full'}-{inputs_hash(extra=f'{quick}{backend()}')}"
    figures = _figures_module()
    expected = [out / name for name in figures.FIGURES]
    if not all(p.exists() for p in expected):
        log.info("drawing the figures into %s (quick=%s)", out, quick)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        figures.build(tmp, quick=quick)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        for stale in cache.glob(f"{'quick' if quick else 'full'}-*"):  # older inputs' figures
            if stale != out:
                shutil.rmtree(stale, ignore_errors=True)
    return expected
