"""The operator contract: three families (filter, mapper, generator) plus global stages; a pydantic config each,
`setup()` once per worker, typed columns declared beside the config.

- `Mapper`: `__call__(batch)` returns the same rows with columns added or changed (it may also set verdicts).
- `Filter`: `verdicts(batch)` says keep/why per row; the base class keeps the books. A filter never deletes a row.
- `Generator`: `generate(row)` yields 0..N child rows; children carry `parent` and a deterministic key made from
  (parent key, operator, index). The parent leaves the stream with status `dropped`, reason `expanded:N` (or the
  reason of a `Drop`), so input keys = kept + dropped + error still holds, and so does, per generating stage,
  children = kept + dropped + error.
A batch that raises is retried once, then bisected, so only the rows that fail on their own become ledger
errors; this holds for every family.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipelines.plugins import import_path, load_group
from pipelines.schema import child_key, conform, set_columns

ENTRY_POINT_GROUP = "vlmdata.operators"


class OperatorConfig(BaseModel):
    """Base of every operator's config: unknown keys are an error, so a typo in YAML never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Operator(ABC):
    """A stage (the mapper family unless a subclass says otherwise). It never deletes rows: it sets keep=False
    with a reason and the engine records them."""

    name: ClassVar[str]
    family: ClassVar[str] = "mapper"
    Config: ClassVar[type[OperatorConfig]] = OperatorConfig
    reads: ClassVar[tuple[str, ...]] = ()  # columns this operator needs (a source or an earlier stage provides them)
    adds: ClassVar[tuple[pa.Field, ...]] = ()  # typed columns this operator fills (class var or property)

    def __init__(self, config: OperatorConfig | Mapping[str, Any] | None = None, **overrides: Any):
        if isinstance(config, OperatorConfig):
            config = config.model_dump()
        self.config = self.Config.model_validate({**(config or {}), **overrides})

    def setup(self) -> None:
        """Load heavy things (models, tables). Called once per worker process before the first batch."""
        return None

    def preflight(self) -> None:
        """A cheap check on the driver before a run starts (a model named in the config is present, …); raise
        with a message that names what is missing and how to provide it."""
        return None

    @abstractmethod
    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Transform a batch of live rows: add columns, set keep/reason/error. Never drop rows."""

    def fingerprint(self) -> str:
        """Stable id of this operator and its config: the unit of worker caching and resume."""
        payload = json.dumps({"op": self.name, "config": self.config.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def with_verdicts(
    batch: pa.RecordBatch,
    keep: Sequence[bool] | pa.Array,
    reason: Sequence[str | None] | pa.Array,
    error: Sequence[bool] | pa.Array | None = None,
    columns: Mapping[str, Any] | None = None,
) -> pa.RecordBatch:
    """Set the verdict columns (and any new `columns`) of a batch of live rows."""
    n = batch.num_rows
    cols: dict[str, Any] = dict(columns or {})
    cols["keep"] = pa.array(keep, type=pa.bool_())
    cols["reason"] = pa.array(reason, type=pa.string())
    cols["error"] = pa.array(error if error is not None else [False] * n, type=pa.bool_())
    return set_columns(batch, cols)


Mapper = Operator


class Filter(Operator):
    """A verdict per row; `__call__` records it. Subclasses implement `verdicts` (and may add columns there)."""

    family = "filter"

    @abstractmethod
    def verdicts(self, batch: pa.RecordBatch) -> tuple[Sequence[bool], Sequence[str | None]]:
        """(keep, reason) per row: reason is a short machine-readable string for the rows not kept."""

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        keep, reason = self.verdicts(batch)
        return with_verdicts(batch, keep, [None if k else r for k, r in zip(keep, reason, strict=True)])


class Drop(Exception):  # noqa: N818 - a verdict, not an error
    """Raised by `Generator.generate` for a parent that yields nothing by design (no text found, …): the parent
    is dropped with `reason`, not recorded as an error."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Generator(Operator):
    """Turns each live row into 0..N children (a page → screenshots, a prompt → k answers, a seed → a document).

    Implement `generate(row)` (the parent as a dict; yield one dict per child with the columns to set, the rest
    is inherited from the parent) or, for batched work (a teacher, a GPU), `generate_batch(rows)`. A child dict
    may carry `keep: False` and a `reason` to record a child that failed verification. Raise `Drop(reason)` for a
    parent that yields nothing by design; any other exception makes the parent an error row.
    """

    family = "generator"

    def generate(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} implements neither generate nor generate_batch")

    def generate_batch(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]] | Drop]:
        """Children of each parent, in order; a `Drop` in place of a parent's list drops it."""
        out: list[list[dict[str, Any]] | Drop] = []
        for row in rows:
            try:
                out.append(list(self.generate(row)))
            except Drop as drop:
                out.append(drop)
        return out

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise TypeError("a generator runs through apply_generator, not as a mapper")


def _call_checked(op: Operator, batch: pa.RecordBatch) -> pa.RecordBatch:
    out = op(batch)
    if out.num_rows != batch.num_rows:
        raise RuntimeError(f"returned {out.num_rows} rows for {batch.num_rows}: operators never drop rows")
    return out


def _isolating_failures(
    op: Operator, run: Callable[[pa.RecordBatch], pa.RecordBatch], batch: pa.RecordBatch, schema: pa.Schema,
    retried: bool = False,
) -> pa.RecordBatch:
    """`run(batch)`; if the batch fails, retry it once, then bisect it so only the rows that fail alone are errors.

    A transient failure costs one retry; a deterministic one (a row the operator cannot handle) costs
    O(log n) extra calls and ends as ledger errors carrying the exception's message. The run goes on.
    The same for every family: a generator's failing parent becomes one error row; its siblings go on.
    """
    try:
        return run(batch)
    except Exception as exc:  # noqa: BLE001 - the ledger records it; the run must go on
        if not retried:
            return _isolating_failures(op, run, batch, schema, retried=True)
        if batch.num_rows > 1:
            half = batch.num_rows // 2
            parts = [_isolating_failures(op, run, batch.slice(0, half), schema, True),
                     _isolating_failures(op, run, batch.slice(half), schema, True)]
            return pa.Table.from_batches(parts, schema=schema).combine_chunks().to_batches()[0]
        message = f"{op.name}_failed:{type(exc).__name__}: {exc}"[:500]
        failed = with_verdicts(conform(batch, schema), [False], [message], [True])
        return set_columns(failed, {"stage": pa.array([op.name]), "image": pa.nulls(1, pa.binary())})


def _expand_checked(op: Generator, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Parents (now dead, with their verdict) each followed by their children, conformed to `schema`."""
    rows = batch.to_pylist()
    results = op.generate_batch([dict(r) for r in rows])
    if len(results) != len(rows):
        raise RuntimeError(f"generate_batch returned {len(results)} results for {len(rows)} parents")
    out: list[dict[str, Any]] = []
    for parent, result in zip(rows, results, strict=True):
        if isinstance(result, Drop):
            out.append({**parent, "keep": False, "error": False, "stage": op.name, "reason": result.reason})
            continue
        children = list(result)
        out.append({**parent, "keep": False, "error": False, "stage": op.name, "reason": f"expanded:{len(children)}"
                    if children else "no_output"})
        for i, values in enumerate(children):
            child = {**parent, "stage": None, "reason": None, "error": False, "keep": True, **values}
            child["key"] = child_key(parent["key"], op.name, i)
            child["parent"] = parent["key"]
            child["origin"] = op.name
            if not child["keep"]:
                child["stage"] = op.name
                child["image"] = None
            out.append(child)
    names = set(schema.names)
    unknown = sorted({k for row in out for k in row} - names)
    if unknown:
        raise ValueError(f"generated columns {unknown} are not declared in {type(op).__name__}.adds")
    return pa.RecordBatch.from_pylist(out, schema=schema)


def apply_generator(op: Generator, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Run a generator on the live rows of `batch`; dead rows pass through. Every parent stays in the stream
    (dead, for the ledger) directly followed by its children, so the output order is deterministic."""
    alive = batch.column("keep").to_pylist()
    out: list[pa.RecordBatch] = []
    start = 0
    # Runs of live rows go to the generator together; dead rows keep their place between them.
    while start < len(alive):
        end = start
        while end < len(alive) and alive[end] == alive[start]:
            end += 1
        chunk = batch.slice(start, end - start)
        out.append(_isolating_failures(op, lambda b: _expand_checked(op, b, schema), chunk, schema)
                   if alive[start] else conform(chunk, schema))
        start = end
    if not out:
        return conform(batch, schema)
    return pa.Table.from_batches(out, schema=schema).combine_chunks().to_batches()[0] if len(out) > 1 else out[0]


def apply_map(op: Operator, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Run `op` on the live rows of `batch`; dead rows pass through untouched. Output follows `schema`.

    Rows the operator drops get `stage` = the operator's name and lose their image bytes, so dead
    rows cost nothing further downstream while their ledger fields (key, source, reason) travel on.
    A generator's rows go through `apply_generator` instead.
    """
    if isinstance(op, Generator):
        return apply_generator(op, batch, schema)
    alive = batch.column("keep")
    n_alive = pc.sum(alive.cast(pa.int64())).as_py() or 0
    live = batch.filter(alive) if n_alive < batch.num_rows else batch
    out = _isolating_failures(op, lambda b: conform(_call_checked(op, b), schema), live, schema) if n_alive else live
    dropped = pc.invert(out.column("keep"))
    if dropped.null_count or pc.any(dropped).as_py():  # else both columns stay as they are: no copy of the images
        out = set_columns(
            out,
            {
                "stage": pc.if_else(dropped, pa.scalar(op.name), out.column("stage")),
                "image": pc.if_else(dropped, pa.scalar(None, pa.binary()), out.column("image")),
            },
        )
    if n_alive == batch.num_rows:
        return conform(out, schema)
    dead = batch.filter(pc.invert(alive))
    # Stitch live and dead rows back into their original order (sort_indices inverts the permutation).
    positions = pa.concat_arrays([pc.indices_nonzero(alive), pc.indices_nonzero(pc.invert(alive))])
    merged = pa.Table.from_batches([conform(out, schema), conform(dead, schema)]).combine_chunks()
    return merged.take(pc.sort_indices(positions)).to_batches()[0]


_READY: dict[str, Operator] = {}


def ready(op: Operator) -> Operator:
    """The set-up instance of `op` in this worker process (set up on first use, then reused)."""
    fp = op.fingerprint()
    inst = _READY.get(fp)
    if inst is None:
        op.setup()
        inst = _READY[fp] = op
    return inst


def operator_classes() -> dict[str, type[Operator]]:
    """Every registered operator by name (entry-point group `vlmdata.operators`, so plug-ins can add theirs).

    An entry point that fails to load is reported by name instead of hiding every other operator.
    """
    return load_group(ENTRY_POINT_GROUP, "operator")


def build_operator(name: str, config: Mapping[str, Any] | None = None) -> Operator:
    """A registered operator by name, or any Operator subclass by import path (`package.module:Class`)."""
    if ":" in name:
        return import_path(name, "operator", Operator)(config or {})
    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in points:
        known = ", ".join(sorted(points)) or "none registered (is the package installed?)"
        raise ValueError(f"unknown operator {name!r}; known operators: {known}")
    return points[name].load()(config or {})
