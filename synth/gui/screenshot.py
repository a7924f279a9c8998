"""`gui_screenshot`: a web page (an HTML file or a URL) → one screenshot per viewport with every visible element.

The page row's `source` (or `meta.url`) names the page; each child carries the PNG, its `elements` (tag, role,
text or label, pixel box clipped to the viewport), the viewport's name and the page title as `text`.

A file page may load files only under the folder it was read from (`meta.root`, set by the html source: the
input folder, or the page's own folder when one file was given; else the page's own folder) and `allow_files`;
a page that navigates away or frames a file outside them is dropped (`navigated_away:URL`, `blocked_file:URL`),
and so is a page of the input folder whose real file is not under it, or is in a dot folder (`outside_input:URL`).
"""

from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image
from pydantic import Field

from filters.heuristics import normalize_caption
from pipelines import columns as C
from pipelines.operator import Drop, Generator, OperatorConfig
from synth.gui.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Browser,
    PageBlocked,
    PageError,
    Viewport,
    file_path,
    inside,
)
from synth.gui.extract import EXTRACT_JS, scale_elements

# Whether each element's text is shown on screen (else it is a label: alt text, aria-label): gui_qa reads only
# shown text back with OCR. Parallel to `elements`; a working column, never in a sample.
TEXT_SHOWN = C.working(pa.field("elements_text_shown", pa.list_(pa.bool_())))
VIEWPORT = pa.field("viewport", pa.string())
# Elements left out of a screenshot, by reason (zero-sized, hidden, off-screen, covered at their centre, empty).
EXTRACT_DROPS = pa.field("elements_dropped", pa.struct([(r, pa.int32()) for r in
                                                        ("zero_size", "hidden", "offscreen", "covered", "empty")]))


class ViewportConfig(OperatorConfig):
    name: str = Field(description="Name recorded in the `viewport` column (desktop, phone, …).")
    width: int = Field(gt=0, le=8192, description="CSS pixels.")
    height: int = Field(gt=0, le=8192, description="CSS pixels.")
    mobile: bool = Field(False, description="A phone: mobile meta viewport and touch events.")
    scale: float = Field(1.0, gt=0, le=4, description="Device scale factor; boxes are in screenshot pixels.")


class GuiScreenshotConfig(OperatorConfig):
    viewports: tuple[ViewportConfig, ...] = Field(
        (ViewportConfig(name="desktop", width=1280, height=800), ViewportConfig(name="phone", width=390, height=844, mobile=True)),
        min_length=1, description="Each page is rendered once per viewport; one child per viewport.")
    timeout_s: float = Field(20.0, gt=0, le=600, description="Budget of a page, all its viewports together; a page "
                                                              "past it is an error row (page_timeout).")
    settle_ms: int = Field(0, ge=0, le=10000, description="Extra wait after load (pages that draw late).")
    executable: str = Field(CHROMIUM, description="The Chromium binary Playwright drives (Debian's chromium).")
    args: tuple[str, ...] = Field(CHROMIUM_ARGS, description="Chromium command-line flags.")
    local_only: bool = Field(False, description="Also abort every http(s) request (tests, local pages that must "
                                                "not reach the network). File access is confined either way.")
    allow_files: tuple[str, ...] = Field((), description="Folders whose files every file page may load besides its "
                                                         "own input folder (shared assets kept beside the pages).")
    min_side: float = Field(2.0, ge=0, description="Elements whose visible box is thinner than this (CSS px) are "
                                                   "left out (offscreen).")
    max_text_chars: int = Field(300, ge=1, description="Longer element text is cut to this.")
    min_elements: int = Field(1, ge=0, description="A screenshot with fewer elements is dropped (too_few_elements).")


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    if not row.get("meta"):
        return {}
    try:
        meta = json.loads(row["meta"])
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def page_url(row: dict[str, Any]) -> str:
    """The page of a row: `meta.url` when the source gave one, else `source` (a path becomes a file:// URL)."""
    url = _meta(row).get("url") or row.get("source") or ""
    if not url:
        raise PageError("no_url", "the row names no page (source and meta.url are empty)")
    if "://" in url or url.startswith(("data:", "about:")):
        return url
    return Path(url).resolve().as_uri()


def file_roots(row: dict[str, Any], url: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The folders a file page may load from: `meta.root` (the input folder, from the html source) or the page's
    own folder, and `extra`; none for a web page."""
    path = file_path(url) if url.lower().startswith("file:") else None
    if path is None:
        return []
    root = _meta(row).get("root")
    return [root if isinstance(root, str) and root else os.path.dirname(path), *extra]


class GuiScreenshot(Generator):
    name = "gui_screenshot"
    Config = GuiScreenshotConfig
    reads = ("source",)
    adds = (*C.IMAGE_FIELDS, VIEWPORT, C.ELEMENTS, TEXT_SHOWN, EXTRACT_DROPS)

    # Pages that failed in this worker: a page gets a second try (the engine retries a failed batch once, which
    # covers a transient stall), then fails at once, so bisecting the batch does not wait for it again.
    _FAILED_MEMO = 256
    _TRIES = 2

    def setup(self) -> None:
        self._browser: Browser | None = None
        self._failed: OrderedDict[str, tuple[int, str]] = OrderedDict()

    @property
    def browser(self) -> Browser:
        if getattr(self, "_browser", None) is None:
            self._browser = Browser(self.config.executable, self.config.args, self.config.local_only)
        return self._browser

    def viewports(self) -> list[Viewport]:
        return [Viewport(v.name, v.width, v.height, v.mobile, v.scale) for v in self.config.viewports]

    def generate(self, row: dict[str, Any]):
        if not hasattr(self, "_failed"):
            self.setup()
        url = page_url(row)
        roots = file_roots(row, url, self.config.allow_files)
        path = file_path(url) if url.lower().startswith("file:") else None
        if path is not None and _meta(row).get("root") and not inside(
                os.path.realpath(path), [Path(os.path.realpath(r)) for r in roots]):
            # A link in the input folder that leads out of it, or a page in a dot folder: not the user's page.
            raise Drop(f"outside_input:{url}")
        tries, known = self._failed.get(url, (0, ""))
        if tries >= self._TRIES:
            raise PageError("page_failed_before", known)
        opts = {"min_side": self.config.min_side, "max_text_chars": self.config.max_text_chars}
        try:
            shots = self.browser.render(url, self.viewports(), EXTRACT_JS, opts, self.config.timeout_s,
                                        self.config.settle_ms, roots)
        except PageBlocked as exc:  # a verdict on the page: dropped with the URL it went for, never retried
            raise Drop(f"{exc.reason}:{exc.detail}") from exc
        except PageError as exc:
            self._failed[url] = (tries + 1, str(exc))
            while len(self._failed) > self._FAILED_MEMO:
                self._failed.popitem(last=False)
            raise
        children = []
        for shot in shots:
            elements, shown = scale_elements(shot.extracted, shot.viewport.scale)
            with Image.open(io.BytesIO(shot.png)) as im:
                width, height = im.size
            child: dict[str, Any] = {
                "image": shot.png, "image_format": "png", "width": width, "height": height,
                "viewport": shot.viewport.name, "elements": elements, "elements_text_shown": shown,
                "elements_dropped": {k: int(v) for k, v in shot.extracted.get("dropped", {}).items()},
                "text": normalize_caption(shot.title or "") or None,
            }
            if len(elements) < self.config.min_elements:
                child.update(keep=False, reason=f"too_few_elements:{len(elements)}")
            children.append(child)
        return children

    def close(self) -> None:
        if getattr(self, "_browser", None) is not None:
            self._browser.close()
            self._browser = None
