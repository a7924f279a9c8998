"""Parquet reader: an image-bytes column and a caption column; other columns go into `meta`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.readers.base import InputError

if TYPE_CHECKING:
    from pipelines.readers.base import BatchBuilder, Part, ReaderConfig

IMAGE_COLUMNS = ("image", "jpg", "png", "img", "image_bytes", "bytes")
TEXT_COLUMNS = ("text", "caption", "txt", "alt", "prompt")


def _files(root: str) -> list[str]:
    if storage.isdir(root):
        return [storage.join(root, rel) for rel, _ in storage.walk_files(root) if rel.endswith(".parquet")]
    return [root]


def _pick(schema: pa.Schema, wanted: str | None, candidates: tuple[str, ...], what: str, path: str) -> str:
    if wanted is not None:
        if wanted not in schema.names:
            raise InputError(f"{path}: no column {wanted!r} for the {what} (columns: {', '.join(schema.names)})")
        return wanted
    for name in candidates:
        if name in schema.names:
            return name
    raise InputError(
        f"{path}: cannot find the {what} column among {', '.join(schema.names)}; "
        f"set reader.{'image' if what == 'image' else 'text'}_column"
    )


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    from pipelines.readers.base import Part

    base = root if storage.isdir(root) else storage.dirname(root)
    pid = first_id
    for path in _files(root):
        try:
            with storage.open_file(path) as f:
                meta = pq.ParquetFile(f).metadata
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not Parquet"
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        schema = meta.schema.to_arrow_schema()
        _pick(schema, config.image_column, IMAGE_COLUMNS, "image", path)
        _pick(schema, config.text_column, TEXT_COLUMNS, "caption", path)
        rows = meta.num_rows
        size = storage.getsize(path)
        for start in range(0, max(rows, 1), config.part_size):
            end = min(rows, start + config.part_size)
            yield Part(
                id=pid, format="parquet", root=base, dataset=dataset, path=path,
                row_start=start, row_end=end, size_hint=size * (end - start) // max(rows, 1),
            )
            pid += 1


def read(part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
    rel = storage.relpath(part.path, part.root)
    with storage.open_file(part.path) as f:
        yield from _read_rows(part, config, out, rel, pq.ParquetFile(f))


def _read_rows(part: Part, config: ReaderConfig, out: BatchBuilder, rel: str, pf: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    schema = pf.schema_arrow
    image_col = _pick(schema, config.image_column, IMAGE_COLUMNS, "image", part.path)
    text_col = _pick(schema, config.text_column, TEXT_COLUMNS, "caption", part.path)
    row = 0
    for batch in pf.iter_batches(batch_size=config.batch_size):
        if row + batch.num_rows <= part.row_start:
            row += batch.num_rows
            continue
        for rec in batch.to_pylist():
            if part.row_start <= row < part.row_end:
                image = rec.pop(image_col)
                if isinstance(image, dict):  # Hugging Face datasets' Image feature: {bytes, path}
                    image = image.get("bytes")
                text = rec.pop(text_col)
                row_id = str(rec[config.id_column]) if config.id_column else f"row={row}"
                error = None
                if image is None:
                    error = "image_missing"
                elif not isinstance(image, bytes | bytearray):
                    error = f"image_not_bytes:{type(image).__name__}"
                    image = None
                if text is None:
                    error = error or "caption_missing"
                elif isinstance(text, bytes):
                    try:
                        text = text.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        text, error = None, error or f"caption_not_utf8:byte {exc.start}"
                elif not isinstance(text, str):
                    error = error or f"caption_not_text:column {text_col!r} holds {type(text).__name__}"
                    text = None
                # Every other column goes to meta, whatever its Arrow type (json_meta makes it JSON-safe).
                meta = {k: v for k, v in rec.items() if not isinstance(v, bytes | bytearray)}
                yield from out.add(f"{rel}#{row_id}", f"{part.path}#row={row}", image, text, meta, error)
            row += 1
        if row >= part.row_end:
            break
