"""ocr_scene on real images: python3-doc's figures (a diagram with text, a drawing without), and a corrupt file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.operator import Drop, apply_map, ready
from pipelines.schema import record_schema
from synth.ocr.scene_op import SceneText

IMAGES = Path("/usr/share/doc/python3.11/html/_images")


def row(key: str, data: bytes, caption: str = "a figure") -> dict:
    return {"key": key, "parent": None, "image": data, "text": caption, "source": key, "dataset": "doc",
            "meta": "{}"}


@pytest.fixture(scope="module")
def scene() -> SceneText:
    return ready(SceneText({"threads": 0}))


def test_text_in_an_image_is_kept_with_quads_and_scores(scene: SceneText) -> None:
    data = (IMAGES / "pathlib-inheritance.png").read_bytes()
    (child,) = list(scene.generate(row("pathlib", data)))
    texts = " ".join(it["text"] for it in child["ocr"])
    assert "PurePath" in texts and "Path" in texts
    assert all(it["score"] >= 0.9 and len(it["quad"]) == 4 for it in child["ocr"])
    for it in child["ocr"]:
        x1, y1, x2, y2 = it["box"]
        assert 0 <= x1 < x2 <= child["width"] and 0 <= y1 < y2 <= child["height"]
    assert child["text"] == "\n".join(it["text"] for it in child["ocr"])
    assert child["caption"] == "a figure" and child["image"] == data and child["image_format"] == "png"
    assert child["messages"][0]["content"][0]["type"] == "image"


def test_image_without_text_is_dropped_and_corrupt_one_is_an_error(scene: SceneText) -> None:
    with pytest.raises(Drop) as drop:
        list(scene.generate(row("star", (IMAGES / "turtle-star.png").read_bytes())))
    assert drop.value.reason == "no_text_detected"
    schema = record_schema(scene.adds)
    rows = [{**row("bad", b"\xff\xd8\xff\xe0 truncated jpeg"), "keep": True, "error": False},
            {**row("tk", (IMAGES / "tk_msg.png").read_bytes()), "keep": True, "error": False}]
    out = apply_map(scene, pa.RecordBatch.from_pylist(rows, schema=schema), schema).to_pylist()
    bad = next(r for r in out if r["key"] == "bad")
    assert bad["error"] and bad["reason"].startswith("ocr_scene_failed:")
    tk = next(r for r in out if r["key"] == "tk")
    assert tk["reason"] == "expanded:1"
    assert any(r["parent"] == "tk" and r["keep"] for r in out)


def test_a_rotated_or_16_bit_picture_is_stored_as_the_picture_that_was_read(scene: SceneText) -> None:
    import io

    import numpy as np
    from PIL import Image

    page = Image.open(IMAGES / "tk_msg.png").convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    buf = io.BytesIO()
    page.transpose(Image.Transpose.ROTATE_90).convert("RGB").save(buf, format="JPEG", quality=95, exif=exif)
    wide = io.BytesIO()
    Image.fromarray(np.asarray(page).astype(np.uint16) * 257).save(wide, format="PNG")  # 16-bit grey
    for data in (buf.getvalue(), wide.getvalue()):
        (child,) = scene.generate(row("r", data))
        stored = Image.open(io.BytesIO(child["image"]))
        assert child["image_format"] == "png" and stored.mode in ("RGB", "L") and not stored.getexif().get(0x0112)
        assert stored.size == (child["width"], child["height"]) == page.size  # boxes are about these pixels
        assert max(it["box"][2] for it in child["ocr"]) <= child["width"]
