"""GUI rendering speed: screenshots with element extraction per second through `gui_screenshot` (one reused
Chromium per worker) vs a plain Playwright loop that only loads and screenshots the same pages at the same
viewports in the same browser build. Prints the ratio (target ≥ 0.7).

    .venv/bin/python benchmarks/gui_render.py [--pages 16] [--rounds 2] [--input /usr/share/doc/python3.11/html]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.gui import DEFAULT_INPUT, HTML_SUFFIXES  # noqa: E402
from synth.gui.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from synth.gui.screenshot import GuiScreenshot  # noqa: E402

VIEWPORTS = [{"name": "desktop", "width": 1280, "height": 800},
             {"name": "phone", "width": 390, "height": 844, "mobile": True}]


def plain_loop(urls: list[str]) -> tuple[int, float]:
    """The baseline: one browser, one page per viewport, goto + screenshot; nothing else."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True)
        pages = []
        for vp in VIEWPORTS:
            ctx = browser.new_context(viewport={"width": vp["width"], "height": vp["height"]},
                                      is_mobile=vp.get("mobile", False), has_touch=vp.get("mobile", False))
            pages.append(ctx.new_page())
        pages[0].goto(urls[0])  # warm the browser as the operator's first page does
        start = time.perf_counter()
        shots = 0
        for url in urls:
            for page in pages:
                page.goto(url, wait_until="load", timeout=20000)
                page.screenshot(type="png")
                shots += 1
        seconds = time.perf_counter() - start
        browser.close()
    return shots, seconds


def operator_loop(urls: list[str], root: str) -> tuple[int, float, int]:
    meta = json.dumps({"root": root})  # the input folder, as the html reader records it: pages may load files under it
    op = GuiScreenshot(viewports=VIEWPORTS, local_only=True, timeout_s=30)
    op.setup()
    try:
        op.generate({"key": "warm", "source": urls[0], "meta": meta})
        start = time.perf_counter()
        shots = elements = 0
        for i, url in enumerate(urls):
            for child in op.generate({"key": str(i), "source": url, "meta": meta}):
                shots += 1
                elements += len(child["elements"])
        return shots, time.perf_counter() - start, elements
    finally:
        op.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=DEFAULT_INPUT, help="folder of HTML pages (default: python3-doc)")
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    args = ap.parse_args()
    pages = sorted(p for p in Path(args.input).rglob("*") if p.suffix.lower() in HTML_SUFFIXES)[: args.pages]
    if not pages:
        sys.exit(f"no HTML pages under {args.input} (install Debian's python3-doc)")
    urls = [p.resolve().as_uri() for p in pages]
    best_plain = best_op = 0.0
    elements = 0
    for r in range(args.rounds):
        shots, seconds = plain_loop(urls)
        plain = shots / seconds
        shots, seconds, elements = operator_loop(urls, str(Path(args.input).resolve()))
        ours = shots / seconds
        print(f"round {r + 1}: plain load+screenshot {plain:.2f} shots/s; gui_screenshot with extraction "
              f"{ours:.2f} shots/s ({elements / shots:.0f} elements per screenshot)")
        best_plain, best_op = max(best_plain, plain), max(best_op, ours)
    print(f"pages: {len(urls)} x {len(VIEWPORTS)} viewports from {args.input}")
    print(f"ratio gui_screenshot / plain loop: {best_op / best_plain:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
