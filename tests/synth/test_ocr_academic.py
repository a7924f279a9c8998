"""ocr_academic in real Chromium: a short page's markup holds the source's math, KaTeX typesets it, blocks never
straddle a page break, a LaTeX source converts, and TeX that KaTeX rejects drops the page with the reason; what
cannot be shown (a block taller or wider than a page, pages past max_pages, control characters) never makes a kept
page's label; and `vlmdata synth ocr-academic --input` reads .md and .tex sources, one document per file, with an
error row for an empty one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.operator import ready
from pipelines.readers.base import ReaderConfig, plan_parts, read_part
from pipelines.spec import load_spec
from synth.ocr import RECIPES
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
        if p.get("keep", True):
            assert Image.open(io.BytesIO(p["image"])).size == (p["width"], p["height"])  # the last page too
            for it in p["ocr"]:
                assert 0 <= it["box"][1] and it["box"][3] <= p["height"]  # no block crosses the page's edge
        else:  # the series formula is wider than a 600 px page at 16 px and more: cut off, so dropped
            assert p["reason"] == "block_wider_than_page" and p["text"].startswith("$$\nu(x, t) = \\sum_")
    md = tex_to_markdown((DEMO_SOURCES / "gradient_descent.tex").read_text())
    assert md.startswith("# Gradient descent on a quadratic")
    assert "$$\nx_{k+1} = x_k - \\eta \\nabla f(x_k) = x_k - \\eta (A x_k - b).\n$$" in md
    assert "\\begin{aligned}" in md and "**Momentum**" in md and "- A well conditioned" in md
    assert "\\documentclass" not in md and "condition number follows" not in md


def test_tex_katex_rejects_drops_the_page(academic: AcademicPages) -> None:
    (page,) = list(academic.generate(row("bad", "A broken formula $\\frac{1}{$ here.\n")))
    assert page["keep"] is False and page["reason"].startswith("math_render_failed:")


FORMULA = " + ".join(f"x_{{{i}}}" for i in range(1500))


def test_a_block_taller_than_a_page_drops_its_page_only(academic: AcademicPages) -> None:
    text = f"# Huge formula\n\n${FORMULA}$\n\nAfter the formula comes a short closing paragraph.\n"
    pages = list(academic.generate(row("huge", text)))
    assert [p["text"][:14] for p in pages] == ["# Huge formula", "$x_{0} + x_{1}", "After the form"]
    first, tall, last = pages
    assert first.get("keep", True) and last.get("keep", True), (first.get("reason"), last.get("reason"))
    assert tall["keep"] is False and tall["reason"] == "block_taller_than_page"
    # The page after the tall block starts past its end: nothing of the formula shows on it.
    assert last["page"] > tall["page"] + 1 and last["cer"] <= 0.3 and "x" not in last["ocr_read"]


def test_a_formula_wider_than_the_page_is_a_reason(academic: AcademicPages) -> None:
    (page,) = list(academic.generate(row("wide", f"Before.\n\n$$\n{FORMULA}\n$$\n")))
    assert page["keep"] is False and page["reason"] == "block_wider_than_page"


def test_pages_past_max_pages_are_one_dropped_row(academic: AcademicPages) -> None:
    paragraphs = [f"Paragraph {i}: the quick brown fox jumps over the lazy dog by the river." for i in range(40)]
    config = academic.config
    academic.config = config.model_copy(update={"max_pages": 2})  # one Chromium per process: the same operator
    try:
        pages = list(academic.generate(row("long", "\n\n".join(paragraphs))))
    finally:
        academic.config = config
    kept, rest = pages[:-1], pages[-1]
    assert [p["page"] for p in kept] == [0, 1] and all(p.get("keep", True) for p in kept)
    assert rest["keep"] is False and rest["reason"].startswith("past_max_pages:") and rest["reason"].endswith(">2")
    assert "\n\n".join(p["text"] for p in pages) == "\n\n".join(paragraphs)  # every block is in one row


def test_control_characters_never_reach_the_markup(academic: AcademicPages) -> None:
    (page,) = list(academic.generate(row("esc", "# \x1b[1mBold\x1b[0m title\n\nMass\u200b and $E = mc^2$.\n")))
    assert page.get("keep", True), page.get("reason")
    assert page["text"] == "# [1mBold[0m title\n\nMass and $E = mc^2$."


# ---------------------------------------------------------------- --input: .md and .tex files, one row per file

GOOD_TEX = """\\documentclass{article}
\\begin{document}
\\section{Squares}
The square of a number $x$ is $x^2$, and it is never negative.
\\end{document}
"""


def sources(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "good.md").write_text(SHORT)
    (folder / "good.tex").write_text(GOOD_TEX)
    (folder / "empty.md").write_text("  \n\n \t\n")
    (folder / "notes.txt").write_text("Not a source of this verb.\n")
    return folder


def test_the_recipe_reads_md_and_tex_one_row_per_file(tmp_path: Path) -> None:
    folder = sources(tmp_path / "papers")
    recipe = load_spec(RECIPES / "ocr-academic.yaml").reader.model_copy(update={"format": "text"})
    rows = [r for part in plan_parts([str(folder)], recipe) for b in read_part(part, recipe) for r in b.to_pylist()]
    by = {r["source"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by) == {"empty.md", "good.md#file=0", "good.tex#file=0"}  # one row per file; .txt is not a source
    assert by["good.md#file=0"]["text"] == SHORT.strip() and by["good.tex#file=0"]["text"] == GOOD_TEX.strip()
    assert by["empty.md"]["error"] and by["empty.md"]["reason"] == "empty_file"
    # The text source's defaults (curate, ocr-render) are unchanged: paragraphs of .txt/.md/.rst, never .tex.
    plain = ReaderConfig()
    rows = [r for part in plan_parts([str(folder)], plain) for b in read_part(part, plain) for r in b.to_pylist()]
    assert not any(".tex" in r["source"] for r in rows)
    assert sum(r["source"].split("/")[-1].startswith("good.md#paragraph=") for r in rows) == 3


def cli(*args: str) -> None:
    """The verb in its own process (this one runs Playwright's sync API already: a second cannot start)."""
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "synth", "ocr-academic", *args, "--engine",
                           "local", "--set", "engine.workers=0", "--no-prefect"],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr


def kept_texts(out: Path) -> list[str]:
    texts = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            texts += [t.extractfile(m).read().decode() for m in t.getmembers() if m.name.endswith(".txt")]
    return sorted(texts)


def test_cli_input_reads_md_and_tex_sources(tmp_path: Path) -> None:
    folder = sources(tmp_path / "papers")
    cli("--input", str(folder), "-o", str(tmp_path / "mixed"))
    ledger = pq.read_table(tmp_path / "mixed" / "ledger.parquet").to_pylist()
    parents = {r["source"].rsplit("/", 1)[-1]: r for r in ledger if r["parent"] is None}
    assert set(parents) == {"empty.md", "good.md#file=0", "good.tex#file=0"}
    assert (parents["empty.md"]["status"], parents["empty.md"]["reason"]) == ("error", "empty_file")
    assert parents["good.tex#file=0"]["reason"] == "expanded:1" and parents["good.md#file=0"]["reason"] == "expanded:1"
    tex_page = "# Squares\n\nThe square of a number $x$ is $x^2$, and it is never negative."
    assert kept_texts(tmp_path / "mixed") == sorted([tex_page, "\n\n".join(b.markup for b in blocks(SHORT))])
    # A folder of only .tex files, and one .tex file given as the input.
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.tex").write_text(GOOD_TEX)
    cli("--input", str(only), "-o", str(tmp_path / "only-out"))
    cli("--input", str(only / "a.tex"), "-o", str(tmp_path / "file-out"))
    assert kept_texts(tmp_path / "only-out") == kept_texts(tmp_path / "file-out") == [tex_page]
