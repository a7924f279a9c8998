import io

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.decode import Decode
from pipelines.operator import apply_map
from pipelines.schema import record_schema
from tests.images import jpeg_bytes, png_bytes


def _batch(images: list[bytes | None]) -> pa.RecordBatch:
    rows = [
        {"key": f"k{i}", "image": im, "text": "a caption", "source": f"s{i}", "dataset": "d", "meta": "{}",
         "part": 0, "ord": i, "keep": True, "error": False, "stage": None, "reason": None}
        for i, im in enumerate(images)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=record_schema())


def _run(images, **cfg):
    op = Decode(cfg)
    return apply_map(op, _batch(images), record_schema(op.adds)).to_pylist()


def test_keeps_original_png_and_jpeg_bytes_and_reports_size():
    png, jpg = png_bytes((40, 30), seed=1), jpeg_bytes((50, 20))
    rows = _run([png, jpg])
    assert [r["keep"] for r in rows] == [True, True]
    assert rows[0]["image"] == png and rows[0]["image_format"] == "png"
    assert rows[1]["image"] == jpg and rows[1]["image_format"] == "jpeg"
    assert (rows[0]["width"], rows[0]["height"]) == (40, 30)
    assert (rows[1]["width"], rows[1]["height"]) == (50, 20)


def test_exif_orientation_is_applied_and_image_reencoded():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = jpeg_bytes((60, 20), exif=exif.tobytes())
    row = _run([data])[0]
    assert row["keep"] and (row["width"], row["height"]) == (20, 60)
    assert row["image"] != data
    assert Image.open(io.BytesIO(row["image"])).size == (20, 60)


def test_other_formats_are_reencoded_as_rgb_jpeg():
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes((30, 30), seed=2))).convert("P").save(buf, format="GIF")
    row = _run([buf.getvalue()])[0]
    assert row["keep"] and row["image_format"] == "jpeg"
    assert Image.open(io.BytesIO(row["image"])).format == "JPEG"


def _plain_rgb(data: bytes) -> Image.Image:
    """What a reader that knows nothing of vlmdata sees: webdataset's "rgb8" decoder is this convert."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def test_wide_and_transparent_pngs_are_stored_so_a_plain_reader_sees_the_judged_pixels():
    from pipelines.imaging import decode_rgb

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16)).save(buf, format="PNG")  # 16-bit grey
    wide = buf.getvalue()
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 16:, 3] = 255  # left half fully transparent (black under it)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    alpha = buf.getvalue()

    kept = _run([wide, alpha])
    assert [r["keep"] for r in kept] == [True, True]
    # 16-bit samples: a plain convert clips them to white, so the 8-bit view the stages judged is stored
    assert kept[0]["image"] != wide and kept[0]["image_format"] == "jpeg"  # reencode_format's default
    assert np.asarray(_plain_rgb(kept[0]["image"])).std() > 30  # the noise survives (clipped it would be white)
    assert np.abs(np.asarray(_plain_rgb(kept[0]["image"]), np.int16)
                  - np.asarray(decode_rgb(wide), np.int16)).mean() < 3  # JPEG q95 of the view
    # transparency is kept by default (bytes as they are); `alpha: white` stores the composite
    assert kept[1]["image"] == alpha
    white = _run([alpha], alpha="white", reencode_format="png")[0]
    assert white["image_format"] == "png"
    assert _plain_rgb(white["image"]).tobytes() == decode_rgb(alpha).tobytes()
    assert _plain_rgb(white["image"]).getpixel((0, 0)) == (255, 255, 255)
    assert white["pixel_sha1"] == kept[1]["pixel_sha1"]  # the same picture was judged either way


def test_max_side_downscales():
    row = _run([jpeg_bytes((400, 100))], max_side=200)[0]
    assert (row["width"], row["height"]) == (200, 50)


def test_broken_images_are_errors_with_reasons_and_lose_their_bytes():
    png = png_bytes((64, 64), seed=3)
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")
    rows = _run([b"", b"<html>not an image</html>", png[: len(png) // 2], bomb.getvalue(), png], max_pixels=10_000_000)
    got = [(r["keep"], r["error"], r["stage"], (r["reason"] or "").split(":")[0]) for r in rows]
    assert got == [
        (False, True, "decode", "empty_file"),
        (False, True, "decode", "not_an_image"),
        (False, True, "decode", "truncated"),
        (False, True, "decode", "decompression_bomb"),
        (True, False, None, ""),
    ]
    assert all(r["image"] is None for r in rows[:4])


def test_pixel_hash_ignores_encoding_but_not_pixels():
    img = Image.open(io.BytesIO(png_bytes((32, 32), seed=4)))
    a, b = io.BytesIO(), io.BytesIO()
    img.save(a, format="PNG", compress_level=1)
    img.save(b, format="PNG", compress_level=9)
    other = png_bytes((32, 32), seed=5)
    rows = _run([a.getvalue(), b.getvalue(), other])
    assert a.getvalue() != b.getvalue()
    assert rows[0]["pixel_sha1"] == rows[1]["pixel_sha1"] != rows[2]["pixel_sha1"]


def test_solid_images_have_zero_colour_spread():
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), (10, 200, 30)).save(buf, format="PNG")
    rows = _run([buf.getvalue(), png_bytes((50, 50), seed=6)])
    assert rows[0]["color_std"] == 0.0
    assert rows[1]["color_std"] > 20
