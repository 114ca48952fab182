"""MkDocs hook: the formulas of the site as MathML, written at build time.

``pymdownx.arithmatex`` (generic mode) wraps every formula in ``<span class="arithmatex">\\(
... \\)</span>`` (inline) or ``<div class="arithmatex">\\[ ... \\]</div>`` (display); this hook
converts the TeX inside to MathML with ``latex2mathml``, which browsers render natively, so the
pages need no JavaScript and no network to show their formulas. A formula that does not
convert is logged as a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.plugins.analog_compiler_mathml")

#: An arithmatex wrapper: its tag and its (HTML-escaped) TeX with the delimiters.
FORMULA = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
DELIMITERS = re.compile(r"^\s*\\[(\[]|\\[)\]]\s*$")
#: ``\text{...}`` groups, whose ``\_`` is TeX's underscore (latex2mathml keeps the backslash).
TEXT_GROUP = re.compile(r"(\\text(?:tt|rm)?\{)([^{}]*)(\})")


def to_mathml(tex: str, display: bool) -> str:
    """MathML of one TeX formula (without delimiters)."""
    tex = TEXT_GROUP.sub(lambda m: m.group(1) + m.group(2).replace("\\_", "_") + m.group(3),
                         tex.strip())
    return convert(tex, display="block" if display else "inline")


def render(text: str, where: str = "") -> str:
    """``text`` (a page's HTML) with every arithmatex formula replaced by MathML."""
    def replace(match: re.Match) -> str:
        tag, body = match.group(1), html.unescape(match.group(2))
        tex = DELIMITERS.sub("", body)
        try:
            mathml = to_mathml(tex, display=tag == "div")
        except Exception as exc:  # noqa: BLE001 - any converter failure is the page's error
            log.warning("%s: formula %r does not convert to MathML: %s", where, tex, exc)
            return match.group(0)
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return FORMULA.sub(replace, text)


def on_page_content(html_text: str, page: Any, **_: Any) -> str:
    """Convert the page's formulas (MkDocs event)."""
    return render(html_text, page.file.src_uri)
