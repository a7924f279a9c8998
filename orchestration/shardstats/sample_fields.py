"""The boxes to draw over a sample's image, read leniently from its .json (any WebDataset, not only ours); its task
and numeric fields are read by `pipelines.shard_stats`, which the shard writer shares."""

from __future__ import annotations

import math
from typing import Any

_BOX_KEYS = ("box", "bbox", "xyxy", "coords", "points", "quad", "poly", "polygon")
_LABEL_KEYS = ("label", "phrase", "text", "name", "ref", "caption", "category")
_OCR_LIST_KEYS = ("lines", "results", "items", "words", "boxes")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_box(value: Any) -> list[float] | None:
    """[x1, y1, x2, y2] from a flat box or a list of points (an OCR quad → its bounding box)."""
    if isinstance(value, list | tuple) and len(value) == 4 and all(_is_number(v) for v in value):
        box = [float(v) for v in value]
    elif (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(p, list | tuple) and len(p) == 2 and all(_is_number(c) for c in p) for p in value)
    ):
        xs, ys = [float(p[0]) for p in value], [float(p[1]) for p in value]
        box = [min(xs), min(ys), max(xs), max(ys)]
    else:
        return None
    if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        return None
    return box


def _item_box(item: Any) -> tuple[list[float] | None, str | None]:
    if isinstance(item, dict):
        box = next((b for k in _BOX_KEYS if (b := _as_box(item.get(k))) is not None), None)
        label = next((str(item[k]) for k in _LABEL_KEYS if isinstance(item.get(k), str | int | float)), None)
        return box, label
    if isinstance(item, list | tuple) and len(item) in (2, 3) and _as_box(item[0]) is not None:
        # rapidocr / PaddleOCR raw style: [quad, text, score]
        return _as_box(item[0]), str(item[1]) if len(item) > 1 else None
    return _as_box(item), None


def boxes_of(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """Boxes to draw: grounding `boxes` and OCR lines, as {"box": [x1, y1, x2, y2], "label", "kind"}."""
    out: list[dict[str, Any]] = []
    boxes = fields.get("boxes")
    labels = fields.get("labels") or fields.get("phrases")
    if isinstance(boxes, list):
        for i, item in enumerate(boxes):
            box, label = _item_box(item)
            if label is None and isinstance(labels, list) and i < len(labels):
                label = str(labels[i])
            if box is not None:
                out.append({"box": box, "label": label, "kind": "grounding"})
    ocr = fields.get("ocr")
    if isinstance(ocr, dict):
        ocr = next((ocr[k] for k in _OCR_LIST_KEYS if isinstance(ocr.get(k), list)), None)
    if isinstance(ocr, list):
        for item in ocr:
            box, label = _item_box(item)
            if box is not None:
                out.append({"box": box, "label": label, "kind": "ocr"})
    return out
