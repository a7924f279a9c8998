"""GUI grounding on real pages in Debian's Chromium: element boxes match getBoundingClientRect and read back with
PP-OCR; covered, hidden and off-screen elements are left out; pages that hang, never answer or crash end as error
rows within their budget while the worker goes on."""

from __future__ import annotations

import io
import socket
import threading
import time

import pyarrow as pa
import pytest
from PIL import Image

from pipelines.formats import box_from_1000, extract_boxed, parse_boxes
from pipelines.operator import apply_generator
from pipelines.schema import record_schema
from synth.gui.browser import PageError, Viewport
from synth.gui.qa import GuiQA
from synth.gui.screenshot import GuiScreenshot

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Known page</title>
<meta name="viewport" content="width=device-width">
<style>
  body { margin: 0; font: 22px "DejaVu Sans", sans-serif; background: #fff; color: #000; }
  .at { position: absolute; white-space: nowrap; }
  #cover { position: absolute; left: 0; top: 400px; width: 600px; height: 80px; background: #fff; }
  .swap { font-size: 0; } .swap::before { content: "Banana split"; font-size: 22px; }
</style></head><body>
<h1 id="title" class="at" style="left: 40px; top: 20px; margin: 0; font-size: 34px">Quarterly Report</h1>
<a id="link" class="at" href="other.html" style="left: 40px; top: 100px">Download archive</a>
<button id="button" class="at" style="left: 40px; top: 160px; font-size: 22px">Save changes</button>
<input id="search" class="at" style="left: 40px; top: 220px; width: 260px; font-size: 22px" placeholder="Search here">
<img id="logo" class="at" alt="Company logo" style="left: 400px; top: 100px; width: 60px; height: 60px"
     src="data:image/gif;base64,R0lGODlhAQABAIAAAAUEBAAAACwAAAAAAQABAAACAkQBADs=">
<div id="swap" class="at swap" style="left: 40px; top: 300px">Apple pie</div>
<div id="covered" class="at" style="left: 40px; top: 420px">Covered words</div>
<div id="cover"></div>
<div id="gone" class="at" style="left: 40px; top: 500px; display: none">Display none</div>
<div id="invisible" class="at" style="left: 40px; top: 540px; visibility: hidden">Invisible text</div>
<div id="below" class="at" style="left: 40px; top: 5000px">Far below the fold</div>
</body></html>
"""
KNOWN = ("title", "link", "button", "search", "logo")
RECT_JS = ("(ids) => ids.map((id) => { const r = document.getElementById(id).getBoundingClientRect();"
           " return [r.left, r.top, r.right, r.bottom]; })")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    (root / "known.html").write_text(PAGE, encoding="utf-8")
    (root / "other.html").write_text("<html><body><p style='font-size:30px'>Another page entirely</p></body></html>")
    (root / "hang.html").write_text("<html><body><p>never</p><script>while (true) {}</script></body></html>")
    return root


@pytest.fixture(scope="module")
def shot_op():
    op = GuiScreenshot(local_only=True, timeout_s=6,
                       viewports=[{"name": "desktop", "width": 800, "height": 600},
                                  {"name": "phone", "width": 390, "height": 844, "mobile": True}])
    op.setup()
    yield op
    op.close()


@pytest.fixture(scope="module")
def qa_op():
    op = GuiQA(per_screenshot=50, max_checks=50, rec_share=0.5)
    op.setup()
    return op


@pytest.fixture(scope="module")
def known_shots(shot_op, pages):
    row = {"key": "page0", "source": str(pages / "known.html"), "meta": None}
    return {c["viewport"]: c for c in shot_op.generate(row)}


def _by_text(shot):
    return {e["text"]: e for e in shot["elements"]}


def test_boxes_match_bounding_client_rect(shot_op, known_shots, pages):
    desktop = known_shots["desktop"]
    assert (desktop["width"], desktop["height"]) == (800, 600)
    with Image.open(io.BytesIO(desktop["image"])) as im:
        assert im.size == (800, 600) and im.format == "PNG"
    # The page's own rects, read by a separate script in the same browser.
    [rects] = [s.extracted for s in shot_op.browser.render(
        (pages / "known.html").as_uri(), [Viewport("desktop", 800, 600)], RECT_JS, list(KNOWN), 10)]
    found = _by_text(desktop)
    texts = {"title": "Quarterly Report", "link": "Download archive", "button": "Save changes",
             "search": "Search here", "logo": "Company logo"}
    for el_id, rect in zip(KNOWN, rects, strict=True):
        element = found[texts[el_id]]
        assert element["box"] == pytest.approx(rect, abs=0.01), el_id
    assert found["Company logo"]["box"] == pytest.approx([400, 100, 460, 160], abs=0.01)
    assert found["Download archive"]["role"] == "link" and found["Download archive"]["interactive"]
    assert found["Save changes"]["tag"] == "button"
    assert found["Quarterly Report"]["role"] == "heading" and not found["Quarterly Report"]["interactive"]
    assert found["Search here"]["role"] == "textbox"
    shown = dict(zip((e["text"] for e in desktop["elements"]), desktop["elements_text_shown"], strict=True))
    assert shown["Quarterly Report"] and not shown["Company logo"]


def test_covered_hidden_and_offscreen_elements_are_left_out(known_shots):
    for shot in known_shots.values():
        texts = set(_by_text(shot))
        assert not texts & {"Covered words", "Display none", "Invisible text", "Far below the fold"}
        assert shot["elements_dropped"]["covered"] >= 1
        assert shot["elements_dropped"]["hidden"] >= 1
        assert shot["elements_dropped"]["offscreen"] >= 1
        for e in shot["elements"]:
            x1, y1, x2, y2 = e["box"]
            assert 0 <= x1 < x2 <= shot["width"] and 0 <= y1 < y2 <= shot["height"]


def test_ocr_reads_boxes_back_and_mismatches_stay_out_of_qa(qa_op, known_shots):
    desktop = known_shots["desktop"]
    children = list(qa_op.generate({**desktop, "key": "shot0"}))
    kept = [c for c in children if c.get("keep", True)]
    failed = [c for c in children if not c.get("keep", True)]
    asked = {c["text"] for c in kept}
    # Every known text element reads back; the swapped one (DOM "Apple pie", screen "Banana split") does not.
    assert {"Quarterly Report", "Download archive", "Save changes", "Company logo"} <= asked
    assert "Apple pie" not in asked
    assert [c["text"] for c in failed] == ["Apple pie"] and failed[0]["reason"].startswith("ocr_mismatch")
    counts = kept[0]["gui_ocr"]
    assert counts["checked"] == counts["matched"] + counts["ocr_mismatch"] + counts["ocr_empty"] + counts["ocr_too_small"]
    assert counts["ocr_mismatch"] == 1 and counts["matched"] >= 3  # title, link, button (the rest are labels)
    assert all(c["gui_ocr"] is None for c in kept[1:])
    # Each pair: the box in pixels in `boxes`, the same box in 0-1000 in the text (rec), or the text (reg).
    for c in kept:
        [box] = c["boxes"]
        question, answer = c["messages"][0]["content"][-1]["text"], c["messages"][1]["content"][0]["text"]
        assert c["messages"][0]["content"][0]["type"] == "image"
        if c["qa_task"] == "rec":
            assert c["text"] in question
            [norm] = parse_boxes(extract_boxed(answer))
            back = box_from_1000(norm, desktop["width"], desktop["height"])
            assert back == pytest.approx(box["box"], abs=desktop["width"] / 1000 + 0.01)
        else:
            assert extract_boxed(answer) == c["text"]
            assert parse_boxes(question)
    assert {c["qa_task"] for c in kept} == {"rec", "reg"}


def test_phone_viewport_boxes_follow_the_zoom(qa_op, known_shots):
    """The page is wider than a phone, so Chromium zooms out to fit it: boxes are in screenshot pixels and
    still frame their text (read back by OCR)."""
    import numpy as np

    phone, desktop = known_shots["phone"], known_shots["desktop"]
    assert (phone["width"], phone["height"]) == (390, 844)
    image = np.asarray(Image.open(io.BytesIO(phone["image"])).convert("RGB"))
    small, big = _by_text(phone)["Download archive"]["box"], _by_text(desktop)["Download archive"]["box"]
    zoom = (small[2] - small[0]) / (big[2] - big[0])
    assert 0.3 < zoom < 1
    assert small == pytest.approx([v * zoom for v in big], abs=1)
    for text in ("Download archive", "Save changes"):
        check = qa_op.verifier.check(image, _by_text(phone)[text]["box"], text)
        assert check.ok, (text, check)


def _silent_server():
    """A loopback server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=loop, daemon=True).start()
    return srv, held


def test_hanging_pages_become_error_rows_and_the_worker_goes_on(shot_op, pages):
    srv, held = _silent_server()
    port = srv.getsockname()[1]
    op = GuiScreenshot(timeout_s=4, viewports=[{"name": "desktop", "width": 640, "height": 480}])
    op.setup()
    try:
        rows = [
            {"key": "a", "source": str(pages / "other.html")},
            {"key": "b", "source": str(pages / "hang.html")},
            {"key": "c", "source": f"http://127.0.0.1:{port}/slow.html"},
            {"key": "d", "source": "chrome://crash"},
            {"key": "e", "source": str(pages / "known.html")},
        ]
        schema = record_schema(op.adds)
        batch = pa.RecordBatch.from_pylist(
            [{**r, "parent": None, "dataset": "t", "text": "", "meta": None, "keep": True, "error": False} for r in rows],
            schema=schema)
        start = time.monotonic()
        out = apply_generator(op, batch, schema).to_pylist()
        elapsed = time.monotonic() - start
    finally:
        op.close()
        srv.close()
        for conn in held:
            conn.close()
    by_key = {r["key"]: r for r in out if r["parent"] is None}
    assert by_key["b"]["error"] and "page_timeout" in by_key["b"]["reason"]
    assert by_key["c"]["error"] and "page_timeout" in by_key["c"]["reason"]
    assert by_key["d"]["error"] and "page_" in by_key["d"]["reason"]
    for good in ("a", "e"):
        assert not by_key[good]["error"] and by_key[good]["reason"] == "expanded:1"
        [child] = [r for r in out if r["parent"] == good]
        assert child["keep"] and child["elements"]
    # Each hanging page costs its budget at most twice (first try and the engine's retry), never once per bisection.
    assert elapsed < 2 * 2 * 4 + 40


def test_failed_page_raises_page_error(shot_op, pages):
    with pytest.raises(PageError) as info:
        shot_op.generate({"key": "h", "source": str(pages / "hang.html")})
    assert info.value.reason in ("page_timeout", "page_failed_before")
    # The same browser goes on.
    children = shot_op.generate({"key": "o", "source": str(pages / "other.html")})
    assert any(e["text"] == "Another page entirely" for e in children[0]["elements"])
