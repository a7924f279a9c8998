"""Decode and validate images: bomb limit, EXIF orientation, RGB view, re-encode policy, size and pixel-hash columns."""

from __future__ import annotations

import io
import warnings
from typing import ClassVar, Literal

import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field

from pipelines.imaging import color_spread, pixel_digest, to_rgb
from pipelines.operator import Operator, OperatorConfig, with_verdicts

_ORIENTATION_TAG = 0x0112
_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


class DecodeConfig(OperatorConfig):
    max_pixels: int = Field(89_478_485, ge=1, description="Images with more pixels are decompression bombs (Pillow's default limit).")
    max_side: int | None = Field(None, ge=1, description="Downscale images whose longer side exceeds this (None keeps the size).")
    keep_formats: tuple[str, ...] = Field(("JPEG", "PNG"), description="Formats whose original bytes are stored as they are.")
    reencode_format: Literal["jpeg", "png"] = Field("jpeg", description="Format of images that must be re-encoded.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="Quality of re-encoded JPEGs.")
    thumb_side: int = Field(32, ge=2, description="Side of the pixel grid whose colour spread detects solid images.")


class DecodeError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise DecodeError("empty_file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DecodeError("decompression_bomb") from exc
        except UnidentifiedImageError as exc:
            raise DecodeError("not_an_image") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise DecodeError(f"decompression_bomb:{w}x{h}")
    try:
        img.load()
    except OSError as exc:
        msg = str(exc)
        raise DecodeError("truncated" if "truncat" in msg or "broken data stream" in msg else f"decode_failed:{msg[:80]}") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"decode_failed:{str(exc)[:80]}") from exc
    return img


class Decode(Operator):
    """Decodes every image once; later stages use the columns it adds instead of decoding again."""

    name = "decode"
    Config = DecodeConfig
    adds: ClassVar[tuple[str, ...]] = ("width", "height", "image_format", "pixel_sha1", "color_std")

    def decode_one(self, data: bytes) -> tuple[bytes, int, int, str, str, float]:
        cfg = self.config
        img = _open(data, cfg.max_pixels)
        source_format = img.format
        orientation = img.getexif().get(_ORIENTATION_TAG, 1) if source_format in ("JPEG", "PNG", "WEBP", "TIFF") else 1
        if orientation not in (1, None):
            img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
        w, h = rgb.size
        pixel_sha1 = pixel_digest(rgb)
        color_std = color_spread(rgb, cfg.thumb_side)
        too_big = cfg.max_side is not None and max(w, h) > cfg.max_side
        if source_format in cfg.keep_formats and source_format in _FORMATS and orientation in (1, None) and not too_big:
            return data, w, h, _FORMATS[source_format], pixel_sha1, color_std
        if too_big:
            assert cfg.max_side is not None
            scale = cfg.max_side / max(w, h)
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
            w, h = rgb.size
        buf = io.BytesIO()
        if cfg.reencode_format == "jpeg":
            rgb.save(buf, format="JPEG", quality=cfg.jpeg_quality)
        else:
            rgb.save(buf, format="PNG")
        return buf.getvalue(), w, h, cfg.reencode_format, pixel_sha1, color_std

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        images, keep, reason, error = [], [], [], []
        cols: dict[str, list] = {name: [] for name in self.adds}
        for data in batch.column("image").to_pylist():
            try:
                stored, w, h, fmt, sha, std = self.decode_one(data or b"")
                values: tuple = (w, h, fmt, sha, std)
                images.append(stored)
                keep.append(True)
                reason.append(None)
                error.append(False)
            except DecodeError as exc:
                values = (None,) * len(self.adds)
                images.append(None)
                keep.append(False)
                reason.append(exc.reason)
                error.append(True)
            except Exception as exc:  # noqa: BLE001 - a library bug on one image must not fail the batch
                values = (None,) * len(self.adds)
                images.append(None)
                keep.append(False)
                reason.append(f"decode_failed:{type(exc).__name__}")
                error.append(True)
            for name, value in zip(self.adds, values, strict=True):
                cols[name].append(value)
        cols["image"] = images  # type: ignore[assignment]
        return with_verdicts(batch, keep, reason, error, columns=cols)
