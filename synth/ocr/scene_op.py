"""`ocr_scene`: natural-scene text. PP-OCR reads each curated image; an image is kept only when at least one
detection passes the confidence threshold (as the report does), with its texts, quadrilaterals and scores."""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Literal

import pyarrow as pa
from PIL import Image
from pydantic import Field

from pipelines import columns as C
from pipelines.imaging import views
from pipelines.operator import Drop, Generator, OperatorConfig
from synth.ocr.render_op import row_random
from synth.ocr.tasks import ocr_messages
from synth.ocr.verify import Detection, OcrEngine

MAX_PIXELS = 40_000_000


class SceneConfig(OperatorConfig):
    min_score: float = Field(0.9, ge=0.0, le=1.0, description="A detection counts when its recognition score is "
                             "at least this; an image with none is dropped (no_text_detected).")
    min_chars: int = Field(2, ge=1, description="Detections with fewer characters (after stripping) do not count.")
    backend: Literal["rapidocr", "paddleocr"] = Field("rapidocr", description="PP-OCR runtime.")
    threads: int = Field(1, ge=0, description="onnxruntime threads per worker (0: all cores).")
    det_side: int = Field(960, ge=32, description="Detection input: the long side is scaled down to this.")
    use_cls: bool = Field(False, description="Run PP-OCR's 180° line classifier (for upside-down text; it "
                          "misfires on upright lines).")


class SceneText(Generator):
    """Curated images with the text PP-OCR finds in them, verified by its own confidence."""

    name = "ocr_scene"
    Config = SceneConfig
    reads = ("image",)
    adds = (
        *C.IMAGE_FIELDS,
        C.OCR,
        C.MESSAGES,
        pa.field("caption", pa.string()),  # the parent's caption; `text` becomes the text read in the image
        pa.field("ocr_min_score", pa.float32()),
    )

    def setup(self) -> None:
        cfg = self.config
        # Low-scoring lines are still read (so `min_score` decides, not the engine's own cut-off).
        self.ocr = OcrEngine(cfg.backend, cfg.threads, min_score=0.0, det_side=cfg.det_side, use_cls=cfg.use_cls)
        self._memo: OrderedDict[str, list[Detection]] = OrderedDict()

    def _read(self, data: bytes) -> tuple[Image.Image, str | None, list[Detection]]:
        """The picture (the pass's shared decoded view: a decode stage before this one decoded it already), the
        format its bytes may be stored in as they are (None: they must be re-encoded, because a plain reader would
        see another picture: not JPEG/PNG, EXIF-rotated, or samples wider than 8 bits), and PP-OCR's lines."""
        picture = views().decoded(data, max_pixels=MAX_PIXELS)  # DecodeError: an error row with its reason
        plain = picture.orientation == 1 and not picture.wide
        fmt = {"PNG": "png", "JPEG": "jpeg"}.get(picture.format or "") if plain else None
        rgb = picture.rgb
        # A batch that fails is retried and bisected: remember reads so the siblings are not read again.
        digest = hashlib.sha1(data).hexdigest()
        dets = self._memo.get(digest)
        if dets is None:
            dets = self.ocr.read(rgb)
            self._memo[digest] = dets
            if len(self._memo) > 256:
                self._memo.popitem(last=False)
        return rgb, fmt, dets

    def generate(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        cfg = self.config
        data = row.get("image")
        if not data:
            raise Drop("no_image")
        img, fmt, dets = self._read(data)
        if fmt is None:  # WebP, GIF, a rotated JPEG, a 16-bit PNG: the picture PP-OCR read, as a PNG
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            data, fmt = buf.getvalue(), "png"
        good = [d for d in dets if d.score >= cfg.min_score and len(d.text.strip()) >= cfg.min_chars]
        if not good:
            raise Drop("no_text_detected")
        w, h = img.size
        text = "\n".join(d.text for d in good)
        items = [C.ocr_item(d.text, [max(0.0, d.box[0]), max(0.0, d.box[1]), min(float(w), d.box[2]),
                                     min(float(h), d.box[3])], d.quad, d.score, "line") for d in good]
        yield {
            "image": data, "image_format": fmt, "width": w, "height": h, "text": text, "caption": row.get("text"),
            "ocr": items, "ocr_min_score": min(d.score for d in good),
            "messages": ocr_messages(text, [(it["text"], it["box"]) for it in items], w, h,
                                     row_random(row["key"], self.name)),
        }
