"""Engine-neutral execution plan: operators grouped into passes, separated by the reduces of global stages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.global_stage import GlobalOperator
from pipelines.imaging import VIEWS_BUDGET_BYTES, decoded_views
from pipelines.operator import Operator, apply_map, ready
from pipelines.schema import record_schema


@dataclass(frozen=True)
class Step:
    """Run `op` on a batch: `map` calls the operator; `apply` runs a global stage's decision on its reduce result."""

    kind: str  # "map" | "apply"
    op: Operator
    schema: pa.Schema  # the batch schema after this step


class PlanError(ValueError):
    """A recipe whose stages cannot run in this order: the message names the stage and the column."""


def check_columns(ops: list[Operator], source_fields: Iterable[pa.Field] = ()) -> None:
    """Every column a stage reads is provided by the source or an earlier stage; raises PlanError naming both."""
    available = set(record_schema(source_fields).names)
    for i, op in enumerate(ops):
        missing = [c for c in op.reads if c not in available]
        if missing:
            raise PlanError(
                f"stage {i + 1} ({op.name}) reads column(s) {', '.join(missing)} that neither the source nor an earlier "
                "stage provides; add the stage that makes them before it (e.g. `decode` for width/height/pixel_sha1)"
            )
        available.update(f.name for f in op.adds)


def plan_passes(ops: list[Operator], source_fields: Iterable[pa.Field] = ()) -> list[tuple[list[Step], GlobalOperator | None]]:
    """Split `ops` into passes. Each pass ends at a global stage's reduce (or at the end of the pipeline).

    A global stage's map phase runs in the pass before its reduce; its apply phase opens the next pass,
    together with every map operator that follows, so data is read and spilled as few times as possible.
    """
    passes: list[tuple[list[Step], GlobalOperator | None]] = []
    steps: list[Step] = []
    fields: list[pa.Field] = list(source_fields)
    for op in ops:
        fields.extend(op.adds)
        schema = record_schema(fields)
        steps.append(Step("map", op, schema))
        if isinstance(op, GlobalOperator):
            passes.append((steps, op))
            steps = [Step("apply", op, schema)]
    passes.append((steps, None))
    return passes


class _Decision(Operator):
    """A global stage's apply step seen as a map operator, so failures and verdicts go the usual way."""

    def __init__(self, op: GlobalOperator, result: Any):
        self.op, self.result, self.name, self.config = op, result, op.name, op.config

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.op.decide(batch, self.result)


def run_steps(steps: list[Step], batches: Iterator[pa.RecordBatch], result: Any = None) -> Iterator[pa.RecordBatch]:
    """Run the steps of one pass over a stream of batches (operators set up once per worker).

    `result` is the reduce result the pass's apply step needs (this part's share of it).
    """
    live: list[tuple[Operator, pa.Schema]] = []
    for s in steps:
        op = ready(s.op)
        if s.kind == "apply":
            assert isinstance(op, GlobalOperator)
            op = _Decision(op, result)
        live.append((op, s.schema))
    # Each picture decoded once for all stages of the pass that read pixels, released with the batch. A pass with a
    # single such stage has nothing to share and keeps no pictures; a stage whose columns an earlier stage of the
    # pass already made (exact_dedup after decode: pixel_sha1) computes nothing and does not count.
    readers, made = 0, set()
    for s in steps:
        adds = {f.name for f in s.op.adds}
        readers += s.kind == "map" and "image" in s.op.reads and not (adds and adds <= made)
        made |= adds
    budget = VIEWS_BUDGET_BYTES if readers > 1 else 0
    for batch in batches:
        with decoded_views(budget):
            for op, schema in live:
                batch = apply_map(op, batch, schema)
        yield batch
