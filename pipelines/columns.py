"""Typed Arrow columns that several operators share (messages, boxes, OCR lines, GUI elements), and their builders.

Operators declare the columns they add as `pa.Field`s beside their config; the structured ones below are
typed lists/structs, written into a sample's `.json` as JSON structures (null struct members are left out).
A column that only a later stage of the same run needs is marked `working(...)`: it never enters a sample.
A column that goes into a Parquet file beside the shard instead of the sample is marked `sidecar(...)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

WORKING = b"vlmdata.working"  # field metadata: the column never enters a sample
SIDECAR = b"vlmdata.sidecar"  # field metadata: the column goes to NAME.<value>.parquet beside the shard

# The stored image's size and encoding: every operator that decodes or makes an image declares these.
WIDTH = pa.field("width", pa.int32())
HEIGHT = pa.field("height", pa.int32())
IMAGE_FORMAT = pa.field("image_format", pa.string())  # "jpeg" | "png": the extension of the stored bytes
IMAGE_FIELDS = (WIDTH, HEIGHT, IMAGE_FORMAT)

# A chat message: HF's multimodal chat format, so transformers, LLaMA-Factory and our trainer read it as is.
# `content` is always a list of parts: {"type": "image"} (the sample's image `image` index, default 0),
# {"type": "text", "text": …}.
CONTENT_PART = pa.struct([("type", pa.string()), ("text", pa.string()), ("image", pa.int32())])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(CONTENT_PART))])
MESSAGES = pa.field("messages", pa.list_(MESSAGE))

# Pixel boxes [x1, y1, x2, y2] of the stored image, each with an optional label (DESIGN.md, Boxes).
BOX = pa.struct([("box", pa.list_(pa.float32(), 4)), ("label", pa.string()), ("score", pa.float32())])
BOXES = pa.field("boxes", pa.list_(BOX))

# OCR: one entry per line or word: its text, the pixel box, the quadrilateral (4 points) and the score.
OCR_ITEM = pa.struct([
    ("text", pa.string()),
    ("box", pa.list_(pa.float32(), 4)),
    ("quad", pa.list_(pa.list_(pa.float32(), 2), 4)),
    ("score", pa.float32()),
    ("level", pa.string()),  # "line" | "word" | "char" | "block"
])
OCR = pa.field("ocr", pa.list_(OCR_ITEM))

# GUI: every visible element of a screenshot.
ELEMENT = pa.struct([
    ("tag", pa.string()), ("role", pa.string()), ("text", pa.string()), ("box", pa.list_(pa.float32(), 4)),
    ("interactive", pa.bool_()),
])
ELEMENTS = pa.field("elements", pa.list_(ELEMENT))


def working(field: pa.Field) -> pa.Field:
    """`field` marked as a working column: a later stage of the run needs it, a sample never carries it."""
    return field.with_metadata({**(field.metadata or {}), WORKING: b"1"})


def sidecar(field: pa.Field, name: str) -> pa.Field:
    """`field` marked to go into `SHARD.<name>.parquet` beside the shard (key + the column), not the sample."""
    return field.with_metadata({**(field.metadata or {}), SIDECAR: name.encode()})


def is_working(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(WORKING))


def sidecar_of(field: pa.Field) -> str | None:
    value = (field.metadata or {}).get(SIDECAR)
    return value.decode() if value else None


def user(text: str | None = None, images: int = 1) -> dict[str, Any]:
    """A user message: `images` image parts, then the text."""
    parts: list[dict[str, Any]] = [{"type": "image", "text": None, "image": i} for i in range(images)]
    if text is not None:
        parts.append({"type": "text", "text": text, "image": None})
    return {"role": "user", "content": parts}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text, "image": None}]}


def system(text: str) -> dict[str, Any]:
    return {"role": "system", "content": [{"type": "text", "text": text, "image": None}]}


def qa(question: str, answer: str, images: int = 1) -> list[dict[str, Any]]:
    """The commonest messages value: one user turn with the image(s) and a question, one assistant answer."""
    return [user(question, images), assistant(answer)]


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts (any source's shards)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def ocr_item(text: str, box: Sequence[float], quad: Sequence[Sequence[float]] | None = None,
             score: float | None = None, level: str = "line") -> dict[str, Any]:
    if quad is None:
        x1, y1, x2, y2 = box
        quad = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
    return {"text": text, "box": [float(v) for v in box], "quad": [[float(a), float(b)] for a, b in quad],
            "score": None if score is None else float(score), "level": level}


def fields_by_name(fields: Iterable[pa.Field]) -> dict[str, pa.Field]:
    return {f.name: f for f in fields}
