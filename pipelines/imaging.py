"""The one picture every stage and the trainer see (`decode_rgb`: stored bytes → upright 8-bit RGB, transparency
over white), pixel hashes and colour spread of that picture, and the batch-scoped cache of decoded pictures
(`decoded_views`/`views`) that lets the stages of one pass decode each image once."""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

try:  # libjpeg-turbo straight into packed RGB: Pillow's pixels (same library, same IDCT and upsampling; tested)
    import simplejpeg
except ImportError:  # pragma: no cover - a dependency; without it every JPEG goes through Pillow
    simplejpeg = None

ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 = upright, 2..8 = mirrored and/or rotated
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WIDE = (*_SIXTEEN_BIT, "I", "F")  # modes whose samples do not fit in 8 bits
_WHITE = (255, 255, 255, 255)


class DecodeError(Exception):
    """Bytes that are no usable picture; `reason` is short and machine-readable (it becomes a ledger reason)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def open_header(data: bytes, formats: list[str] | None = None) -> Image.Image:
    """`Image.open` of `data`: the header (and EXIF) read, no pixels decoded, without Pillow's warning above its own
    limit: the caller's limit (`_over_limit`) decides, so a caller may allow more or less. Pillow's errors pass
    through (DecompressionBombError past twice its limit, UnidentifiedImageError for what it cannot read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=formats)


def open_image(data: bytes, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """The stored picture opened and fully loaded, still in its own mode and orientation.

    max_pixels: more pixels than this is a decompression bomb (None: Pillow's limit, `Image.MAX_IMAGE_PIXELS`).
    draft_size: JPEG only, decode at the smallest 1/2, 1/4 or 1/8 scale still at least this large (Pillow's draft).
    Raises DecodeError with reason empty_file | not_an_image | decompression_bomb[:WxH] | truncated | decode_failed:….
    """
    if not data:
        raise DecodeError("empty_file")
    try:
        img = open_header(data)
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not_an_image") from exc
    w, h = img.size
    if _over_limit(img.size, max_pixels):
        raise DecodeError(f"decompression_bomb:{w}x{h}")
    if draft_size is not None:
        img.draft(None, draft_size)  # a no-op for formats other than JPEG
    try:
        img.load()
    except OSError as exc:
        msg = str(exc)
        raise DecodeError("truncated" if "truncat" in msg or "broken data stream" in msg else f"decode_failed:{msg[:80]}") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"decode_failed:{str(exc)[:80]}") from exc
    return img


def _over_limit(size: tuple[int, int], max_pixels: int | None) -> bool:
    """More pixels than the caller's limit (None: Pillow's, `Image.MAX_IMAGE_PIXELS`): a decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    return limit is not None and size[0] * size[1] > limit


def orientation(img: Image.Image) -> int:
    """EXIF orientation of an opened image (1 when it has none)."""
    return int(img.getexif().get(ORIENTATION_TAG) or 1)


def to_rgb(img: Image.Image) -> Image.Image:
    """The picture a viewer shows, as 8-bit RGB: EXIF orientation applied; 16-bit, 32-bit and float samples scaled
    (not clipped) to 8 bits; every kind of transparency composited over white; other modes converted (CMYK as
    viewers show untagged CMYK: (255 − C)·(255 − K)/255 per channel, which is Pillow's own conversion)."""
    if orientation(img) in range(2, 9):
        img = ImageOps.exif_transpose(img)
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in _WIDE:
        return _wide_to_rgb(img)
    if img.mode == "LAB":  # Pillow's plain convert() does not map CIELab to RGB; littlecms does
        srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(img, srgb)
    if img.has_transparency_data:  # RGBA, LA, PA, RGBa, P with tRNS or an RGBA palette, L/RGB/1 with a colour key
        return _over_white(img.convert("RGBA"))
    return img.convert("RGB")


def decode_rgb(data: bytes, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Stored image bytes → the RGB picture every stage and the trainer see (`open_image`, then `to_rgb`)."""
    return to_rgb(open_image(data, max_pixels=max_pixels, draft_size=draft_size))


class Decoded:
    """One stored picture, decoded: the RGB view (`to_rgb`) plus what the decode stage reads about the file.

    The pixels are held as a Pillow image (`rgb`) or as a packed [H, W, 3] uint8 array (`packed`), whichever the
    decoder gave; the other is made on first use and kept (an upright baseline or progressive JPEG is decoded
    straight into the array, so a stage that only hashes or samples pixels never builds the Pillow image). Both are
    shared by every stage of the pass: read them, never change them in place."""

    __slots__ = ("_packed", "_rgb", "format", "orientation", "stored_size", "wide", "transparent")

    def __init__(self, rgb: Image.Image | None, format: str | None, orientation: int, stored_size: tuple[int, int],
                 packed: np.ndarray | None = None, *, wide: bool = False, transparent: bool = False):
        if rgb is None and packed is None:
            raise ValueError("a decoded picture needs its pixels")
        self._rgb, self._packed = rgb, packed
        self.format = format  # Pillow's name of the stored format ("JPEG", "PNG", …)
        self.orientation = orientation  # EXIF orientation of the stored bytes (1: upright)
        self.stored_size = stored_size  # width, height as stored (before orientation): what a bomb limit counts
        # What a plain reader (`Image.open(...).convert("RGB")`, webdataset's "rgb8") would see differently:
        self.wide = wide  # samples wider than 8 bits (16-bit PNG …) or CIELab: a plain convert clips or mis-maps them
        self.transparent = transparent  # transparency the view composites over white: a plain convert drops it

    @property
    def rgb(self) -> Image.Image:
        if self._rgb is None:
            self._rgb = Image.fromarray(self._packed, "RGB")
        return self._rgb

    @property
    def packed(self) -> np.ndarray:
        """[H, W, 3] uint8, read-only: the samples `rgb.tobytes()` gives, in that order."""
        if self._packed is None:
            rgb = self._rgb
            assert rgb is not None
            self._packed = np.frombuffer(rgb.tobytes(), dtype=np.uint8).reshape(rgb.height, rgb.width, 3)
        return self._packed

    @property
    def size(self) -> tuple[int, int]:
        """Width, height of the RGB view."""
        if self._rgb is not None:
            return self._rgb.size
        assert self._packed is not None
        return self._packed.shape[1], self._packed.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of pixels held (what a batch's budget counts)."""
        held = self._packed.nbytes if self._packed is not None else 0
        return held + (_nbytes(self._rgb) if self._rgb is not None else 0)


def decode(data: bytes, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None) -> Decoded:
    """`decode_rgb` that also keeps the stored format, orientation and size (the decode stage needs them). The stages
    of a pass decode through here (`DecodedViews`): an upright JPEG comes back as packed RGB (the decode stage hashes
    and samples those samples; a stage that wants the Pillow image gets it built once from them, the same pixels)."""
    if draft_size is None:
        fast = _packed_jpeg(data, max_pixels)
        if fast is not None:
            return fast
    return decode_pillow(data, max_pixels=max_pixels, draft_size=draft_size)


def decode_pillow(data: bytes, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None) -> Decoded:
    """`decode` by Pillow alone (`open_image`, `to_rgb`): every picture the packed-JPEG path does not take."""
    img = open_image(data, max_pixels=max_pixels, draft_size=draft_size)
    return Decoded(to_rgb(img), img.format, orientation(img), img.size, wide=img.mode in (*_WIDE, "LAB"),
                   transparent=img.has_transparency_data)


def _packed_jpeg(data: bytes, max_pixels: int | None) -> Decoded | None:
    """An upright YCbCr or greyscale JPEG decoded by libjpeg-turbo (simplejpeg) straight into packed RGB, without
    Pillow's 4-bytes-a-pixel copy and its packing back: the same pixels `open_image` + `to_rgb` give, about 0.4 ms
    less per 512-px picture. None (the caller takes Pillow's path, which also names the error) for anything else:
    another format, CMYK, an EXIF rotation, more pixels than the limit, and any warning or error of the decoder
    (strict mode: a truncated or corrupt file is never decoded half here)."""
    if simplejpeg is None or not data.startswith(b"\xff\xd8"):
        return None
    try:
        img = open_header(data)  # the header and EXIF only
        w, h = img.size
        if img.format != "JPEG" or img.mode not in ("RGB", "L") or _over_limit(img.size, max_pixels):
            return None
        if orientation(img) != 1:
            return None
        packed = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except Exception:  # noqa: BLE001 - Pillow's path decides and names the failure
        return None
    if packed.shape != (h, w, 3) or packed.dtype != np.uint8:
        return None
    packed.flags.writeable = False
    return Decoded(None, "JPEG", 1, (w, h), packed=packed)


VIEWS_BUDGET_BYTES = 512 << 20  # decoded pixels a pass keeps per batch at most; past it, stages decode again


class DecodedViews:
    """Decoded pictures of one batch, shared by the stages of a pass, so each image is decoded once per pass.

    Keyed by the stored bytes themselves (not the row key): a stage that replaced a row's bytes (decode re-encodes
    rotated or oversized pictures) gets the picture of the new bytes, exactly as decoding them would give. Entries
    are the same objects every stage gets: read them, never change them in place. Deterministic decode failures
    (`DecodeError`) are remembered too; a bomb limit is applied to each caller's own `max_pixels`. Memory is
    bounded by one batch and by `budget` bytes of pixels; `budget=0` stores nothing (every call decodes).
    Thread-safe: a stage may decode on a pool (give the pool threads this object; they do not see `views()`).
    """

    def __init__(self, budget: int = VIEWS_BUDGET_BYTES):
        self.budget = budget
        self.held = 0  # bytes of pixels held now
        self.decodes = 0  # pictures decoded through this object (a cache miss each)
        self._pictures: dict[tuple[bytes, tuple[int, int] | None], Decoded | DecodeError] = {}
        self._lock = threading.Lock()

    def decoded(self, data: bytes, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None) -> Decoded:
        """The picture of `data` (as `decode`), decoded on first use in this batch. Raises DecodeError."""
        key = (data, draft_size)
        hit = self._pictures.get(key)
        if hit is None:
            with self._lock:
                self.decodes += 1
            try:
                hit = decode(data, max_pixels=max_pixels, draft_size=draft_size)
            except DecodeError as exc:
                if not exc.reason.startswith("decompression_bomb:"):  # that one depends on the caller's limit
                    self._store(self._pictures, key, exc, 0)
                raise
            self._store(self._pictures, key, hit, hit.nbytes)
        if isinstance(hit, DecodeError):
            raise DecodeError(hit.reason)
        if _over_limit(hit.stored_size, max_pixels):  # as open_image would have refused it
            w, h = hit.stored_size
            raise DecodeError(f"decompression_bomb:{w}x{h}")
        return hit

    def peek(self, data: bytes) -> Decoded | None:
        """The picture of `data` when this batch already decoded it (a stage may then skip a decoder of its own, a
        GPU one say), else None; never decodes."""
        hit = self._pictures.get((data, None))
        return hit if isinstance(hit, Decoded) else None

    def rgb(self, data: bytes, *, max_pixels: int | None = None) -> Image.Image:
        """`decode_rgb(data)`, decoded on first use in this batch."""
        return self.decoded(data, max_pixels=max_pixels).rgb

    def clear(self) -> None:
        with self._lock:
            self._pictures.clear()
            self.held = 0

    def _store(self, store: dict, key: Any, value: Any, size: int) -> None:
        with self._lock:
            if self.held + size <= self.budget:
                store[key] = value
                self.held += size


def _nbytes(img: Image.Image) -> int:
    return img.width * img.height * len(img.getbands())


_CURRENT: ContextVar[DecodedViews | None] = ContextVar("vlmdata_decoded_views", default=None)


def views() -> DecodedViews:
    """The decoded views of the batch being processed (inside `decoded_views()`), else a fresh object that stores
    nothing, so outside a pass (unit tests, the trainer) the same calls simply decode."""
    return _CURRENT.get() or DecodedViews(budget=0)


@contextmanager
def decoded_views(budget: int = VIEWS_BUDGET_BYTES) -> Iterator[DecodedViews]:
    """Share decoded pictures among the calls made inside (one batch of one pass); released on exit."""
    cache = DecodedViews(budget)
    token = _CURRENT.set(cache)
    try:
        yield cache
    finally:
        _CURRENT.reset(token)
        cache.clear()


def _over_white(rgba: Image.Image) -> Image.Image:
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")


def _wide_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit samples keep their top byte (`>> 8`). `I` holding 0..65535 is 16-bit data (Pillow's PGM and TIFF
    readers give it so) and is treated alike. `F` in [0, 1] or [0, 255] is scaled from that range. Anything else
    (negative or wider values) is stretched from its own minimum to its maximum."""
    arr = np.asarray(img)
    values = np.nan_to_num(arr.astype(np.float64)) if img.mode == "F" else arr.astype(np.int64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode != "F" and lo >= 0 and hi <= 0xFFFF:
        gray = (values >> 8).astype(np.uint8)
    else:
        if img.mode == "F" and lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        elif img.mode == "F" and lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        gray = np.rint((values - lo) * scale).clip(0, 255).astype(np.uint8)
    key = img.info.get("transparency")
    if isinstance(key, int | float) and not isinstance(key, bool):  # a PNG tRNS grey key, in the sample's own scale
        alpha = np.where(arr == key, 0, 255).astype(np.uint8)
        return _over_white(Image.fromarray(np.stack([gray, alpha], axis=-1), "LA").convert("RGBA"))
    return Image.fromarray(gray, "L").convert("RGB")


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's frame header, read by Pillow's JPEG parser without decoding; None
    when `data` is no JPEG Pillow can open (or is past twice its bomb limit, which a decode then reports). Lets a
    stage choose a decoder (nvJPEG takes 1 or 3 components) and apply a bomb limit before decoding."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        with open_header(data, formats=["JPEG"]) as im:
            return im.width, im.height, im.layers
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def pixel_digest(rgb: Image.Image) -> str:
    """Hash of decoded RGB pixels and size: equal for any lossless re-encoding of the same picture.

    SHA-1 of f"{w}x{h}:" followed by `rgb.tobytes()` (the packed samples), fed to hashlib in two updates so the
    ~0.8 MB of a 512-px picture is not copied again to prepend the size."""
    return _digest(rgb.size, rgb.tobytes())


def color_spread(rgb: Image.Image, side: int) -> float:
    """Mean per-channel std of a `side`×`side` grid of pixels: 0 for a solid image. A strided view, not a resize."""
    return _spread(np.asarray(rgb), side)


def pixel_stats(picture: Decoded, side: int) -> tuple[str, float]:
    """(`pixel_digest(picture.rgb)`, `color_spread(picture.rgb, side)`) from the packed samples alone: they are what
    is hashed and also the array the grid is strided from (`np.asarray` of a Pillow image is a second `tobytes`:
    Pillow 12's `__array_interface__` copies, and its zero-copy Arrow export holds RGB as 4 bytes a pixel, which
    SHA-1 of the packed samples cannot read). A JPEG decoded straight into packed RGB is never copied here."""
    arr = picture.packed
    return _digest(picture.size, arr), _spread(arr, side)


def _digest(size: tuple[int, int], packed: Any) -> str:
    digest = hashlib.sha1(f"{size[0]}x{size[1]}:".encode())
    digest.update(packed)
    return digest.hexdigest()


def _spread(arr: np.ndarray, side: int) -> float:
    h, w = arr.shape[:2]
    grid = arr[:: max(1, h // side), :: max(1, w // side)].reshape(-1, 3).astype(np.float32)
    return float(grid.std(axis=0).mean())
