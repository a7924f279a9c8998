"""The operator contract: one class per operator, a pydantic config, `setup()` once per worker, `__call__` per batch."""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipelines.schema import conform, set_columns

ENTRY_POINT_GROUP = "vlmdata.operators"


class OperatorConfig(BaseModel):
    """Base of every operator's config: unknown keys are an error, so a typo in YAML never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Operator(ABC):
    """A stage. Filters never delete rows: they set keep=False with a reason and the engine records them."""

    name: ClassVar[str]
    Config: ClassVar[type[OperatorConfig]] = OperatorConfig
    adds: ClassVar[tuple[str, ...]] = ()  # names of schema.STAGE_FIELDS this operator fills

    def __init__(self, config: OperatorConfig | Mapping[str, Any] | None = None, **overrides: Any):
        if isinstance(config, OperatorConfig):
            config = config.model_dump()
        self.config = self.Config.model_validate({**(config or {}), **overrides})

    def setup(self) -> None:
        """Load heavy things (models, tables). Called once per worker process before the first batch."""
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


def _call_checked(op: Operator, batch: pa.RecordBatch) -> pa.RecordBatch:
    out = op(batch)
    if out.num_rows != batch.num_rows:
        raise RuntimeError(f"returned {out.num_rows} rows for {batch.num_rows}: operators never drop rows")
    return out


def _call_isolating_failures(
    op: Operator, batch: pa.RecordBatch, schema: pa.Schema, retried: bool = False
) -> pa.RecordBatch:
    """Call `op`; if the batch fails, retry it once, then bisect it so only the rows that fail alone are errors.

    A transient failure costs one retry; a deterministic one (a row the operator cannot handle) costs
    O(log n) extra calls and ends as ledger errors carrying the exception's message. The run goes on.
    """
    try:
        return conform(_call_checked(op, batch), schema)
    except Exception as exc:  # noqa: BLE001 - the ledger records it; the run must go on
        if not retried:
            return _call_isolating_failures(op, batch, schema, retried=True)
        if batch.num_rows > 1:
            half = batch.num_rows // 2
            parts = [_call_isolating_failures(op, batch.slice(0, half), schema, True),
                     _call_isolating_failures(op, batch.slice(half), schema, True)]
            return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
        message = f"{op.name}_failed:{type(exc).__name__}: {exc}"[:500]
        return conform(with_verdicts(batch, [False], [message], [True]), schema)


def apply_map(op: Operator, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Run `op` on the live rows of `batch`; dead rows pass through untouched. Output follows `schema`.

    Rows the operator drops get `stage` = the operator's name and lose their image bytes, so dead
    rows cost nothing further downstream while their ledger fields (key, source, reason) travel on.
    """
    alive = batch.column("keep")
    n_alive = pc.sum(alive.cast(pa.int64())).as_py() or 0
    live = batch.filter(alive) if n_alive < batch.num_rows else batch
    out = _call_isolating_failures(op, live, schema) if n_alive else live
    dropped = pc.invert(out.column("keep"))
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
    found: dict[str, type[Operator]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not hide the others
            warnings.warn(f"operator {ep.name!r} ({ep.value}) cannot be loaded: {exc}", stacklevel=2)
    return found


def build_operator(name: str, config: Mapping[str, Any] | None = None) -> Operator:
    """A registered operator by name, or any Operator subclass by import path (`package.module:Class`)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import operator {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Operator)):
            raise ValueError(f"{name!r} is not an Operator subclass")
        return cls(config or {})
    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in points:
        known = ", ".join(sorted(points)) or "none registered (is the package installed?)"
        raise ValueError(f"unknown operator {name!r}; known operators: {known}")
    return points[name].load()(config or {})
