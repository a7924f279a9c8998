"""Per-shard statistics, written beside each shard when it is written (`NAME.stats.json`), merged later by `stats`."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from PIL import Image

from pipelines.stats import ValueHistogram

SIDECAR_SUFFIX = ".stats.json"
SIDECAR_VERSION = 2
SIZE_FIELDS = ("caption_chars", "image_width", "image_height", "image_bytes")
MAX_FIELDS = 64  # distinct numeric json paths histogrammed per shard; the rest are counted, not binned
MAX_EXAMPLES = 5  # problem examples kept per shard (the counts are always complete)
_IMAGE_SIZE_FIELDS = frozenset({"width", "height"})  # img2dataset's stored-image size: counted as image_width/height
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pnm"})
MAX_DEPTH = 3  # numeric leaves deeper than this are not histogrammed (meta blobs can be arbitrarily deep)


# What a sample's .json says, read leniently (any WebDataset, not only ours): its image, task and numeric fields.


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


def sidecar_path(tar_path: str) -> str:
    return tar_path[: -len(".tar")] + SIDECAR_SUFFIX if tar_path.endswith(".tar") else tar_path + SIDECAR_SUFFIX


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        return im.size


class ShardStats:
    """Counts and histograms over the samples of one shard (or, merged, of many): sizes, caption length,
    every numeric json field, task mix, and problems found in the input (no image, bad json …)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.nsamples: int = data.get("nsamples", 0)
        self.bytes: int = data.get("bytes", 0)
        self.extensions: Counter[str] = Counter(data.get("extensions", {}))
        self.tasks: Counter[str] = Counter(data.get("tasks", {}))
        self.problems: Counter[str] = Counter(data.get("problems", {}))
        self.examples: list[dict[str, str]] = list(data.get("examples", []))
        self.sizes = {k: ValueHistogram(v) for k, v in data.get("sizes", {}).items()}
        self.fields = {k: ValueHistogram(v) for k, v in data.get("fields", {}).items()}
        self.fields_dropped: int = data.get("fields_dropped", 0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardStats:
        if data.get("version") != SIDECAR_VERSION:
            raise ValueError(f"shard stats version {data.get('version')!r}, expected {SIDECAR_VERSION}")
        return cls(data)

    def problem(self, kind: str, key: str = "", detail: str = "") -> None:
        self.problems[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"problem": kind, "key": key, "detail": detail[:300]})

    def _size(self, name: str, value: float) -> None:
        self.sizes.setdefault(name, ValueHistogram()).add(value)

    def _field(self, name: str, value: float) -> None:
        hist = self.fields.get(name)
        if hist is None:
            if len(self.fields) >= MAX_FIELDS:
                self.fields_dropped += 1
                return
            hist = self.fields[name] = ValueHistogram()
        hist.add(value)

    def add(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """Count one WebDataset sample (extension → bytes); returns its parsed .json fields, if any."""
        key = str(sample.get("__key__", ""))
        self.nsamples += 1
        for ext, value in sample.items():
            if ext.startswith("__"):
                continue
            self.extensions[ext] += 1
            self.bytes += len(value)
        fields: dict[str, Any] | None = None
        if "json" in sample:
            try:
                parsed = json.loads(sample["json"])
            except ValueError as exc:
                self.problem("json_invalid", key, str(exc))
            else:
                if isinstance(parsed, dict):
                    fields = parsed
                else:
                    self.problem("json_invalid", key, f"a JSON {type(parsed).__name__}, not an object")
        caption: str | None = None
        if "txt" in sample:
            try:
                caption = sample["txt"].decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem("caption_not_utf8", key, str(exc))
        elif fields and isinstance(fields.get("caption"), str):
            caption = fields["caption"]
        if caption is not None:
            self._size("caption_chars", len(caption))
        ext = image_extension(sample)
        if ext is None:
            self.problem("no_image", key, f"members: {', '.join(k for k in sample if not k.startswith('__'))}")
        else:
            data = sample[ext]
            self._size("image_bytes", len(data))
            width, height = (fields or {}).get("width"), (fields or {}).get("height")
            size_from_json = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
            if not size_from_json:
                try:
                    width, height = _image_size(data)
                except Exception as exc:  # noqa: BLE001 - any undecodable image is a reportable problem
                    self.problem("image_unreadable", key, f"{ext}: {exc}")
                    width = height = None
            if width and height:
                self._size("image_width", width)
                self._size("image_height", height)
        self.tasks[task_of(fields or {})] += 1
        if fields:
            for name, value in numeric_leaves(fields, _IMAGE_SIZE_FIELDS):
                self._field(name, value)
        return fields

    def merge(self, other: ShardStats) -> ShardStats:
        self.nsamples += other.nsamples
        self.bytes += other.bytes
        self.extensions.update(other.extensions)
        self.tasks.update(other.tasks)
        self.problems.update(other.problems)
        self.examples.extend(other.examples[: max(0, 10 * MAX_EXAMPLES - len(self.examples))])
        self.fields_dropped += other.fields_dropped
        for mine, theirs in ((self.sizes, other.sizes), (self.fields, other.fields)):
            for name, hist in theirs.items():
                mine.setdefault(name, ValueHistogram()).merge(hist)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SIDECAR_VERSION,
            "nsamples": self.nsamples,
            "bytes": self.bytes,
            "extensions": dict(sorted(self.extensions.items())),
            "tasks": dict(self.tasks.most_common()),
            "problems": dict(sorted(self.problems.items())),
            "examples": self.examples,
            "sizes": {k: self.sizes[k].to_dict() for k in SIZE_FIELDS if k in self.sizes},
            "fields": {k: h.to_dict() for k, h in sorted(self.fields.items())},
            "fields_dropped": self.fields_dropped,
        }

    def write(self, tar_path: str) -> None:
        from pipelines import storage

        storage.write_atomic(sidecar_path(tar_path), json.dumps(self.to_dict(), sort_keys=True).encode())
