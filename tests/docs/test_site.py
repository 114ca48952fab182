"""The documentation site: a strict build (``mkdocs build --strict``, quick figures) and the
hooks that generate its API reference from ``analog_compiler.__all__``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import analog_compiler as ac

ROOT = Path(__file__).resolve().parents[2]


def _hooks():
    spec = importlib.util.spec_from_file_location("analog_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once in strict mode (figures from one chip, cache in a temp folder)."""
    tmp = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "ANALOG_DOCS_QUICK_FIGURES": "1", "ANALOG_DOCS_CACHE": str(tmp / "cache"),
           "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return tmp / "site"


def test_every_public_name_has_a_page(site):
    index = (site / "api" / "index.html").read_text()
    for name in ac.__all__:
        page = site / "api" / name / "index.html"
        assert page.exists(), name
        assert f'id="analog_compiler.{name}"' in page.read_text(), name
        assert f'href="{name}/"' in index, name


def _nav_pages(nav) -> list[str]:
    """The Markdown paths in an mkdocs nav (nested lists of {title: path or list})."""
    pages: list[str] = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_guide_pages_and_figures_are_built(site):
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = _nav_pages(nav)
    for page in ("install.md", "guide/convert.md", "guide/physics.md", "guide/chip.md",
                 "guide/hwa.md", "guide/training.md", "guide/export.md", "guide/sweeps.md",
                 "guide/cost.md", "guide/recurrent.md", "guide/internals.md", "cli.md",
                 "migrating.md"):
        assert page in pages, page
    search = json.loads((site / "search" / "search_index.json").read_text())
    locations = {doc["location"] for doc in search["docs"]}
    for page in pages:
        url = "" if page == "index.md" else page.removesuffix(".md") + "/"
        assert (site / url / "index.html").exists(), page
        assert url in locations, page  # searchable
    for name in ("accuracy_vs_time.png", "tile_report.png", "tile_report_128.png",
                 "cost_hermes.png", "floorplan_hermes.png", "device_response.png"):
        png = site / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    html = "".join(p.read_text() for p in site.rglob("index.html"))
    assert 'src="../../figures/accuracy_vs_time.png"' in html
    training = (site / "guide" / "training" / "index.html").read_text()
    assert 'src="../../figures/device_response.png"' in training
    assert 'src="../../figures/tile_report.png"' in html
    assert 'src="../../figures/tile_report_128.png"' in html
    assert 'src="../../figures/floorplan_hermes.png"' in html


def test_formulas_and_api_links_of_the_new_guide_pages(site):
    cost = (site / "guide" / "cost" / "index.html").read_text()
    formulas = cost.count('class="arithmatex"')
    assert formulas >= 5 and cost.count("<math") == formulas  # every formula as MathML
    training = (site / "guide" / "training" / "index.html").read_text()
    formulas = training.count('class="arithmatex"')
    assert formulas >= 20 and training.count("<math") == formulas
    for page, names in (("sweeps", ("sweep", "SweepResult", "fully_shard_analog")),
                        ("cost", ("report", "HardwareModel")),
                        ("recurrent", ("AnalogRNN", "AnalogLSTM", "AnalogSequential")),
                        ("training", ("SingleRPUConfig", "UpdateParameters", "PulseType",
                                      "SoftBoundsDevice", "PiecewiseStepDevice", "AnalogSGD",
                                      "MixedPrecisionCompound"))):
        text = (site / "guide" / page / "index.html").read_text()
        for name in names:
            assert f'href="../../api/{name}/#analog_compiler.{name}"' in text, (page, name)


def test_device_response_curves_follow_the_device_formulas():
    """The figure's curves come from real AnalogSGD steps of one pulse each: without spreads
    they are the closed forms of the constant step and of soft bounds."""
    spec = importlib.util.spec_from_file_location("analog_docs_figures",
                                                  ROOT / "docs" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    exact = {"dw_min": 0.05, "dw_min_dtod": 0.0, "dw_min_std": 0.0, "up_down_dtod": 0.0,
             "w_max_dtod": 0.0, "w_min_dtod": 0.0, "construction_seed": 1}
    n = torch.arange(21, dtype=torch.float64)
    const = figures.response_curve(ac.ConstantStepDevice(**exact), pulses=20, devices=2)
    up = (0.05 * n).clamp(max=0.6)
    down = (0.6 - 0.05 * n).clamp(min=-0.6)
    expected = torch.cat([up, down[1:]])[:, None].expand(-1, 2)
    torch.testing.assert_close(const.double(), expected, atol=1e-5, rtol=0)
    soft = figures.response_curve(ac.SoftBoundsDevice(w_max=1.0, w_min=-1.0, **exact),
                                  pulses=20, devices=1)[:, 0].double()
    up = 1.0 - 0.95 ** n                                   # w_n = b (1 - (1 - dw / b)^n)
    down = -1.0 + (up[-1] + 1.0) * 0.95 ** n               # towards -1 at the same rate
    torch.testing.assert_close(soft, torch.cat([up, down[1:]]), atol=1e-5, rtol=0)


def test_missing_docstrings_are_found(tmp_path):
    hooks = _hooks()
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        """A package."""
        from .mod import Documented, Bare, documented, bare, TABLE, RAW, Config
        __all__ = ["Documented", "Bare", "documented", "bare", "TABLE", "RAW", "Config"]
    '''))
    (pkg / "mod.py").write_text(textwrap.dedent('''
        import dataclasses
        class Documented:
            """Has one."""
        class Bare:
            pass
        def documented():
            """Has one."""
        def bare():
            pass
        TABLE = {}
        """A documented data object."""
        RAW = {}
        @dataclasses.dataclass
        class Config:
            x: int = 0
            """A field's docstring is not the class's."""
    '''))
    missing = hooks.missing_docstrings(
        ["Documented", "Bare", "documented", "bare", "TABLE", "RAW", "Config", "Unknown"],
        tmp_path, package="fakepkg")
    assert missing == ["Bare", "bare", "RAW", "Config", "Unknown"]
    docs = hooks.docstrings(["TABLE", "Documented"], tmp_path, package="fakepkg")
    assert docs == {"TABLE": "A documented data object.", "Documented": "Has one."}


def test_groups():
    hooks = _hooks()
    assert hooks.group_of(ac.convert) == "Functions"
    assert hooks.group_of(ac.AnalogLinear) == "Layers"
    assert hooks.group_of(ac.InferenceRPUConfig) == "Configs"
    assert hooks.group_of(ac.WeightNoiseType) == "Enums"
    assert hooks.group_of(ac.ModuleError) == "Errors"
    assert hooks.group_of(ac.DEFAULT_LAYER_MAP) == "Other objects"


def test_api_pages_follow_all():
    hooks = _hooks()
    names = hooks.public_names(ac)
    assert names == list(dict.fromkeys(ac.__all__))
    docs = {name: f"Doc of {name}. More." for name in names}
    pages, groups = hooks.api_pages(ac, docs)
    assert set(pages) == {f"api/{n}.md" for n in names} | {"api/index.md"}
    assert sorted(p for paths in groups.values() for p in paths) == sorted(
        f"api/{n}.md" for n in names)
    assert list(groups) == [g for g in hooks.GROUPS if g in groups]
    assert "| [`convert`](convert.md) | Doc of convert. |" in pages["api/index.md"]


def test_inputs_hash_follows_content(tmp_path):
    hooks = _hooks()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    first = hooks.inputs_hash(tmp_path, ("src",))
    assert hooks.inputs_hash(tmp_path, ("src",)) == first
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert hooks.inputs_hash(tmp_path, ("src",)) != first


def _mathml():
    spec = importlib.util.spec_from_file_location("analog_docs_mathml", ROOT / "docs" / "mathml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_formulas_become_mathml(caplog):
    mathml = _mathml()
    page = ('<p><span class="arithmatex">\\(a &lt; \\text{out\\_noise}\\)</span></p>'
            '<div class="arithmatex">\\[\nx^2\n\\]</div>')
    out = mathml.render(page)
    assert '<span class="arithmatex"><math' in out and 'display="inline"' in out
    assert '<div class="arithmatex"><math' in out and 'display="block"' in out
    assert "<mo>&#x0003C;</mo>" in out and "<mtext>out_noise</mtext>" in out
    assert "\\(" not in out and "\\[" not in out
    bad = '<span class="arithmatex">\\(x^\\)</span>'
    with caplog.at_level("WARNING"):
        assert mathml.render(bad, "page.md") == bad  # left as it was, and a warning
    assert "page.md: formula 'x^' does not convert" in caplog.text


def test_site_has_no_raw_tex(site):
    for page in site.rglob("index.html"):
        text = page.read_text()
        assert 'class="arithmatex">\\(' not in text and 'class="arithmatex">\\[' not in text, page


def test_migrating_page_covers_the_readme_differences():
    """Every difference the README's aihwkit paragraph lists has its entry on the migrating
    page (the item's wording up to its first parenthesis or comma, case-insensitive)."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    head = "Where aihwkit has a known flaw we do differently, and say so:"
    assert head in readme
    items = re.split(r"\.\s", readme.split(head, 1)[1], maxsplit=1)[0].split(";")
    assert len(items) >= 4
    page = " ".join((ROOT / "docs" / "migrating.md").read_text().split()).lower()
    for item in items:
        key = item.split("(")[0].split(",")[0].strip().lower()
        assert key and key in page, key
