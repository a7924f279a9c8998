"""Global stages: map (in a pass) → keyed reduce (on the engine) → apply (in the next pass).

Two reduce kinds cover the curation stages: `dedup` (rows fall into buckets; within a bucket a row loses to
a better-ranked row it matches) and `count` (counts of list entries over the whole dataset). The functions
below are the engine-neutral bodies of each reduce step; Spark and Beam only group and route rows.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.operator import Operator, with_verdicts

BUCKET = "bucket"
PROBE = "probe"  # the row is in the bucket to look for matches only (compared with entries, never with other probes)
CANDIDATE_SCHEMA = pa.schema(
    [("key", pa.string()), ("part", pa.int32()), ("survivor", pa.string()), ("survivor_rank", pa.string())]
)
LOSER_SCHEMA = pa.schema([("key", pa.string()), ("part", pa.int32()), ("survivor", pa.string())])
COUNT_SCHEMA = pa.schema([("entry", pa.string()), ("count", pa.int64())])


class GlobalOperator(Operator):
    """A stage that needs the whole dataset: its `__call__` is the map; `decide` is the apply."""

    reduce_kind: ClassVar[str]
    key_columns: ClassVar[tuple[str, ...]] = ()  # columns the reduce needs besides key and part

    @abstractmethod
    def decide(self, batch: pa.RecordBatch, result: Any) -> pa.RecordBatch:
        """Apply step on live rows, given this part's share of the reduce result."""


class DedupOperator(GlobalOperator):
    """Rows share buckets; within a bucket a row loses to the best-ranked earlier row it `matches`.

    Rank: `order_columns` (descending ones negated, missing values last), then the key, so every engine
    picks the same survivor. A row that lost in several buckets names its best-ranked winner.
    """

    reduce_kind = "dedup"
    order_columns: ClassVar[tuple[tuple[str, bool], ...]] = ()  # (column, descending)
    # Set when the bucket is just this column and every pair in a bucket matches (exact dedup): engines may then
    # reduce natively (a window per bucket) instead of calling `buckets`/`matches` in Python.
    bucket_column: ClassVar[str | None] = None
    fit_sample: ClassVar[int] = 0  # > 0: `fit` sees up to this many key rows before bucketing

    def fit(self, sample: pa.Table) -> Any:
        """Learn bucketing state from a sample of key rows (k-means centroids, …). None by default."""
        return None

    @abstractmethod
    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        """The buckets of each key row."""

    def probes(self, keys: pa.RecordBatch, state: Any) -> list[list[str]] | None:
        """Buckets each key row only probes: LSH's query side. A probe is compared with the rows that are in the
        bucket by `buckets`, never with another probe (a crop's hash looks for whole images, not for other crops).
        None: no probes."""
        return None

    def matches(self, a: dict[str, Any], b: dict[str, Any], state: Any) -> bool:
        """Whether two key rows of one bucket are duplicates (exact buckets: always)."""
        return True

    def max_bucket(self) -> int:
        """Rows compared per bucket at most (the best-ranked ones); bounds a degenerate bucket's cost."""
        return 100_000

    @property
    def compares_rows(self) -> bool:
        """Whether the reduce compares rows within buckets (near, semantic dedup: its cost is in the comparisons),
        rather than grouping equal values of `bucket_column` (exact dedup: native on an engine)."""
        return self.bucket_column is None

    @abstractmethod
    def drop_reason(self, survivor_key: str) -> str:
        """The ledger reason of a row that lost to `survivor_key`."""

    def rank(self, row: Mapping[str, Any]) -> tuple:
        out: list[Any] = []
        for column, descending in self.order_columns:
            value = row.get(column)
            out.append((1, 0) if value is None else (0, -value if descending else value))
        out.append(row["key"])
        return tuple(out)

    def decide(self, batch: pa.RecordBatch, result: Mapping[str, str]) -> pa.RecordBatch:
        survivors = [result.get(k) for k in batch.column("key").to_pylist()]
        return with_verdicts(
            batch,
            keep=[s is None for s in survivors],
            reason=[None if s is None else self.drop_reason(s) for s in survivors],
        )


class CountOperator(GlobalOperator):
    """Counts the entries of a list column over all live rows; `decide` sees the global counts."""

    reduce_kind = "count"
    entries_column: ClassVar[str]

    @property
    def key_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.entries_column,)


def reduce_schema(op: GlobalOperator, schema: pa.Schema) -> pa.Schema:
    """Columns a pass keeps for the reduce after it: key, part, the operator's key columns, the order columns
    present in the batch. Float16 vectors travel as raw bytes (engines such as Spark have no float16 type)."""
    order = [c for c, _ in getattr(op, "order_columns", ()) if c in schema.names]
    fields = []
    for name in dict.fromkeys(["key", "part", *op.key_columns, *order]):
        field = schema.field(name)
        if pa.types.is_list(field.type) and pa.types.is_float16(field.type.value_type):
            field = pa.field(name, pa.binary())
        fields.append(field)
    return pa.schema(fields)


def reduce_rows(batch: pa.RecordBatch, op: GlobalOperator, schema: pa.Schema) -> pa.RecordBatch:
    """The live rows that take part in the reduce: those with every key column present."""
    mask = batch.column("keep")
    for column in op.key_columns:
        mask = pc.and_(mask, pc.is_valid(batch.column(column)))
    filtered = batch.select(schema.names).filter(mask)  # not the image bytes: only the reduce's columns are copied
    columns = []
    for field in schema:
        col = filtered.column(field.name)
        if col.type != field.type and field.type == pa.binary():
            col = pa.array([None if v is None else np.asarray(v, dtype=np.float16).tobytes() for v in col.to_pylist()],
                           type=pa.binary())
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# --- dedup reduce steps ---------------------------------------------------------------------------------


def bucket_schema(keys: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(BUCKET, pa.string()), pa.field(PROBE, pa.bool_()), *keys])


def explode(op: DedupOperator, state: Any, keys: pa.RecordBatch) -> pa.RecordBatch:
    """One row per (bucket, key row), probes flagged."""
    entries = [(i, b, False) for i, bs in enumerate(op.buckets(keys, state)) for b in bs]
    entries += [(i, b, True) for i, bs in enumerate(op.probes(keys, state) or ()) for b in bs]
    index = [i for i, _, _ in entries]
    taken = keys.take(pa.array(index, type=pa.int64())) if index else keys.slice(0, 0)
    return pa.RecordBatch.from_arrays(
        [pa.array([b for _, b, _ in entries], type=pa.string()), pa.array([p for _, _, p in entries], type=pa.bool_()),
         *taken.columns],
        schema=bucket_schema(keys.schema),
    )


def comparable(members: list[dict[str, Any]]) -> bool:
    """Whether a bucket holds a pair to compare: two rows or more, one of them an entry (probes never meet each
    other). Most LSH buckets do not: engines skip them before `bucket_candidates` (Spark with the same test on the
    JVM side)."""
    return len(members) > 1 and not all(m[PROBE] for m in members)


def bucket_candidates(op: DedupOperator, state: Any, rows: pa.Table) -> pa.Table:
    """Within one bucket: every row that matches a better-ranked row loses to the best such row (two probes are
    never compared)."""
    members = sorted(rows.to_pylist(), key=op.rank)[: op.max_bucket()]
    out = []
    for i, row in enumerate(members):
        for better in members[:i]:
            if better["key"] == row["key"] or (row[PROBE] and better[PROBE]):
                continue
            if op.matches(better, row, state):
                out.append({"key": row["key"], "part": row["part"], "survivor": better["key"],
                            "survivor_rank": json.dumps(op.rank(better))})
                break
    return pa.Table.from_pylist(out, schema=CANDIDATE_SCHEMA)


def best_survivor(candidates: pa.Table) -> pa.Table:
    """One loser's candidates from all its buckets → the best-ranked survivor."""
    rows = candidates.to_pylist()
    best = min(rows, key=lambda r: (json.loads(r["survivor_rank"]), r["survivor"]))
    return pa.Table.from_pylist([{"key": best["key"], "part": best["part"], "survivor": best["survivor"]}],
                                schema=LOSER_SCHEMA)


# --- count reduce step ----------------------------------------------------------------------------------


def entries_of(op: CountOperator, keys: pa.RecordBatch) -> Iterator[str]:
    for entries in keys.column(op.entries_column).to_pylist():
        yield from set(entries or ())


def dedup_in_process(op: DedupOperator, state: Any, keys: list[pa.RecordBatch]) -> dict[str, tuple[int, str]]:
    """The whole dedup reduce in one process (small inputs, tests, baselines): loser key → (part, survivor)."""
    if not keys:
        return {}
    schema = bucket_schema(keys[0].schema)
    exploded = pa.Table.from_batches([explode(op, state, b) for b in keys], schema=schema)
    # `comparable`, columnar (as Spark's reduce does on the JVM side): most LSH buckets hold one row or probes only,
    # and only the rest become Python rows (the demo's crop search: 3k of 48k buckets)
    entry = pc.invert(pc.fill_null(exploded[PROBE], False)).cast(pa.int64())
    sizes = pa.table({BUCKET: exploded[BUCKET], "entry": entry}).group_by(BUCKET).aggregate(
        [("entry", "count"), ("entry", "sum")])
    live = sizes.filter(pc.and_(pc.greater(sizes["entry_count"], 1), pc.greater(sizes["entry_sum"], 0)))[BUCKET]
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for row in exploded.filter(pc.is_in(exploded[BUCKET], value_set=live)).to_pylist():
        by_bucket.setdefault(row[BUCKET], []).append(row)
    candidates: dict[str, list[dict[str, Any]]] = {}
    for members in by_bucket.values():  # every one `comparable`
        for c in bucket_candidates(op, state, pa.Table.from_pylist(members, schema=schema)).to_pylist():
            candidates.setdefault(c["key"], []).append(c)
    out = {}
    for rows in candidates.values():
        best = best_survivor(pa.Table.from_pylist(rows, schema=CANDIDATE_SCHEMA)).to_pylist()[0]
        out[best["key"]] = (best["part"], best["survivor"])
    return out
