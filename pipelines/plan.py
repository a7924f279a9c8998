"""Engine-neutral execution plan: operators grouped into Python passes separated by the reduces of global stages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa

from pipelines.operator import GroupOperator, Operator, apply_group, apply_map, ready
from pipelines.schema import conform, record_schema


@dataclass(frozen=True)
class Step:
    """Run `op` on a batch: `map` calls the operator; `apply` marks the losers of a global stage's reduce."""

    kind: str  # "map" | "apply"
    op: Operator
    schema: pa.Schema  # the batch schema after this step


def plan_passes(ops: list[Operator]) -> list[tuple[list[Step], GroupOperator | None]]:
    """Split `ops` into passes. Each pass ends at a global stage's reduce (or at the end of the pipeline).

    A global stage's map phase runs in the pass before its reduce; its apply phase opens the next pass,
    together with every map operator that follows, so data crosses the engine boundary as few times as possible.
    """
    passes: list[tuple[list[Step], GroupOperator | None]] = []
    steps: list[Step] = []
    columns: list[str] = []
    for op in ops:
        columns.extend(op.adds)
        schema = record_schema(columns)
        steps.append(Step("map", op, schema))
        if isinstance(op, GroupOperator):
            passes.append((steps, op))
            steps = [Step("apply", op, schema)]
    passes.append((steps, None))
    return passes


def run_steps(
    steps: list[Step], batches: Iterator[pa.RecordBatch], losers: Mapping[str, str]
) -> Iterator[pa.RecordBatch]:
    """Run the steps of one pass over a stream of batches (operators set up once per worker).

    `losers` maps the key of every row that lost a global stage's reduce to its survivor's key.
    """
    live = [(s.kind, ready(s.op), s.schema) for s in steps]
    for batch in batches:
        for kind, op, schema in live:
            if kind == "map":
                batch = apply_map(op, batch, schema)
            else:
                assert isinstance(op, GroupOperator)
                survivors = [losers.get(k) for k in batch.column("key").to_pylist()]
                batch = conform(apply_group(op, batch, survivors), schema)
        yield batch
