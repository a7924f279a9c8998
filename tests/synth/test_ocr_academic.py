"""ocr_academic in real Chromium: a short page's markup holds the source's math, KaTeX typesets it, blocks never
straddle a page break, a LaTeX source converts, and TeX that KaTeX rejects drops the page with the reason."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pipelines.operator import ready
from synth.ocr.academic_op import DEMO_SOURCES, AcademicPages
from synth.ocr.markup import blocks, tex_to_markdown

SHORT = """# Energy

Mass and energy are related by $E = mc^2$ in special relativity.

$$
\\int_0^1 x^2 \\, dx = \\frac{1}{3}
$$
"""


def row(key: str, text: str = "", source: str = "doc.md", meta: dict | None = None) -> dict:
    return {"key": key, "parent": None, "image": None, "text": text, "source": source, "dataset": "papers",
            "meta": json.dumps(meta or {})}


@pytest.fixture(scope="module")
def academic() -> AcademicPages:
    return ready(AcademicPages({"page_height": 520, "page_width": 600, "verify": {"threads": 0}}))


def test_a_short_page_pairs_its_image_with_the_sources_math(academic: AcademicPages) -> None:
    (page,) = list(academic.generate(row("short", SHORT)))
    assert page.get("keep", True), page.get("reason")
    assert "$E = mc^2$" in page["text"] and "\\int_0^1 x^2 \\, dx = \\frac{1}{3}" in page["text"]
    assert page["text"].startswith("# Energy") and page["page"] == 0 and page["pages"] == 1
    img = Image.open(io.BytesIO(page["image"]))
    assert img.size == (600, 520) and page["image_format"] == "png"
    # KaTeX typeset the math: PP-OCR reads the prose and the typeset formula's glyphs, not TeX source.
    assert "energy are related by" in page["ocr_read"] and "\\frac" not in page["ocr_read"]
    assert page["cer"] is not None and page["cer"] <= 0.3
    blocks_ = [it for it in page["ocr"] if it["level"] == "block"]
    assert [b["text"] for b in blocks_][0] == "# Energy" and len(blocks_) == 3
    answers = [m["content"][0]["text"] for m in page["messages"] if m["role"] == "assistant"]
    assert page["text"] in answers


def test_pages_break_between_blocks_and_tex_sources_convert(academic: AcademicPages) -> None:
    pages = list(academic.generate(row("seed-2", "", "count:3#seed=2", {"seed": 2})))  # heat_equation.md
    assert len(pages) >= 2 and [p["page"] for p in pages] == list(range(len(pages)))
    source = (DEMO_SOURCES / "heat_equation.md").read_text()
    assert "\n\n".join(p["text"] for p in pages) == "\n\n".join(b.markup for b in blocks(source))
    for p in pages:
        for it in p["ocr"]:
            assert 0 <= it["box"][1] and it["box"][3] <= p["height"]  # no block crosses the page's edge
    md = tex_to_markdown((DEMO_SOURCES / "gradient_descent.tex").read_text())
    assert md.startswith("# Gradient descent on a quadratic")
    assert "$$\nx_{k+1} = x_k - \\eta \\nabla f(x_k) = x_k - \\eta (A x_k - b).\n$$" in md
    assert "\\begin{aligned}" in md and "**Momentum**" in md and "- A well conditioned" in md
    assert "\\documentclass" not in md and "condition number follows" not in md


def test_tex_katex_rejects_drops_the_page(academic: AcademicPages) -> None:
    (page,) = list(academic.generate(row("bad", "A broken formula $\\frac{1}{$ here.\n")))
    assert page["keep"] is False and page["reason"].startswith("math_render_failed:")
