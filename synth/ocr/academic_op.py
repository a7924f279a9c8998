"""`ocr_academic`: academic pages, Nougat-style. A Markdown/LaTeX source becomes HTML (markdown-it-py, math by the
vendored KaTeX), Chromium lays it out in pages (a block never straddles a break) and screenshots each page;
every page image is paired with the Markdown + LaTeX of the blocks on it and read back by PP-OCR."""

from __future__ import annotations

import atexit
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image
from pydantic import Field

from pipelines import columns as C
from pipelines.operator import Generator, OperatorConfig
from synth.ocr.corpus import drawable_markup
from synth.ocr.markup import Block, blocks, tex_to_markdown
from synth.ocr.render_op import VerifyConfig, row_random
from synth.ocr.tasks import ocr_messages
from synth.ocr.verify import OcrEngine, cer, read_text

VENDOR = Path(__file__).resolve().parent / "vendor" / "katex"
DEMO_SOURCES = Path(__file__).resolve().parents[1] / "data" / "academic"
SOURCE_SUFFIXES = (".md", ".markdown", ".tex")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_PROMPT = "Convert this page to Markdown, with formulas in LaTeX."

# Runs in the page: typeset every math span with KaTeX and lay the page out, so that the fonts the typeset page
# uses (KaTeX's, fallbacks) start loading; the caller then waits for them before measuring anything.
_TYPESET = """() => {
  for (const el of document.querySelectorAll('span.tex')) {
    const tex = el.textContent;
    try { katex.render(tex, el, {displayMode: el.dataset.display === '1', throwOnError: true}); }
    catch (e) { el.closest('.vlm-block').dataset.error = String(e.message || e).slice(0, 120); }
  }
  return document.body.getBoundingClientRect().height;
}"""

# Runs in the page, its fonts loaded: move blocks down so that none crosses a page break (as print layout does),
# and report per block its page, its box on that page, its visible text and any error. A block taller than a page
# (its page is dropped) is followed by a fresh page after its end, so that no kept page shows part of it; a block
# whose content runs past the page's right edge (a long display formula) is reported wide.
_PAGINATE = """([pageH, marginY, pageW]) => {
  const out = [];
  let page = 0, free = 0;  // free: the first page no earlier block reaches into (past a tall block's end)
  for (const el of document.querySelectorAll('.vlm-block')) {
    let r = el.getBoundingClientRect();
    const top = r.top + window.scrollY, bottom = r.bottom + window.scrollY;
    const pageEnd = (page + 1) * pageH - marginY;
    if (free > page) {
      page = free;
      el.style.marginTop = ((page * pageH + marginY) - top) + 'px';
      r = el.getBoundingClientRect();
    } else if (bottom > pageEnd && out.length && out[out.length - 1].page === page) {
      page += 1;
      el.style.marginTop = ((page * pageH + marginY) - top) + 'px';
      r = el.getBoundingClientRect();
    } else if (top >= pageEnd) {
      page = Math.floor((top - marginY) / pageH);
    }
    const y = r.top + window.scrollY - page * pageH;
    const tall = r.height > pageH - 2 * marginY;
    if (tall) free = Math.floor((r.bottom + window.scrollY) / pageH) + 1;
    const clone = el.cloneNode(true);
    clone.querySelectorAll('.katex-mathml').forEach(n => n.remove());
    document.body.appendChild(clone); const text = clone.innerText; clone.remove();
    out.push({page, box: [r.left, y, r.right, y + r.height], text, error: el.dataset.error || null, tall,
              wide: r.left + el.scrollWidth > pageW + 1});
  }
  return out;
}"""


class PageVerifyConfig(VerifyConfig):
    max_cer: float = Field(0.3, ge=0.0, description="Pages whose read-back CER is above this are dropped (math is "
                           "read as glyphs, so the bar is looser than for plain text).")


class AcademicConfig(OperatorConfig):
    sources: list[str] = Field([str(DEMO_SOURCES)], description="Folders or files of .md/.tex sources that seed rows "
                               "(count:N) draw from, seed i → source i mod n. Rows with text render their text.")
    page_width: int = Field(794, ge=200, description="Page width, CSS pixels (794: A4 at 96 dpi).")
    page_height: int = Field(1123, ge=200, description="Page height, CSS pixels.")
    margin: int = Field(56, ge=0, description="Page margin, CSS pixels.")
    font_size: tuple[int, int] = Field((14, 18), description="Body font size range, pixels.")
    fonts: list[str] = Field(["DejaVu Serif", "DejaVu Sans", "Noto Serif CJK SC"],
                             description="CSS font families, one drawn per document.")
    max_pages: int = Field(20, ge=1, description="Pages past this are not rendered (their blocks: one dropped row, "
                           "past_max_pages).")
    timeout_ms: int = Field(20000, ge=1000, description="Time a page may take to load and typeset.")
    chromium: str = Field("/usr/bin/chromium", description="Chromium executable (Debian's package).")
    verify: PageVerifyConfig = Field(default_factory=PageVerifyConfig,
                                     description="PP-OCR read-back of the page's visible text.")


def _source_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.suffix in SOURCE_SUFFIXES and f.is_file())
        elif path.suffix in SOURCE_SUFFIXES:
            files.append(path)
    return files


def to_markdown(text: str, name: str) -> str:
    return tex_to_markdown(text) if re.search(r"\.tex\b", name) or "\\begin{document}" in text else text


class AcademicPages(Generator):
    """Page images of Markdown/LaTeX documents, each with its lightweight markup."""

    name = "ocr_academic"
    Config = AcademicConfig
    reads = ()
    adds = (
        *C.IMAGE_FIELDS,
        C.OCR,  # one "block" item per block on the page: its markup and box
        C.MESSAGES,
        pa.field("page", pa.int32()),  # 0-based page number in the document
        pa.field("pages", pa.int32()),
        pa.field("font", pa.string()),
        pa.field("font_size", pa.int32()),
        pa.field("cer", pa.float32()),
        pa.field("ocr_read", pa.string()),
        pa.field("visible_text", pa.string()),  # the page's text as a reader sees it (what the CER compares to)
    )

    def setup(self) -> None:
        from playwright.sync_api import sync_playwright

        cfg = self.config
        self.files = _source_files(cfg.sources)
        # The page is served from a routed origin so that the stylesheet's relative font URLs reach the vendored
        # woff2 files; every other request is aborted (no network, no file access).
        self.katex_css = (VENDOR / "katex.min.css").read_text()
        self._html = ""
        self.katex_js = (VENDOR / "katex.min.js").read_text()
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=cfg.chromium, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": cfg.page_width, "height": cfg.page_height})
        self.page.route("**/*", self._serve)  # the vendored fonts; nothing else leaves the page
        atexit.register(self.close)
        self.ocr = OcrEngine(cfg.verify.backend, cfg.verify.threads, cfg.verify.min_score, cfg.verify.det_side,
                             cfg.verify.use_cls) \
            if cfg.verify.enabled else None

    def _serve(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("http://vlmdata.local/"):
            name = url.split("/fonts/", 1)[-1]
            font = VENDOR / "fonts" / Path(name).name
            if "/fonts/" in url and font.suffix == ".woff2" and font.is_file():
                return route.fulfill(body=font.read_bytes(), content_type="font/woff2")
            if url.endswith("/page.html"):
                return route.fulfill(body=self._html, content_type="text/html; charset=utf-8")
        return route.abort()

    def close(self) -> None:
        try:
            self.browser.close()
            self._pw.stop()
        except Exception:  # noqa: BLE001 - closing at exit: the browser may already be gone
            pass

    def _document(self, row: dict[str, Any]) -> tuple[str, str]:
        """(markdown, source name) of a parent row: its own text (a text-source row: one whole file), the file it
        names, or a seed's source file; control characters removed (a page cannot show them, so its markup must
        not hold them)."""
        markdown, name = self._source_text(row)
        return to_markdown(drawable_markup(markdown), Path(name).name), name

    def _source_text(self, row: dict[str, Any]) -> tuple[str, str]:
        text = row.get("text") or ""
        source = row.get("source") or ""
        if text.strip():
            return text, source
        if source.endswith(SOURCE_SUFFIXES) and Path(source).is_file():
            return Path(source).read_text(encoding="utf-8"), source
        if not self.files:
            raise FileNotFoundError(f"no .md/.tex sources under {self.config.sources}")
        try:
            seed = int(json.loads(row.get("meta") or "{}").get("seed"))
        except (TypeError, ValueError):
            seed = row_random(row["key"]).randrange(1 << 30)
        path = self.files[seed % len(self.files)]
        return path.read_text(encoding="utf-8"), str(path)

    def _page_html(self, parts: list[Block], font: str, size: int) -> str:
        cfg = self.config
        body = "\n".join(f'<div class="vlm-block">{b.html}</div>' for b in parts)
        style = (
            f"html,body{{margin:0;padding:0;background:#fff}}"
            f"#doc{{box-sizing:border-box;width:{cfg.page_width}px;padding:{cfg.margin}px;"
            f"font-family:'{font}',serif;font-size:{size}px;line-height:1.45;color:#111}}"
            ".vlm-block{display:flow-root}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
            "pre{white-space:pre-wrap}"
        )
        return (f'<!doctype html><html><head><meta charset="utf-8"><style>{self.katex_css}</style>'
                f"<style>{style}</style><script>{self.katex_js}</script></head>"
                f'<body><main id="doc">{body}</main></body></html>')

    def generate(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        cfg = self.config
        markdown, name = self._document(row)
        parts = blocks(markdown)
        if not parts:
            return
        rnd = row_random(row["key"], self.name)
        font = cfg.fonts[rnd.randrange(len(cfg.fonts))]
        size = rnd.randint(*cfg.font_size)
        self._html = self._page_html(parts, font, size)
        self.page.goto("http://vlmdata.local/page.html", wait_until="load", timeout=cfg.timeout_ms)
        self.page.evaluate(_TYPESET)
        # Measured before the typeset page's fonts arrive, blocks were up to 17 px off (a tenth of a long formula's
        # height): wrong boxes, and blocks across the page breaks the layout was computed for.
        self.page.evaluate("document.fonts.ready.then(() => true)")
        laid = self.page.evaluate(_PAGINATE, [cfg.page_height, cfg.margin, cfg.page_width])
        self.page.evaluate("document.fonts.ready.then(() => true)")
        laid_out = max(b["page"] for b in laid) + 1
        pages = min(laid_out, cfg.max_pages)
        # The last page is a whole page too (the screenshot would stop where the document does).
        self.page.evaluate("(h) => { document.body.style.minHeight = h + 'px'; }", pages * cfg.page_height)
        for k in range(pages):
            on_page = [(blk, lay) for blk, lay in zip(parts, laid, strict=True) if lay["page"] == k]
            if not on_page:
                continue
            yield self._page(k, pages, on_page, font, size, rnd)
        if laid_out > pages:  # what is not rendered is in the ledger, with why
            rest = [blk.markup for blk, lay in zip(parts, laid, strict=True) if lay["page"] >= pages]
            yield {"text": "\n\n".join(rest), "page": pages, "pages": laid_out, "font": font, "font_size": size,
                   "keep": False, "reason": f"past_max_pages:{laid_out}>{pages}"}

    def _page(self, k: int, pages: int, on_page: list[tuple[Block, dict]], font: str, size: int,
              rnd: Any) -> dict[str, Any]:
        cfg = self.config
        w, h = cfg.page_width, cfg.page_height
        markup = "\n\n".join(b.markup for b, _ in on_page)
        out: dict[str, Any] = {"text": markup, "page": k, "pages": pages, "font": font, "font_size": size}
        errors = [lay["error"] for _, lay in on_page if lay["error"]]
        if errors:
            return {**out, "keep": False, "reason": f"math_render_failed:{errors[0]}"}
        if any(lay["tall"] for _, lay in on_page):
            return {**out, "keep": False, "reason": "block_taller_than_page"}
        if any(lay["wide"] for _, lay in on_page):  # the page would show it cut off at its right edge
            return {**out, "keep": False, "reason": "block_wider_than_page"}
        png = self.page.screenshot(full_page=True, clip={"x": 0, "y": k * h, "width": w, "height": h},
                                   timeout=cfg.timeout_ms)
        items = [C.ocr_item(b.markup, [max(0.0, lay["box"][0]), max(0.0, lay["box"][1]),
                                       min(float(w), lay["box"][2]), min(float(h), lay["box"][3])],
                            None, None, "block") for b, lay in on_page]
        out.update(image=png, image_format="png", width=w, height=h, ocr=items,
                   messages=_page_messages(markup, items, w, h, rnd))
        if self.ocr is not None:
            visible = "\n".join(lay["text"] for _, lay in on_page)
            read = read_text(self.ocr.read(Image.open(io.BytesIO(png))))
            out["ocr_read"] = read
            out["visible_text"] = visible
            out["cer"] = round(cer(read, visible), 4)
            if out["cer"] > cfg.verify.max_cer:
                out.update(keep=False, reason=f"cer_too_high:{out['cer']:.2f}")
        return out


def _page_messages(markup: str, items: list[dict[str, Any]], w: int, h: int, rnd: Any) -> list[dict[str, Any]]:
    msgs = ocr_messages(markup, [(it["text"], it["box"]) for it in items], w, h, rnd)
    for m in msgs:  # the read-all turn of a page asks for its markup
        for part in m["content"]:
            if part.get("text") and part["text"].startswith("Read all the text"):
                part["text"] = PAGE_PROMPT
    return msgs

