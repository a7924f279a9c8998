"""The record schema every operator sees, and the ledger schema; the one place both are defined."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

KEY_HEX_CHARS = 24  # 96 bits: collision-free at any corpus size we will meet

# The fields every record carries from the moment a source emits it.
BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("key", pa.string()),  # stable: hash of (dataset, source id), or of (parent key, operator, index)
    pa.field("parent", pa.string()),  # key of the row this one was generated from; null for source rows
    pa.field("image", pa.binary()),  # encoded image bytes (may be null: text-only rows; dead rows lose them)
    pa.field("text", pa.string()),  # caption, prompt, or a generated sample's ground-truth text
    pa.field("source", pa.string()),  # path, tar member, Parquet row, URL or seed: where the user finds it
    pa.field("dataset", pa.string()),  # the input set's name
    pa.field("meta", pa.string()),  # JSON object: everything else the source had
)

# Columns the engine owns: where a row came from, and whether it is still alive.
CONTROL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("part", pa.int32()),  # input partition the row was read in
    pa.field("ord", pa.int64()),  # read order inside the partition (children share their parent's)
    pa.field("origin", pa.string()),  # the generating stage that made the row; null for source rows
    pa.field("keep", pa.bool_()),
    pa.field("error", pa.bool_()),  # dropped because it is broken, not filtered
    pa.field("stage", pa.string()),  # the stage that dropped it
    pa.field("reason", pa.string()),  # short machine-readable reason, "prefix[:detail]"
)

ENGINE_COLUMNS = frozenset(f.name for f in CONTROL_FIELDS)

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("parent", pa.string()),  # null for source rows
        pa.field("origin", pa.string()),  # the generating stage that made the row; null for source rows
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


def child_key(parent: str, operator: str, index: int) -> str:
    """The key of a generated row: a hash of its parent's key, the generating operator and its index, so reruns
    and every engine agree."""
    digest = hashlib.sha1(f"{parent}\x00{operator}\x00{index}".encode()).hexdigest()
    return digest[:KEY_HEX_CHARS]


def record_schema(fields: Iterable[pa.Field] = ()) -> pa.Schema:
    """The schema of a batch: base and control fields, then `fields` (a source's and the stages' columns, in
    order). A column declared twice must have one type; the first declaration wins."""
    out = list(BASE_FIELDS) + list(CONTROL_FIELDS)
    seen = {f.name: f for f in out}
    for field in fields:
        if isinstance(field, str):
            raise TypeError(f"record_schema takes typed pa.Field columns, not the name {field!r}")
        known = seen.get(field.name)
        if known is None:
            out.append(field)
            seen[field.name] = field
        elif known.type != field.type:
            raise ValueError(f"column {field.name!r} is declared as {known.type} and as {field.type}")
    return pa.schema(out)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Reorder/cast `batch` to `schema`, filling columns it lacks with nulls."""
    cols = []
    for field in schema:
        idx = batch.schema.get_field_index(field.name)
        if idx < 0:
            cols.append(pa.nulls(batch.num_rows, field.type))
        else:
            col = batch.column(idx)
            cols.append(col if col.type == field.type else _cast(col, field.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _cast(col: pa.Array, type_: pa.DataType) -> pa.Array:
    try:
        return col.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Nested values whose inferred struct differs (member order, a missing member): rebuild from Python.
        return pa.array(col.to_pylist(), type=type_)


def set_columns(batch: pa.RecordBatch, columns: Mapping[str, Any], fields: Iterable[pa.Field] = ()) -> pa.RecordBatch:
    """Return `batch` with `columns` replaced or appended; new columns take their type from `fields` (the
    operator's declared columns) when given, else from the values."""
    declared = {f.name: f for f in fields}
    names = list(batch.schema.names)
    arrays = list(batch.columns)
    out_fields = list(batch.schema)
    for name, arr in columns.items():
        if name in names:
            i = names.index(name)
            want = out_fields[i].type
        else:
            want = declared[name].type if name in declared else _base_type(name)
        if not isinstance(arr, pa.Array):
            arr = pa.array(arr, type=want)
        elif want is not None and arr.type != want:
            arr = _cast(arr, want)
        if name in names:
            arrays[names.index(name)] = arr
        else:
            names.append(name)
            arrays.append(arr)
            out_fields.append(declared.get(name) or pa.field(name, arr.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(out_fields))


def _base_type(name: str) -> pa.DataType | None:
    for f in (*BASE_FIELDS, *CONTROL_FIELDS):
        if f.name == name:
            return f.type
    return None
