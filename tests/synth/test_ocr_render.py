"""ocr_render on real renders: boxes enclose their glyphs, PP-OCR reads the default renders back (English and
Chinese), every failure (tofu, a font that does not load, a background that does not decode) is a reason, input
text is normalised (no control character in a label the image cannot show), and an empty text file of a corpus
given as --input is an error row."""

from __future__ import annotations

import io
import json
import tarfile
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

import synth.ocr as ocr_verbs
from pipelines.formats import box_from_1000, parse_boxes
from pipelines.operator import apply_map, ready
from pipelines.schema import record_schema
from synth.ocr.render_op import RenderDocs
from synth.ocr.verify import OcrEngine, cer, read_text

PLAIN = {"background_weights": {"plain": 1.0}, "verify": {"enabled": False}}


def seed(i: int, text: str = "", image: bytes | None = None) -> dict:
    return {"key": f"seed-{i}", "parent": None, "image": image, "text": text, "source": f"count:{i}",
            "dataset": "count", "meta": "{}"}


@pytest.fixture(scope="module")
def ocr() -> OcrEngine:
    return OcrEngine(threads=0)


@pytest.fixture(scope="module")
def plain_op() -> RenderDocs:
    op = RenderDocs(PLAIN, rotation=0.0)
    op.setup()
    return op


def ink(image: bytes) -> tuple[np.ndarray, Image.Image]:
    img = Image.open(io.BytesIO(image)).convert("RGB")
    arr = np.asarray(img).astype(np.int32)
    background = arr[0, 0]  # the margin: plain background
    return np.abs(arr - background).sum(axis=2) > 60, img


def quad_mask(size: tuple[int, int], quads: list, grow: int) -> np.ndarray:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for q in quads:
        pts = [tuple(p) for p in q]
        draw.polygon(pts, fill=255)
        if grow:
            draw.line([*pts, pts[0]], fill=255, width=2 * grow + 1, joint="curve")
    return np.asarray(mask) > 0


@pytest.mark.parametrize("rotation", [0.0, 9.0])
def test_word_boxes_enclose_the_glyphs_of_their_words(rotation: float) -> None:
    op = RenderDocs(PLAIN, rotation=rotation, font_size=(22, 30), max_lines=(3, 5))
    op.setup()
    for i in range(3):
        out = op.render_one(seed(i), 0)
        assert out.get("keep", True), out.get("reason")
        inked, img = ink(out["image"])
        words = [it for it in out["ocr"] if it["level"] == "word"]
        lines = [it for it in out["ocr"] if it["level"] == "line"]
        assert words and lines
        assert "".join(w["text"] for w in words).replace(" ", "") == out["text"].replace(" ", "").replace("\n", "")
        # Outside every word's quadrilateral (grown by 2 px for antialiasing): no ink at all.
        inside_any = quad_mask(img.size, [w["quad"] for w in words], grow=2)
        assert inked.sum() > 500
        assert (inked & ~inside_any).sum() == 0
        # Inside each word: ink, and most of its box is reached by the glyphs (the box is not loose).
        for w in words:
            x1, y1, x2, y2 = (int(round(v)) for v in w["box"])
            inside = quad_mask(img.size, [w["quad"]], grow=0)
            assert (inked & inside).sum() > 0, w["text"]
            if rotation == 0.0:
                cols = np.nonzero(inked[y1:y2 + 1, x1:x2 + 1].any(axis=0))[0]
                rows = np.nonzero(inked[y1:y2 + 1, x1:x2 + 1].any(axis=1))[0]
                assert cols.min() <= 3 and cols.max() >= (x2 - x1) - 3, w["text"]
                assert rows.min() <= 3 and rows.max() >= (y2 - y1) - 3, w["text"]
        # A line's box holds its words.
        for ln in lines:
            lx1, ly1, lx2, ly2 = ln["box"]
            held = [w for w in words if lx1 - 1 <= w["box"][0] and w["box"][2] <= lx2 + 1
                    and ly1 - 1 <= w["box"][1] and w["box"][3] <= ly2 + 1]
            assert "".join(w["text"] for w in held).replace(" ", "") == ln["text"].replace(" ", "")


@pytest.mark.parametrize("share,lang", [(0.0, "latin"), (1.0, "zh")])
def test_default_renderer_reads_back_with_low_cer(share: float, lang: str) -> None:
    op = RenderDocs(cjk_share=share, verify={"threads": 0})
    op.setup()
    outs = [op.render_one(seed(100 + i), 0) for i in range(4)]
    assert all(o["lang"] == lang for o in outs)
    cers = [o["cer"] for o in outs]
    assert np.mean(cers) <= 0.05, [(o["text"], o["ocr_read"]) for o in outs]
    assert all(o.get("keep", True) == (o["cer"] <= 0.1) for o in outs)


def test_forced_tofu_is_caught() -> None:
    only_latin = RenderDocs(PLAIN, fonts=["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"], font_choice="any")
    only_latin.setup()
    out = only_latin.render_one(seed(1, "Debian 中文 text"), 0)
    assert out["keep"] is False and out["reason"] == "tofu:U+4E2D"
    # A character no font has (private use area) is caught even when a covering font is looked for.
    covering = RenderDocs(PLAIN)
    covering.setup()
    out = covering.render_one(seed(2, "plain words \U00010000 and more"), 0)  # Linear B: in no bundled font
    assert out["keep"] is False and out["reason"] == "tofu:U+10000"
    # CJK text with a font choice that covers it renders with a CJK face.
    out = covering.render_one(seed(3, "中文字体测试"), 0)
    assert out.get("keep", True) and "CJK" in out["font"]


def test_broken_font_and_background_are_drop_reasons(tmp_path) -> None:
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"\x00\x01\x00\x00 not really a font")
    op = RenderDocs(PLAIN, fonts=[str(bad)])
    op.setup()
    out = op.render_one(seed(1, "some text"), 0)
    assert out["keep"] is False and out["reason"].startswith("font_load_failed:broken.ttf")
    photo = RenderDocs({**PLAIN, "background_weights": {"photo": 1.0}})
    photo.setup()
    out = photo.render_one(seed(2, "some text", image=b"\x89PNG\r\n\x1a\n truncated"), 0)
    assert out["keep"] is False and out["reason"].startswith("background_decode_failed:")
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="JPEG")
    out = photo.render_one(seed(3, "some text", image=buf.getvalue()), 0)
    assert out.get("keep", True) and out["background"] == "photo:count:3"


def test_generator_rows_are_deterministic_and_typed(plain_op: RenderDocs) -> None:
    a, b = plain_op.render_one(seed(7), 0), plain_op.render_one(seed(7), 0)
    assert a["image"] == b["image"] and a["ocr"] == b["ocr"] and a["messages"] == b["messages"]
    assert plain_op.render_one(seed(8), 0)["image"] != a["image"]
    schema = record_schema(plain_op.adds)
    rows = [{**seed(i), "keep": True, "error": False} for i in range(3)]
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    out = apply_map(ready(RenderDocs(PLAIN, per_seed=2)), batch, schema).to_pylist()
    parents = [r for r in out if r["parent"] is None]
    children = [r for r in out if r["parent"] is not None]
    assert [p["reason"] for p in parents] == ["expanded:2"] * 3
    assert len(children) == 6 and all(c["keep"] and c["image_format"] == "png" for c in children)
    c = children[0]
    img = Image.open(io.BytesIO(c["image"]))
    assert (img.width, img.height) == (c["width"], c["height"])
    assert c["text"] and c["font"] and c["font_size"] > 0 and c["color"].startswith("#")
    # Messages: read all (the full text), and the line inside a box given in the 0-1000 convention.
    turns = c["messages"]
    answers = {t["content"][0]["text"] for t in turns if t["role"] == "assistant"}
    assert c["text"] in answers
    box_q = next(t for t in turns if t["role"] == "user" and "box" in t["content"][-1]["text"])
    box = box_from_1000(parse_boxes(box_q["content"][-1]["text"])[0], c["width"], c["height"])
    asked = min((it for it in c["ocr"] if it["level"] == "line"),
                key=lambda it: sum(abs(u - v) for u, v in zip(it["box"], box, strict=True)))
    assert asked["text"] in answers
    assert turns[0]["content"][0]["type"] == "image"


def test_control_characters_are_not_in_the_label(plain_op: RenderDocs, ocr: OcrEngine) -> None:
    """ESC, zero-width and private-use characters draw nothing: the label holds exactly what is drawn."""
    out = plain_op.render_one(seed(4, "\x1b[31mred\x1b[0m alert\u200b level \ue000seven"), 0)
    assert out.get("keep", True), out.get("reason")
    assert out["text"].replace("\n", " ") == "[31mred[0m alert level seven"
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Co") for it in out["ocr"] for ch in it["text"]
                   if ch != "\n")
    read = read_text(ocr.read(Image.open(io.BytesIO(out["image"])).convert("RGB")))
    assert cer(read, out["text"]) <= 0.1, (read, out["text"])


def test_a_text_corpus_input_lists_empty_files_and_normalises_text(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "red.txt").write_text("\x1b[31mred\x1b[0m alert in the\x07 control room\n")
    (corpus / "empty.txt").write_text("")
    (corpus / "blank.txt").write_text(" \n\t\n")
    out = tmp_path / "out"
    ocr_verbs.run("ocr-render", str(out), input=str(corpus),
                  overrides={"engine.name": "local", "engine.workers": 0, "stages.0.verify.enabled": False})
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    by = {r["source"].rsplit("/", 1)[-1]: r for r in ledger if r["parent"] is None}
    assert set(by) == {"red.txt#paragraph=0", "empty.txt", "blank.txt"}
    for name in ("empty.txt", "blank.txt"):
        assert (by[name]["status"], by[name]["stage"], by[name]["reason"]) == ("error", "read", "empty_file")
    (tar,) = (out / "shards").glob("*.tar")
    with tarfile.open(tar) as t:
        (txt,) = [t.extractfile(m).read() for m in t.getmembers() if m.name.endswith(".txt")]
        (meta,) = [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith(".json")]
    assert b"\x1b" not in txt and b"\x07" not in txt
    assert txt.decode().replace("\n", " ") == "[31mred[0m alert in the control room" == meta["caption"].replace("\n", " ")
