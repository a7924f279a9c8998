"""What a sample's .json says, read leniently (any WebDataset, not only ours): its task, its numeric fields,
and the boxes to draw over its image."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pnm"})
MAX_DEPTH = 3  # numeric leaves deeper than this are not histogrammed (meta blobs can be arbitrarily deep)
_BOX_KEYS = ("box", "bbox", "xyxy", "coords", "points", "quad", "poly", "polygon")
_LABEL_KEYS = ("label", "phrase", "text", "name", "ref", "caption", "category")
_OCR_LIST_KEYS = ("lines", "results", "items", "words", "boxes")


def image_extension(sample: dict[str, Any]) -> str | None:
    for ext in sample:
        if ext.lower() in IMAGE_EXTENSIONS:
            return ext
    return None


def _texts(messages: Any) -> Iterator[str]:
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]


def task_of(fields: dict[str, Any]) -> str:
    """The sample's `task` field when present; else boxes → grounding, ocr → ocr, `<think>` → cot, else caption."""
    task = fields.get("task")
    if isinstance(task, str) and task:
        return task
    if fields.get("boxes"):
        return "grounding"
    if fields.get("ocr"):
        return "ocr"
    if any("<think>" in text for text in _texts(fields.get("messages"))):
        return "cot"
    return "caption"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_leaves(fields: dict[str, Any], skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, float]]:
    """(path, value) for every number in the json: `clip_score`, `meta.aesthetic`, `ocr[].score`.

    Lists of plain numbers (box coordinates, embeddings) are not scores and are skipped.
    """

    def walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, float]]:
        if _is_number(value):
            if isinstance(value, float) or abs(value) < 1 << 1000:  # a float cannot hold a larger int
                yield path, float(value)
        elif depth >= MAX_DEPTH:
            return
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}", depth + 1)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from walk(item, f"{path}[]", depth + 1)

    for name, value in fields.items():
        if name not in skip:
            yield from walk(value, name, 0)


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
