"""decode_rgb: stored bytes → the upright 8-bit RGB picture, transparency over white, wide samples scaled."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.imaging import DecodeError, decode_rgb, open_image

STAMPS = Path("/usr/share/tuxpaint/stamps")


def encode(img: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def _ramp(w: int, h: int) -> np.ndarray:
    """[h, w] values 0..1 across the width."""
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))


def rgba_partial() -> bytes:
    """Colour blocks whose alpha runs from 0 (left) to 255 (right)."""
    h, w = 16, 32
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:8] = (200, 30, 30)
    rgb[8:] = (20, 90, 160)
    alpha = np.rint(_ramp(w, h) * 255).astype(np.uint8)
    return encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))


def la_partial() -> bytes:
    h, w = 16, 32
    gray = np.full((h, w), 40, np.uint8)
    alpha = np.rint(_ramp(w, h) * 255).astype(np.uint8)
    return encode(Image.fromarray(np.dstack([gray, alpha]), "LA"))


P_COLOURS = [(255, 0, 0), (0, 0, 255), (0, 160, 0)]
P_ALPHA = bytes([0, 128, 255])  # index 0 transparent, 1 half, 2 opaque


def p_trns() -> bytes:
    idx = np.zeros((12, 12), np.uint8)
    idx[:, 4:8], idx[:, 8:] = 1, 2
    img = Image.fromarray(idx, "P")
    img.putpalette([c for rgb in P_COLOURS for c in rgb])
    return encode(img, transparency=P_ALPHA)


CMYK_BLOCKS = [(255, 0, 0, 0), (0, 255, 255, 0), (0, 0, 0, 128), (128, 0, 0, 128)]


def cmyk_jpeg() -> bytes:
    """16-px blocks (whole JPEG blocks, so colours do not bleed): cyan, red, 50% grey, a dark teal."""
    arr = np.zeros((16, 16 * len(CMYK_BLOCKS), 4), np.uint8)
    for i, c in enumerate(CMYK_BLOCKS):
        arr[:, 16 * i : 16 * (i + 1)] = c
    return encode(Image.fromarray(arr, "CMYK"), "JPEG", quality=95)


I16 = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))


def i16_png() -> bytes:
    """A 16-bit grey gradient over the whole 16-bit range (Pillow opens it as I;16)."""
    return encode(Image.fromarray(I16))


EXIF_SRC = np.zeros((16, 64, 3), np.uint8)  # halves on JPEG block edges: no colour bleeds across
EXIF_SRC[:, :32] = (230, 40, 40)
EXIF_SRC[:, 32:] = (40, 40, 230)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to display
    return encode(Image.fromarray(EXIF_SRC), "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


def one_bit() -> bytes:
    checker = (np.indices((16, 16)).sum(axis=0) % 2).astype(bool)
    return encode(Image.fromarray(checker))


# every input kind the issue names; test_one_picture runs them through curation and the trainer
INPUTS: dict[str, Callable[[], bytes]] = {
    "rgba": rgba_partial,
    "la": la_partial,
    "p_trns": p_trns,
    "cmyk_jpeg": cmyk_jpeg,
    "i16_png": i16_png,
    "exif_rotated_jpeg": exif_rotated_jpeg,
    "one_bit": one_bit,
}


def pixels(data: bytes) -> np.ndarray:
    rgb = decode_rgb(data)
    assert rgb.mode == "RGB"
    return np.asarray(rgb).astype(int)


def over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return colour * a + 255 * (1 - a)


def test_partial_alpha_is_composited_over_white():
    got = pixels(rgba_partial())
    alpha = np.rint(_ramp(32, 16) * 255)
    colour = np.zeros((16, 32, 3))
    colour[:8], colour[8:] = (200, 30, 30), (20, 90, 160)
    assert np.abs(got - over_white(colour, alpha)).max() <= 1
    assert (got[:, 0] == 255).all() and (got[:8, -1] == (200, 30, 30)).all()

    got = pixels(la_partial())
    assert np.abs(got - over_white(np.full((16, 32, 3), 40.0), alpha)).max() <= 1


def test_palette_transparency_per_index():
    got = pixels(p_trns())
    assert (got[:, :4] == 255).all()  # index 0: fully transparent
    assert np.abs(got[:, 4:8] - over_white(np.array([0.0, 0, 255]), np.array(128.0))).max() <= 1
    assert (got[:, 8:] == (0, 160, 0)).all()


def test_colour_key_transparency_in_rgb_and_16_bit():
    rgb = np.full((4, 8, 3), (0, 0, 1), np.uint8)
    rgb[:, 4:] = (90, 10, 10)
    got = pixels(encode(Image.fromarray(rgb), transparency=(0, 0, 1)))
    assert (got[:, :4] == 255).all() and (got[:, 4:] == (90, 10, 10)).all()

    got = pixels(encode(Image.fromarray(I16), transparency=0))  # tRNS grey key in 16-bit units
    assert (got[:, 0] == 255).all() and (got[:, 1:, 0] == (I16[:, 1:] >> 8)).all()


def test_cmyk_is_converted_like_a_viewer():
    got = pixels(cmyk_jpeg())
    centres = [got[8, 16 * i + 8] for i in range(len(CMYK_BLOCKS))]
    expected = [(0, 255, 255), (255, 0, 0), (127, 127, 127), (64, 127, 127)]  # (255-C)(255-K)/255 per channel
    assert np.abs(np.array(centres) - np.array(expected)).max() <= 6


def test_sixteen_bit_keeps_its_gradient():
    data = i16_png()
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    got = pixels(data)
    assert (got[..., 0] == (I16 >> 8)).all() and (got[..., 0] == got[..., 2]).all()
    assert (got == 255).all(axis=-1).mean() < 0.01 and len(np.unique(got)) == 256
    # what the issue saw: the plain RGB view clips almost everything to white
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 255).all(axis=-1).mean() > 0.9


def test_32_bit_and_float_samples_are_scaled_not_clipped():
    pgm = b"P5 4 4 65535\n" + (np.arange(16) * 4000).astype(">u2").tobytes()  # 16-bit PGM: Pillow gives mode I
    assert Image.open(io.BytesIO(pgm)).mode == "I"
    assert (pixels(pgm)[..., 0].ravel() == (np.arange(16) * 4000) >> 8).all()

    unit = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    got = pixels(encode(Image.fromarray(unit), "TIFF"))
    assert (got[..., 0] == np.rint(unit * 255)).all()

    wide = np.linspace(-1000, 3000, 16, dtype=np.float32).reshape(4, 4)  # outside every standard range: stretched
    got = pixels(encode(Image.fromarray(wide), "TIFF"))
    assert got[0, 0, 0] == 0 and got[-1, -1, 0] == 255 and (np.diff(got[..., 0].ravel()) > 0).all()


def test_exif_orientation_is_applied():
    got = pixels(exif_rotated_jpeg())
    assert got.shape == (64, 16, 3)  # stored 64×16, shown 16×64
    assert np.abs(got - np.rot90(EXIF_SRC, k=-1)).max() <= 4  # clockwise: the left (red) half ends on top


def test_one_bit_is_black_and_white():
    got = pixels(one_bit())
    checker = np.indices((16, 16)).sum(axis=0) % 2
    assert (got[..., 0] == checker * 255).all() and (got[..., 0] == got[..., 1]).all()


def test_ordinary_8_bit_pictures_keep_their_pixels():
    """Plain RGB/L/P files decode as `convert("RGB")` did, so pixel hashes made before stay valid."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    for data in (encode(rgb, "JPEG", quality=80), encode(rgb), encode(rgb.convert("L")), encode(rgb.quantize(32)),
                 encode(rgb, "WEBP", quality=70)):
        plain = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(np.asarray(decode_rgb(data)), plain)


@pytest.mark.skipif(not STAMPS.is_dir(), reason="Debian's tuxpaint-stamps-default is not installed")
def test_demo_stamps_decode_as_curation_saw_them_before():
    """On real demo stamps (RGBA, LA, P with tRNS; every 5th, for time): the same composite over white as before."""
    seen = 0
    for path in sorted(STAMPS.rglob("*.png"))[::5]:
        with Image.open(path) as img:
            img.load()
            if img.mode == "RGB":  # the one RGB stamp has a colour key, which is now honoured (tested above)
                continue
            if img.has_transparency_data:
                rgba = img.convert("RGBA")
                before = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
            else:
                before = img.convert("RGB")
        assert decode_rgb(path.read_bytes()).tobytes() == before.tobytes(), path
        seen += 1
    assert seen > 140


def test_draft_decodes_a_large_jpeg_at_reduced_scale():
    data = encode(Image.new("RGB", (800, 600), (10, 120, 200)), "JPEG")
    small = decode_rgb(data, draft_size=(200, 200))
    assert small.mode == "RGB" and small.size == (400, 300)  # the smallest 1/2^k scale still ≥ 200 on both sides


def test_bad_bytes_raise_decode_errors_with_reasons():
    png = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    cases = [(b"", "empty_file"), (b"<html>no</html>", "not_an_image"), (png[: len(png) // 2], "truncated")]
    for data, reason in cases:
        with pytest.raises(DecodeError) as err:
            decode_rgb(data)
        assert err.value.reason == reason
    with pytest.raises(DecodeError) as err:
        open_image(png, max_pixels=64 * 63)
    assert err.value.reason == "decompression_bomb:64x64"
    assert open_image(png, max_pixels=64 * 64).size == (64, 64)


def _digest_as_written_before(rgb: Image.Image) -> str:
    """pixel_sha1 as the decode stage has always written it (the exact-dedup key in existing outputs)."""
    import hashlib

    return hashlib.sha1(f"{rgb.size[0]}x{rgb.size[1]}:".encode() + rgb.tobytes()).hexdigest()


def _spread_as_written_before(rgb: Image.Image, side: int) -> float:
    arr = np.asarray(rgb)
    h, w = arr.shape[:2]
    grid = arr[:: max(1, h // side), :: max(1, w // side)].reshape(-1, 3).astype(np.float32)
    return float(grid.std(axis=0).mean())


def test_pixel_stats_are_the_values_written_before():
    """pixel_stats hashes and strides the packed samples; the values must stay those of existing outputs (the sha1
    string and the float32-computed spread, bit for bit, of Pillow's picture) on real stamps, noise JPEGs (decoded
    straight into packed RGB) and degenerate sizes."""
    from pipelines.imaging import color_spread, decode, pixel_digest, pixel_stats, to_rgb

    rng = np.random.default_rng(7)
    inputs = [encode(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "JPEG")
              for w, h in [(512, 341), (1, 1), (1, 97), (97, 1), (31, 33), (640, 480)]]
    inputs += [rgba_partial(), la_partial(), p_trns(), cmyk_jpeg(), i16_png(), one_bit()]
    if STAMPS.is_dir():
        inputs += [p.read_bytes() for p in sorted(STAMPS.rglob("*.png"))[::25]]
    assert len(inputs) >= 12
    for data in inputs:
        picture, pillow = decode(data), to_rgb(open_image(data))
        for side in (32, 7, 1):
            digest, spread = pixel_stats(picture, side)
            assert digest == pixel_digest(picture.rgb) == _digest_as_written_before(pillow)
            assert spread == color_spread(picture.rgb, side) == _spread_as_written_before(pillow, side)
    gray = Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), "L")  # not what decode_rgb gives, still hashed
    assert pixel_digest(gray) == _digest_as_written_before(gray)


def _jpeg_variants() -> list[tuple[str, bytes]]:
    """JPEGs as cameras, phones and the web write them: chroma subsampling 4:4:4, 4:2:2 and 4:2:0, baseline and
    progressive, restart markers, greyscale, low and high quality, odd and tiny sizes, real stamps as photos."""
    rng = np.random.default_rng(11)
    sources = [Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))]
    if STAMPS.is_dir():
        for p in sorted(STAMPS.rglob("*.png"))[::60][:6]:
            stamp = Image.open(p).convert("RGBA")
            canvas = Image.new("RGB", stamp.size, (240, 230, 200))
            canvas.paste(stamp, (0, 0), stamp)
            sources.append(canvas)
    out = []
    for i, src in enumerate(sources):
        for sub in (0, 1, 2):
            for progressive in (False, True):
                w, h = int(rng.integers(1, 700)), int(rng.integers(1, 700))
                out.append((f"{i} {sub} {progressive} {w}x{h}",
                            encode(src.resize((w, h)), "JPEG", quality=int(rng.choice([35, 75, 95])), subsampling=sub,
                                   progressive=progressive)))
        out.append((f"{i} restart markers", encode(src, "JPEG", restart_marker_blocks=3)))
        out.append((f"{i} grey", encode(src.convert("L"), "JPEG")))
    return out


def test_jpegs_decoded_straight_to_packed_rgb_are_pillows_pixels():
    """The fast path (libjpeg-turbo into packed RGB) gives exactly the picture Pillow gives, and only takes the
    JPEGs it can: CMYK, EXIF rotations, corrupt or truncated data and over-limit sizes go through Pillow, with
    Pillow's pixels and reasons."""
    from pipelines.imaging import decode, to_rgb

    variants = _jpeg_variants()
    assert len(variants) >= 8
    for label, data in variants:
        picture = decode(data)
        assert picture._rgb is None and picture.format == "JPEG", label  # taken by the fast path, no Pillow image
        pillow = np.asarray(to_rgb(open_image(data)))
        assert picture.packed.shape == pillow.shape and np.array_equal(picture.packed, pillow), label
        assert np.array_equal(np.asarray(picture.rgb), pillow) and picture.size == picture.rgb.size, label
    data = variants[0][1]
    sos = data.index(b"\xff\xda")
    corrupt = data[:sos] + b"\x00\x00" + data[sos:]  # libjpeg warns (extraneous bytes) and Pillow decodes anyway
    for other in (cmyk_jpeg(), exif_rotated_jpeg(), corrupt):
        picture = decode(other)
        assert picture._rgb is not None  # Pillow's path
        assert np.array_equal(np.asarray(picture.rgb), np.asarray(to_rgb(open_image(other))))
    with pytest.raises(DecodeError) as err:
        decode(data[: len(data) // 2])
    assert err.value.reason == "truncated"
    w, h = Image.open(io.BytesIO(data)).size
    with pytest.raises(DecodeError) as err:
        decode(data, max_pixels=w * h - 1)
    assert err.value.reason == f"decompression_bomb:{w}x{h}"
