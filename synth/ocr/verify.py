"""PP-OCR read-back: one engine per worker (rapidocr + onnxruntime, models inside the wheel; paddleocr where
installed), and the character error rate of what it reads against a sample's ground truth."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from rapidfuzz.distance import Levenshtein


@dataclass
class Detection:
    text: str
    quad: list[list[float]]  # four corners, pixels
    score: float

    @property
    def box(self) -> list[float]:
        xs, ys = [p[0] for p in self.quad], [p[1] for p in self.quad]
        return [min(xs), min(ys), max(xs), max(ys)]


class OcrEngine:
    """PP-OCR detection + recognition. `threads` bounds onnxruntime's pool (0: its default, every core)."""

    def __init__(self, backend: str = "rapidocr", threads: int = 1, min_score: float = 0.5, det_side: int = 960,
                 use_cls: bool = False):
        self.backend = backend
        # The 180° line classifier flips upright lines now and then (a rendered English line read as garbage);
        # rendered and printed text is upright, so it is off unless asked for.
        self.use_cls = use_cls
        if backend == "rapidocr":
            from rapidocr import RapidOCR

            self._engine: Any = RapidOCR(params={
                "Global.log_level": "error",
                "Global.text_score": float(min_score),
                # rapidocr's default scales the *short* side up to 736 px: a 760×150 render becomes 3700×736 and
                # detection takes 20× longer. PaddleOCR's classic rule (long side at most det_side) reads our
                # renders as well.
                "Det.limit_type": "max",
                "Det.limit_side_len": int(det_side),
                "EngineConfig.onnxruntime.intra_op_num_threads": threads or -1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1 if threads else -1,
            })
        elif backend == "paddleocr":
            try:
                from paddleocr import PaddleOCR
            except ImportError as exc:
                raise RuntimeError("backend paddleocr is not installed: pip install paddleocr, or use rapidocr") from exc
            self._engine = PaddleOCR(lang="ch")
        else:
            raise ValueError(f"unknown OCR backend {backend!r}: rapidocr | paddleocr")

    def read(self, image: Image.Image | np.ndarray) -> list[Detection]:
        """Detected text lines in the engine's reading order (top to bottom, then left to right)."""
        arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if self.backend == "rapidocr":
            out = self._engine(arr[:, :, ::-1].copy(), use_cls=self.use_cls)  # rapidocr takes OpenCV's BGR order
            if out.txts is None:
                return []
            dets = [Detection(t, [[float(x), float(y)] for x, y in q], float(s))
                    for t, q, s in zip(out.txts, out.boxes, out.scores, strict=True)]
        else:  # paddleocr ≥ 3: predict() → [{"rec_texts", "rec_polys", "rec_scores"}]
            res = self._engine.predict(arr[:, :, ::-1].copy())[0]
            dets = [Detection(t, [[float(x), float(y)] for x, y in q], float(s))
                    for t, q, s in zip(res["rec_texts"], res["rec_polys"], res["rec_scores"], strict=True)]
        return dets


def normalize(text: str) -> str:
    """The form CER compares: NFKC (full- and half-width forms agree) without whitespace (OCR engines differ on
    spaces around CJK text and at line ends, which is not a reading error)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def cer(predicted: str, truth: str) -> float:
    """Character error rate: edit distance / length of the truth (1.0 when the truth is empty and the read is not)."""
    p, t = normalize(predicted), normalize(truth)
    if not t:
        return 0.0 if not p else 1.0
    return Levenshtein.distance(p, t) / len(t)


def read_text(detections: list[Detection]) -> str:
    return "\n".join(d.text for d in detections)
