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
        found = [storage.join(root, rel) for rel, _ in storage.walk_files(root) if rel.endswith(".parquet")]
        # A pipe or dangling link named x.parquet, a link to a folder: one error row each (never opened).
        return found + storage.walk_unreadable(root, lambda p: p.endswith(".parquet"))
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


def _metadata(path: str, config: ReaderConfig) -> tuple[pq.FileMetaData | None, str, InputError | None]:
    """The file's metadata, or why it cannot be read as samples: (None, ledger reason, the error to stop with)."""
    if not storage.is_regular(path):  # never opened: a pipe would hang the run
        reason = storage.not_regular_reason(path)
        return None, reason, InputError(f"{path}: {reason.replace('_', ' ')}")
    try:
        with storage.open_file(path) as f:
            meta = pq.ParquetFile(f).metadata
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not Parquet"
        return None, f"parquet_broken:{exc}", InputError(f"{path}: not a readable Parquet file ({exc})")
    schema = meta.schema.to_arrow_schema()
    try:
        _pick(schema, config.image_column, IMAGE_COLUMNS, "image", path)
        _pick(schema, config.text_column, TEXT_COLUMNS, "caption", path)
        if config.id_column is not None:
            _pick(schema, config.id_column, (), "row id", path)
    except InputError as exc:
        return None, f"parquet_columns_missing:{str(exc).removeprefix(f'{path}: ')}", exc
    return meta, "", None


def plan(root: str, dataset: str, config: ReaderConfig, first_id: int) -> Iterator[Part]:
    """Parts of row ranges. A file of a folder that is not Parquet or lacks the image or caption column is one part,
    read as one error row, and the rest goes on; when no file of the input can be read (the one file given, or a
    reader.image_column that names no column), the run stops before it starts, naming a file and why."""
    from pipelines.readers.base import Part

    base = root if storage.isdir(root) else storage.dirname(root)
    parts: list[Part] = []
    errors: list[tuple[str, InputError]] = []
    for path in _files(root):
        meta, reason, error = _metadata(path, config)
        if meta is None:
            assert error is not None
            errors.append((reason, error))
            parts.append(Part(id=first_id + len(parts), format="parquet", root=base, dataset=dataset, path=path))
            continue
        rows = meta.num_rows
        size = storage.getsize(path)
        for start in range(0, max(rows, 1), config.part_size):
            end = min(rows, start + config.part_size)
            parts.append(Part(
                id=first_id + len(parts), format="parquet", root=base, dataset=dataset, path=path,
                row_start=start, row_end=end, size_hint=size * (end - start) // max(rows, 1),
            ))
    if errors and len(errors) == len(parts):  # a missing column first: the likelier mistake is in the recipe
        raise next((e for r, e in errors if r.startswith("parquet_columns_missing")), errors[0][1])
    yield from parts


def read(part: Part, config: ReaderConfig, out: BatchBuilder) -> Iterator[pa.RecordBatch]:
    rel = storage.relpath(part.path, part.root)
    if part.row_end <= part.row_start:  # an empty file, or one `plan` found unreadable: say why
        _, reason, _ = _metadata(part.path, config)
        if reason:
            yield from out.add(rel, part.path, None, None, None, reason)
        return
    with storage.open_file(part.path) as f:
        yield from _read_rows(part, config, out, rel, pq.ParquetFile(f))


def _read_rows(part: Part, config: ReaderConfig, out: BatchBuilder, rel: str, pf: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    schema = pf.schema_arrow
    image_col = _pick(schema, config.image_column, IMAGE_COLUMNS, "image", part.path)
    text_col = _pick(schema, config.text_column, TEXT_COLUMNS, "caption", part.path)
    row = 0
    batches = pf.iter_batches(batch_size=config.batch_size)
    while True:
        try:
            batch = next(batches, None)
            records = None if batch is None or row + batch.num_rows <= part.row_start else batch.to_pylist()
        except Exception as exc:  # noqa: BLE001 - a corrupt page: each row of the part not read yet is an error row
            reason = f"parquet_broken:{str(exc).strip() or type(exc).__name__}"
            for r in range(max(row, part.row_start), part.row_end):
                yield from out.add(f"{rel}#row={r}", f"{part.path}#row={r}", None, None, None, reason)
            return
        if batch is None:
            break
        if records is None:
            row += batch.num_rows
            continue
        for rec in records:
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
                # Every other column goes to meta, whatever its Arrow type (json_meta makes it JSON-safe: binary
                # values as {"base64": …}).
                meta = rec
                yield from out.add(f"{rel}#{row_id}", f"{part.path}#row={row}", image, text, meta, error)
            row += 1
        if row >= part.row_end:
            break
