"""Input planning (driver side) and partition reading (worker side), shared by every reader."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipelines import storage
from pipelines.schema import make_key, record_schema

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class InputError(ValueError):
    """An input the readers cannot use; the message names the file and what to do."""


class ReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["auto", "folder", "webdataset", "parquet"] = Field(
        "auto", description="Input format; auto picks by what each input path is."
    )
    dataset: str | None = Field(None, description="Dataset name recorded on every row; default: the input's name.")
    part_size: int = Field(1024, ge=1, description="Samples per partition (folders, Parquet); a tar is one partition.")
    batch_size: int = Field(64, ge=1, description="Rows per Arrow batch handed to operators (bounds worker memory).")
    image_column: str | None = Field(None, description="Parquet column with image bytes; default: first of image/jpg/png/img.")
    text_column: str | None = Field(None, description="Parquet column with the caption; default: first of text/caption/txt.")
    id_column: str | None = Field(None, description="Parquet column that identifies a row (default: the row number).")
    fingerprint: Literal["content", "stat"] = Field(
        "content",
        description="What identifies an input for resume: a hash of its bytes (content) or its paths and sizes (stat, "
        "cheaper on huge inputs). A rerun reuses finished work only when this and the recipe are unchanged.",
    )


class Part(BaseModel):
    """One input partition: the unit of parallelism, of shard naming and of resume."""

    model_config = ConfigDict(frozen=True)

    id: int
    format: Literal["folder", "webdataset", "parquet"]
    root: str  # the input the user named; source ids are relative to it
    dataset: str
    path: str  # folder, tar or parquet file
    items: list[list[str | None]] = Field(default_factory=list)  # folder: [stem, image, txt, json] (relative)
    row_start: int = 0  # parquet: rows [row_start, row_end)
    row_end: int = 0
    size_hint: int = 0  # bytes of input behind this part
    content_sha1: str | None = None  # hash of the bytes behind this part (reader.fingerprint = content)


class BatchBuilder:
    """Accumulates read rows and emits record batches of the base + control schema."""

    schema = record_schema()

    def __init__(self, part: Part, batch_size: int):
        self.part = part
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []
        self.ord = 0

    def add(
        self,
        source_id: str,
        source: str,
        image: bytes | None,
        text: str | None,
        meta: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        self.rows.append(
            {
                "key": make_key(self.part.dataset, source_id),
                "image": None if error else image,
                "text": text,
                "source": source,
                "dataset": self.part.dataset,
                "meta": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True),
                "part": self.part.id,
                "ord": self.ord,
                "keep": error is None,
                "error": error is not None,
                "stage": "read" if error else None,
                "reason": error,
            }
        )
        self.ord += 1
        if len(self.rows) >= self.batch_size:
            yield self.flush()

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pylist(self.rows, schema=self.schema)
        self.rows = []
        return batch

    def finish(self) -> Iterator[pa.RecordBatch]:
        if self.rows:
            yield self.flush()


def decode_caption(raw: bytes | None) -> tuple[str | None, str | None]:
    """(text, error reason) of caption bytes: UTF-8 strictly, a BOM tolerated."""
    if raw is None:
        return None, "caption_missing"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, f"caption_not_utf8:byte {exc.start}"


def input_name(path: str) -> str:
    return storage.basename(path).split(".")[0] or "input"


def detect_format(path: str) -> str:
    if storage.isdir(path):
        names = [name for name, _ in storage.walk_files(path)]
        if any(n.endswith(".tar") for n in names):
            return "webdataset"
        if any(n.endswith(".parquet") for n in names):
            return "parquet"
        return "folder"
    if path.endswith(".tar"):
        return "webdataset"
    if path.endswith(".parquet"):
        return "parquet"
    raise InputError(
        f"{path}: not a folder of images with .txt captions, a WebDataset .tar, or a .parquet file; "
        "pass one of those (or set reader.format)"
    )


def check_inputs(inputs: list[str], config: ReaderConfig) -> None:
    """Cheap up-front check (before any engine starts): every input exists and has a readable format."""
    if not inputs:
        raise InputError("no input given: pass at least one folder, .tar or .parquet")
    for root in inputs:
        try:
            found = storage.exists(root)
        except Exception as exc:  # noqa: BLE001 - an unknown protocol, missing credentials, an unreachable host
            raise InputError(f"{root}: cannot be opened ({exc})") from exc
        if not found:
            raise InputError(f"{root}: no such file or folder")
        if config.format == "auto":
            detect_format(root)


def plan_parts(inputs: list[str], config: ReaderConfig) -> list[Part]:
    """List every input partition, in a deterministic order, without reading sample data."""
    from pipelines.readers import folder, parquet, webdataset

    planners = {"folder": folder.plan, "webdataset": webdataset.plan, "parquet": parquet.plan}
    check_inputs(inputs, config)
    parts: list[Part] = []
    for root in inputs:
        fmt = config.format if config.format != "auto" else detect_format(root)
        dataset = config.dataset or input_name(root)
        for part in planners[fmt](root, dataset, config, first_id=len(parts)):
            parts.append(part)
    if not parts:
        raise InputError(f"no samples found in {', '.join(inputs)}")
    if config.fingerprint == "content":
        # Each file is hashed once, even when several parts read it (Parquet row ranges).
        files = sorted({path for part in parts for path in _files_of(part)})
        with ThreadPoolExecutor(max_workers=8) as pool:
            digests = dict(zip(files, pool.map(_file_sha1, files), strict=True))
        parts = [_with_content_hash(part, digests) for part in parts]
    return parts


def _files_of(part: Part) -> list[str]:
    if part.format == "folder":
        return [storage.join(part.root, rel) for item in part.items for rel in item[1:] if rel]
    return [part.path]


def _file_sha1(path: str) -> str:
    """Hash of a file's bytes, streamed: memory stays flat."""
    digest = hashlib.sha1()
    with storage.open_file(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _with_content_hash(part: Part, digests: dict[str, str]) -> Part:
    """The part with a hash of every file it reads (names relative to its input, and contents)."""
    digest = hashlib.sha1()
    for path in _files_of(part):
        digest.update(f"{storage.relpath(path, part.root)}\0{digests[path]}\0".encode())
    return part.model_copy(update={"content_sha1": digest.hexdigest()})


def read_part(part: Part, config: ReaderConfig) -> Iterator[pa.RecordBatch]:
    """Every sample of `part` as record batches; broken samples come out as error rows, never exceptions."""
    from pipelines.readers import folder, parquet, webdataset

    readers = {"folder": folder.read, "webdataset": webdataset.read, "parquet": parquet.read}
    builder = BatchBuilder(part, config.batch_size)
    yield from readers[part.format](part, config, builder)
    yield from builder.finish()
