"""Decode and validate images: bomb limit, EXIF orientation, RGB view, re-encode policy, size and pixel-hash columns."""

from __future__ import annotations

import io
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from pydantic import Field

from pipelines.columns import IMAGE_FIELDS
from pipelines.imaging import DecodeError, pixel_stats, views
from pipelines.operator import Operator, OperatorConfig, with_verdicts

_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


class DecodeConfig(OperatorConfig):
    max_pixels: int = Field(89_478_485, ge=1, description="Images with more pixels are decompression bombs (Pillow's default limit).")
    max_side: int | None = Field(None, ge=1, description="Downscale images whose longer side exceeds this (None keeps the size).")
    keep_formats: tuple[str, ...] = Field(("JPEG", "PNG"), description="Formats whose original bytes are stored as "
                                          "they are (unless wider than 8 bits, or transparent with alpha: white).")
    alpha: Literal["keep", "white"] = Field(
        "keep", description="keep: transparent images keep their bytes and alpha (readers composite over white, as "
        "vlmdata's loader and transformers' convert_to_rgb do); white: they are stored composited over white, the "
        "pixels every stage judged (img2dataset's choice; for readers that drop alpha).")
    reencode_format: Literal["jpeg", "png"] = Field("jpeg", description="Format of images that must be re-encoded.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="Quality of re-encoded JPEGs.")
    thumb_side: int = Field(32, ge=2, description="Side of the pixel grid whose colour spread detects solid images.")


class Decode(Operator):
    """Decodes every image once; later stages use the columns it adds instead of decoding again."""

    name = "decode"
    Config = DecodeConfig
    reads = ("image",)
    adds = (
        *IMAGE_FIELDS,
        pa.field("pixel_sha1", pa.string()),  # hash of decoded RGB pixels (exact dedup)
        pa.field("color_std", pa.float32()),  # std of a small RGB thumbnail (solid-colour test)
    )

    def decode_one(self, data: bytes) -> tuple[bytes, int, int, str, str, float]:
        cfg = self.config
        # the picture later stages and the trainer see (pipelines.imaging.decode_rgb), shared with the pass's stages
        picture = views().decoded(data, max_pixels=cfg.max_pixels)
        source_format = picture.format
        upright = picture.orientation == 1
        w, h = picture.size
        pixel_sha1, color_std = pixel_stats(picture, cfg.thumb_side)  # the packed samples serve both
        too_big = cfg.max_side is not None and max(w, h) > cfg.max_side
        # A plain reader must see the pixels the stages judged: 16-bit samples (which Pillow's convert clips to
        # white) are stored as the 8-bit view, and so is transparency when `alpha: white`.
        plain = not picture.wide and not (picture.transparent and cfg.alpha == "white")
        if source_format in cfg.keep_formats and source_format in _FORMATS and upright and not too_big and plain:
            return data, w, h, _FORMATS[source_format], pixel_sha1, color_std
        rgb = picture.rgb
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
        cols: dict[str, list] = {f.name: [] for f in self.adds}
        originals = batch.column("image")
        unchanged = True  # every decoded image keeps its original bytes (the usual case: no re-encode)
        for data in originals.to_pylist():
            try:
                stored, w, h, fmt, sha, std = self.decode_one(data or b"")
                unchanged = unchanged and stored is data
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
            for name, value in zip(cols, values, strict=True):
                cols[name].append(value)
        if not unchanged:
            cols["image"] = images  # type: ignore[assignment]
        elif not all(keep):  # the original column, failed rows nulled: no second copy of every image's bytes
            cols["image"] = pc.if_else(pa.array(keep, pa.bool_()), originals, pa.scalar(None, originals.type))
        return with_verdicts(batch, keep, reason, error, columns=cols)
