"""Read an element's box back with PP-OCR (rapidocr) and compare it with the element's DOM text.

A one-line crop goes to the recogniser alone (tens of ms); a taller one to detection + recognition. Texts are
compared after NFKC, lower case and dropping everything but letters and digits (OCR drops and invents spaces and
punctuation), by rapidfuzz's normalised Levenshtein ratio (0–100).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz import fuzz

_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text or "").lower())


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str | None  # ocr_too_small | ocr_empty | ocr_mismatch, None when ok
    read: str
    ratio: float


class OcrVerifier:
    """PP-OCR (rapidocr's ONNX models, shipped in its wheel) loaded once per worker."""

    def __init__(self, min_ratio: float, min_height: float, single_line_max_height: float):
        from rapidocr import RapidOCR

        self.engine = RapidOCR(params={"Global.log_level": "warning"})
        self.min_ratio, self.min_height, self.single_line = min_ratio, min_height, single_line_max_height

    def read(self, crop: np.ndarray) -> str:
        h = crop.shape[0]
        if h <= self.single_line:
            out = self.engine(crop, use_det=False, use_cls=False, use_rec=True)
        else:
            out = self.engine(crop, use_det=True, use_cls=False, use_rec=True)
        return " ".join(t for t in (getattr(out, "txts", None) or ()) if t)

    def check(self, image: np.ndarray, box: Any, text: str, pad: int = 2) -> Check:
        """Read the `box` (pixels) of `image` (H×W×3 uint8) and compare with `text`."""
        x1, y1, x2, y2 = (float(v) for v in box)
        if y2 - y1 < self.min_height:
            return Check(False, "ocr_too_small", "", 0.0)
        h, w = image.shape[:2]
        crop = ink(image[max(0, int(y1)):min(h, int(np.ceil(y2))), max(0, int(x1)):min(w, int(np.ceil(x2)))], pad)
        if crop is None:
            return Check(False, "ocr_empty", "", 0.0)
        read = self.read(np.ascontiguousarray(crop))
        want, got = normalize(text), normalize(read)
        if not got:
            return Check(False, "ocr_empty", read, 0.0)
        ratio = fuzz.ratio(want, got)
        return Check(ratio >= self.min_ratio, None if ratio >= self.min_ratio else "ocr_mismatch", read, ratio)


def ink(crop: np.ndarray, pad: int, threshold: int = 40) -> np.ndarray | None:
    """`crop` cut to the pixels that differ from its background (the median of its border), padded with
    background: DOM boxes of block elements span the whole line, and OCR reads a tight crop faster and better.
    None when the crop holds nothing but background."""
    if crop.size == 0:
        return None
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.int16)
    bg = np.median(border, axis=0)
    mask = (np.abs(crop.astype(np.int16) - bg).max(axis=2) > threshold)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    tight = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    fill = [int(v) for v in bg]
    return np.stack([np.pad(tight[..., k], pad, constant_values=fill[k]) for k in range(3)], axis=2)
