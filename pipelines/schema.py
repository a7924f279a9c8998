"""The record schema every operator sees, and the ledger schema; the one place both are defined."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import pyarrow as pa

KEY_HEX_CHARS = 24  # 96 bits: collision-free at any corpus size we will meet

# The fields every record carries from the moment a reader emits it.
BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("key", pa.string()),  # stable hash of (dataset, source id)
    pa.field("image", pa.binary()),  # encoded image bytes; null once the row is dropped
    pa.field("text", pa.string()),  # caption or prompt
    pa.field("source", pa.string()),  # path, tar member, Parquet row or URL: where the user finds it
    pa.field("dataset", pa.string()),  # the input set's name
    pa.field("meta", pa.string()),  # JSON object: everything else the source had
)

# Columns the engine owns: where a row came from, and whether it is still alive.
CONTROL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("part", pa.int32()),  # input partition the row was read in
    pa.field("ord", pa.int64()),  # read order inside the partition
    pa.field("keep", pa.bool_()),
    pa.field("error", pa.bool_()),  # dropped because it is broken, not filtered
    pa.field("stage", pa.string()),  # the stage that dropped it
    pa.field("reason", pa.string()),  # short machine-readable reason, "prefix[:detail]"
)

# Typed columns stages add; an operator declares which of these it produces.
STAGE_FIELDS: dict[str, pa.Field] = {
    f.name: f
    for f in (
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("image_format", pa.string()),  # "jpeg" | "png": extension of the stored bytes
        pa.field("pixel_sha1", pa.string()),  # hash of decoded RGB pixels (exact dedup)
        pa.field("color_std", pa.float32()),  # std of a small RGB thumbnail (solid-colour test)
        pa.field("clip_score", pa.float32()),  # cosine(image, caption) of the CLIP filter model
        pa.field("image_embedding", pa.list_(pa.float16())),  # L2-normalised CLIP embeddings, kept for dedup/retrieval
        pa.field("text_embedding", pa.list_(pa.float16())),
        pa.field("phash", pa.string()),
        pa.field("phash_crops", pa.list_(pa.string())),  # near-dedup crop search: pHashes of a crop grid,
        pa.field("thumbnail", pa.binary()),  # a small JPEG thumbnail to align crops on,
        pa.field("aspect", pa.float32()),  # and width / height (WORKING_COLUMNS)
        pa.field("concepts", pa.list_(pa.string())),
        pa.field("ocr", pa.string()),
        pa.field("boxes", pa.string()),
        pa.field("messages", pa.string()),
    )
}

# Stage columns that only a later stage of the same run needs: never written into a sample.
WORKING_COLUMNS = ("phash_crops", "thumbnail", "aspect")

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("source", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("status", pa.string()),  # kept | dropped | error
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
    ]
)

STATUSES = ("kept", "dropped", "error")


def make_key(dataset: str, source_id: str) -> str:
    """A stable key: a hash of the dataset name and the sample's source id, never a row number."""
    digest = hashlib.sha1(f"{dataset}\x00{source_id}".encode()).hexdigest()
    return digest[:KEY_HEX_CHARS]


def record_schema(stage_columns: Iterable[str] = ()) -> pa.Schema:
    """The schema of a batch after stages that added `stage_columns` (in order)."""
    fields = list(BASE_FIELDS) + list(CONTROL_FIELDS)
    seen = {f.name for f in fields}
    for name in stage_columns:
        if name not in seen:
            fields.append(STAGE_FIELDS[name])
            seen.add(name)
    return pa.schema(fields)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Reorder/cast `batch` to `schema`, filling columns it lacks with nulls."""
    cols = []
    for field in schema:
        idx = batch.schema.get_field_index(field.name)
        if idx < 0:
            cols.append(pa.nulls(batch.num_rows, field.type))
        else:
            col = batch.column(idx)
            cols.append(col if col.type == field.type else col.cast(field.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def set_columns(batch: pa.RecordBatch, columns: Mapping[str, pa.Array]) -> pa.RecordBatch:
    """Return `batch` with `columns` replaced or appended (types from STAGE_FIELDS when known)."""
    names = list(batch.schema.names)
    arrays = list(batch.columns)
    fields = list(batch.schema)
    for name, arr in columns.items():
        if not isinstance(arr, pa.Array):
            arr = pa.array(arr, type=_type_of(name, batch))
        if name in names:
            i = names.index(name)
            arrays[i] = arr if arr.type == fields[i].type else arr.cast(fields[i].type)
        else:
            names.append(name)
            arrays.append(arr)
            fields.append(STAGE_FIELDS.get(name, pa.field(name, arr.type)))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _type_of(name: str, batch: pa.RecordBatch) -> pa.DataType | None:
    idx = batch.schema.get_field_index(name)
    if idx >= 0:
        return batch.schema.field(idx).type
    for f in (*BASE_FIELDS, *CONTROL_FIELDS):
        if f.name == name:
            return f.type
    field = STAGE_FIELDS.get(name)
    return field.type if field is not None else None
