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
from pipelines.operator import Drop, apply_generator
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


# --- confinement: a page sees only files under the folder it was read from ---------------------------------------

MARKER = "ZQXMARKER"  # in files outside the input folder: no kept sample may ever show it
SECRET_PAGE = f'<html><body><p style="font: 40px sans-serif">{MARKER} secret words</p></body></html>'


def _png(color):
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), color).save(buf, format="PNG")
    return buf.getvalue()


def _page(title, extra=""):
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
            f'<body style="font: 22px sans-serif"><h1>{title}</h1><button>Stay here</button>'
            f'<button>Another button</button>{extra}</body></html>')


@pytest.fixture(scope="module")
def confined(tmp_path_factory):
    """site/ (the input folder) with pages that reach for outside/ in every way, and outside/ holding the marker."""
    import os

    root = tmp_path_factory.mktemp("confined")
    site, outside = root / "site", root / "outside"
    (site / "sub").mkdir(parents=True)
    (site / ".hidden").mkdir()
    outside.mkdir()
    (outside / "secret.html").write_text(SECRET_PAGE)
    (outside / "pic.png").write_bytes(_png((200, 0, 0)))
    (site / ".hidden" / "secret.html").write_text(SECRET_PAGE)
    (site / ".hidden" / "pic.png").write_bytes(_png((0, 0, 200)))
    (site / "pic.png").write_bytes(_png((0, 200, 0)))
    (site / "sub" / "inner.html").write_text('<html><body><p style="font: 30px sans-serif">Inner words</p></body></html>')
    os.symlink(outside / "secret.html", site / "link.html")  # a link inside the folder that leads out of it
    os.symlink(outside / "pic.png", site / "link.png")
    secret = (outside / "secret.html").as_uri()
    frame = '<iframe src="{}" style="width: 600px; height: 120px"></iframe>'
    pages = {
        "frame_abs": _page("Frame absolute", frame.format(secret)),
        "frame_dotdot": _page("Frame dotdot", frame.format("sub/../../outside/secret.html")),
        "frame_link": _page("Frame link", frame.format("link.html")),
        "frame_hidden": _page("Frame hidden", frame.format(".hidden/secret.html")),
        "frame_inside": _page("Frame inside", frame.format("sub/inner.html")),
        "nav_etc": _page("Nav etc", "<script>location.href = 'file:///etc/';</script>"),
        "nav_sibling": _page("Nav sibling", "<script>location.href = 'frame_inside.html';</script>"),
        "images": _page("Images", '<img src="pic.png"><img src="../outside/pic.png"><img src="link.png">'
                                  '<img src=".hidden/pic.png">'),
        "view_source": _page("View source", f"<script>location.href = 'view-source:{secret}';</script>"),
        "chrome": _page("Chrome page", "<script>location.href = 'chrome://version';</script>"),
        "data": _page("Data page", f"<script>location.href = 'data:text/html,<p>{MARKER}</p>';</script>"),
        "popup_download": _page("Popup download", f"<a id=d href='data:text/plain,{MARKER}' "
                                                  "download='../../escaped.txt'>save</a><script>"
                                                  f"window.open('{secret}'); document.getElementById('d').click();"
                                                  "</script>"),
    }
    for name, html in pages.items():
        (site / f"{name}.html").write_text(html)
    return root


@pytest.fixture(scope="module")
def confined_rows(shot_op, confined):
    """The input folder read by the html source (rows carry meta.root) and rendered by gui_screenshot."""
    from pipelines.readers import ReaderConfig, plan_parts, read_part

    config = ReaderConfig(format="html")
    rows = [r for p in plan_parts([str(confined / "site")], config) for b in read_part(p, config)
            for r in b.to_pylist()]
    schema = record_schema(shot_op.adds)
    out = apply_generator(shot_op, pa.RecordBatch.from_pylist(rows, schema=schema), schema).to_pylist()
    site = str(confined / "site") + "/"
    pages = {r["source"].removeprefix(site).removesuffix(".html"): r for r in out if r["parent"] is None}
    children = {name: [r for r in out if r["parent"] == page["key"]] for name, page in pages.items()}
    return pages, children


def test_pages_that_reach_outside_their_folder_are_dropped_with_the_reason(confined_rows, confined):
    import json

    pages, children = confined_rows
    secret = (confined / "outside" / "secret.html").as_uri()
    assert json.loads(pages["frame_abs"]["meta"])["root"] == str((confined / "site").resolve())
    expected = {
        "frame_abs": f"blocked_file:{secret}",
        "frame_dotdot": f"blocked_file:{secret}",  # Chromium resolves the `..` before asking
        "frame_link": f"blocked_file:{(confined / 'site' / 'link.html').as_uri()}",
        "frame_hidden": f"blocked_file:{(confined / 'site' / '.hidden' / 'secret.html').as_uri()}",
        "nav_etc": "navigated_away:file:///etc/",
        "nav_sibling": f"navigated_away:{(confined / 'site' / 'frame_inside.html').as_uri()}",
        # Pages the folder lists but that are not the user's: a link leading out, a dot folder.
        "link": f"outside_input:{secret}",
        ".hidden/secret": f"outside_input:{(confined / 'site' / '.hidden' / 'secret.html').as_uri()}",
    }
    for name, reason in expected.items():
        page = pages[name]
        assert (page["keep"], page["error"], page["reason"]) == (False, False, reason), name
        assert children[name] == [], name  # not one screenshot of it
    # A frame inside the folder, and the folder's own pages, render as before.
    for name in ("frame_inside", "images", "sub/inner"):
        assert pages[name]["reason"] == "expanded:2", name


def test_no_kept_screenshot_shows_anything_from_outside(confined_rows, confined):
    pages, children = confined_rows
    for name in ("view_source", "chrome", "data", "popup_download"):
        # Chromium refuses these navigations itself; had one gone through, the final-URL check drops the page.
        assert pages[name]["reason"] == "expanded:2" or pages[name]["reason"].startswith("navigated_away:"), name
    kept = [c for cs in children.values() for c in cs if c["keep"]]
    assert kept
    for child in kept:
        page = next(n for n, cs in children.items() if child in cs)
        texts = [e["text"] or "" for e in child["elements"]]
        assert not any(MARKER in t or "Index of" in t for t in texts), (page, texts)
        assert MARKER not in (child["text"] or "")  # the title
        assert any(t in ("Stay here", "Another button", "Inner words") for t in texts), (page, texts)
    # The download was refused: nothing written anywhere near the input.
    assert not list(confined.rglob("escaped.txt")) and not list(confined.parent.rglob("escaped.txt"))


def test_images_load_only_from_inside_the_folder(shot_op, confined):
    site = confined / "site"
    sizes_js = "() => [...document.images].map((im) => im.naturalWidth)"
    [shot] = shot_op.browser.render((site / "images.html").as_uri(), [Viewport("desktop", 800, 600)], sizes_js,
                                    None, 10, file_roots=[str(site)])
    # site/pic.png loads; ../outside/pic.png, a link leading out, a dot folder: refused (the page itself is kept).
    assert shot.extracted == [20, 0, 0, 0]
    # A page given alone (no root) may load from its own folder only.
    [shot] = shot_op.browser.render((site / "sub" / "inner.html").as_uri(), [Viewport("desktop", 800, 600)],
                                    "() => fetch('../pic.png').then(() => 'read', () => 'refused')", None, 10)
    assert shot.extracted == "refused"


def test_web_pages_cannot_pull_local_files(qa_op, confined, tmp_path):
    """An http page (a URL list) with an iframe and an image on file:// beside a same-origin iframe: the screenshot
    shows the inner page (OCR reads it) and never the file; a redirect to a file is no page."""
    import functools
    import http.server

    import numpy as np

    web = tmp_path / "web"
    web.mkdir()
    (web / "inner.html").write_text('<html><body><p style="font: 30px sans-serif">Inner words</p></body></html>')
    (web / "page.html").write_text(_page("Web page", (
        '<br><iframe src="/inner.html" style="width: 500px; height: 90px"></iframe><br>'
        f'<iframe src="{(confined / "outside" / "secret.html").as_uri()}" style="width: 700px; height: 90px">'
        f'</iframe><img src="{(confined / "outside" / "pic.png").as_uri()}">')))
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/go":  # a server that redirects to a local file
                self.send_response(302)
                self.send_header("Location", (confined / "outside" / "secret.html").as_uri())
                self.end_headers()
            else:
                super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(web)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    op = GuiScreenshot(timeout_s=8, viewports=[{"name": "desktop", "width": 800, "height": 400}])
    op.setup()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        [child] = op.generate({"key": "w", "source": f"{base}/page.html", "meta": None})
        with pytest.raises((PageError, Drop)):  # Chromium refuses the redirect (ERR_UNSAFE_REDIRECT); never kept
            op.generate({"key": "r", "source": f"{base}/go", "meta": None})
    finally:
        op.close()
        server.shutdown()
    image = np.asarray(Image.open(io.BytesIO(child["image"])).convert("RGB"))
    read = qa_op.verifier.engine(image, use_det=True, use_cls=False, use_rec=True).txts or ()
    seen = " ".join(read)
    assert "Inner words" in seen and "Web page" in seen, seen
    assert MARKER not in seen and "secret" not in seen, seen


# --- targets carry only what a screenshot can show ---------------------------------------------------------------

def test_control_characters_never_reach_elements_or_targets(shot_op, qa_op, pages):
    import unicodedata

    (pages / "controls.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>Con\x07trols\tpage</title></head>'
        '<body style="font: 26px sans-serif; margin: 30px"><h1>Plain heading</h1>'
        '<p><button>\x1b]0;pwn\x07Zap</button></p><p><button id="empty">\x07\x1b\x7f</button></p>'
        '<p>Zero\u200bwidth words</p></body></html>', encoding="utf-8")
    children = shot_op.generate({"key": "ctl", "source": str(pages / "controls.html"), "meta": None})
    desktop = next(c for c in children if c["viewport"] == "desktop")

    def clean(s):
        return all(unicodedata.category(ch) not in ("Cc", "Cf") for ch in s)

    assert clean(desktop["text"]) and desktop["text"].endswith("trols page")  # the title
    texts = [e["text"] for e in desktop["elements"]]
    assert "]0;pwnZap" in texts and "Zerowidth words" in texts and all(clean(t) for t in texts if t)
    empty = [e for e in desktop["elements"] if e["tag"] == "button" and e["text"] is None]
    assert len(empty) == 1  # the button of control characters only: still an element, no text
    qa = list(qa_op.generate({**desktop, "key": "ctl-shot"}))
    assert {c["text"] for c in qa} >= {"]0;pwnZap", "Plain heading"}
    for c in qa:
        assert c["text"] and clean(c["text"]) and c["boxes"][0]["box"] != empty[0]["box"]
        for message in c["messages"] or []:
            for part in message["content"]:
                assert clean((part.get("text") or "").replace("\n", "")), part


def test_qa_normalises_element_texts_from_any_source():
    op = GuiQA(verify_ocr=False, per_screenshot=10, rec_share=0.5)
    op.setup()
    elements = [{"tag": "button", "role": "\x1bbutton", "text": "\x1b]0;pwn\x07Zap", "box": [0, 0, 50, 20],
                 "interactive": True},
                {"tag": "button", "role": "button", "text": "\x07\x1b", "box": [0, 30, 50, 50], "interactive": True},
                {"tag": "p", "role": "paragraph", "text": "Ok \t\n fine", "box": [0, 60, 50, 80], "interactive": False}]
    row = {"key": "k", "image": b"", "width": 100, "height": 100, "elements": elements,
           "elements_text_shown": [True] * 3}
    children = list(op.generate(row))
    assert sorted(c["text"] for c in children) == ["Ok fine", "]0;pwnZap"]
    for c in children:
        question = c["messages"][0]["content"][-1]["text"]
        assert "\x1b" not in question and "\x07" not in question and c["boxes"][0]["label"] == c["text"]


# --- URL lists ---------------------------------------------------------------------------------------------------

def test_url_list_lines_that_are_not_urls_become_error_rows(tmp_path):
    import json

    from pipelines.readers import ReaderConfig, plan_parts, read_part
    from pipelines.readers.base import detect_format

    urls = tmp_path / "urls.txt"
    urls.write_text("# pages\nhttp://example.com/\nnot a url\n\nhttps://a.test/x\njavascript:alert(1)\n")
    assert detect_format(str(urls)) == "html"
    for fmt in ("auto", "html"):
        config = ReaderConfig(format=fmt)
        rows = [r for p in plan_parts([str(urls)], config) for b in read_part(p, config) for r in b.to_pylist()]
        got = [(r["source"], r["keep"], r["error"], r["reason"]) for r in rows]
        assert got == [("http://example.com/", True, False, None), ("not a url", False, True, "not_a_url"),
                       ("https://a.test/x", True, False, None), ("javascript:alert(1)", False, True, "not_a_url")]
        assert json.loads(rows[0]["meta"]) == {"url": "http://example.com/"}
    # Past the first 64 KB too: every line is judged when read.
    long = tmp_path / "long.txt"
    long.write_text("".join(f"https://host.test/{i:06d}\n" for i in range(4000)) + "stray words\n")
    assert long.stat().st_size > 1 << 16 and detect_format(str(long)) == "html"
    rows = [r for p in plan_parts([str(long)], ReaderConfig()) for b in read_part(p, ReaderConfig())
            for r in b.to_pylist()]
    assert len(rows) == 4001 and [r["source"] for r in rows if r["error"]] == ["stray words"]
    # Prose that happens to start with a URL, or a list that does not start with one, is no URL list.
    prose = tmp_path / "prose.txt"
    prose.write_text("https://example.com/\nA first sentence of prose.\nAnother one follows here.\n")
    late = tmp_path / "late.txt"
    late.write_text("my pages:\nhttp://example.com/\nhttp://example.org/\n")
    assert detect_format(str(prose)) == "text" and detect_format(str(late)) == "text"
