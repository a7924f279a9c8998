"""Engine-neutral execution of one part through one pass: read or reload its rows, run the steps, spill or write.

Engines only schedule (which part, which pass, which reduce results go with it); everything a part's rows
go through happens here, so Spark and Beam produce the same bytes. Between passes a part's rows are spilled
to the work folder, so only small key columns cross the engine for global stages, and a resumed run
reloads finished passes instead of recomputing them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.operator import GroupOperator
from pipelines.output import OutputLayout, write_part
from pipelines.plan import Step, plan_passes, run_steps
from pipelines.readers.base import Part, read_part
from pipelines.schema import conform
from pipelines.spec import PipelineSpec


def reduce_schema(op: GroupOperator, schema: pa.Schema) -> pa.Schema:
    """Columns of the keyed reduce of a global stage: key, part, the group column and the order columns."""
    names = ["key", "part", op.group_column, *[c for c, _ in op.order_columns]]
    return pa.schema([schema.field(n) for n in names])


def _write_stream(path: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Write batches to an Arrow stream at `path` (atomically) while passing them on."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield batch
    os.replace(tmp, path)


def _read_stream(path: str) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(path, "rb") as source:
        yield from pa.ipc.open_stream(source)


def _reduce_rows(batch: pa.RecordBatch, group: GroupOperator, schema: pa.Schema) -> pa.RecordBatch:
    """The live rows that take part in the reduce (a row without a group value has nothing to match)."""
    mask = pc.and_(batch.column("keep"), pc.is_valid(batch.column(group.group_column)))
    return conform(batch.filter(mask), schema)


@dataclass
class PassRunner:
    """Everything a worker needs to run any pass of a pipeline on any part (small and picklable)."""

    spec: PipelineSpec
    root: str

    def __post_init__(self) -> None:
        self.passes: list[tuple[list[Step], GroupOperator | None]] = plan_passes(self.spec.operators())

    @property
    def n_passes(self) -> int:
        return len(self.passes)

    def keys_schema(self, k: int) -> pa.Schema:
        steps, group = self.passes[k]
        assert group is not None
        return reduce_schema(group, steps[-1].schema)

    def run(self, k: int, part: Part, losers: Mapping[str, str] | None = None) -> Iterator[Any]:
        """Pass `k` on `part`. Yields the part's marker on the last pass, else its reduce-key batches."""
        layout = OutputLayout(self.root)
        steps, group = self.passes[k]
        last = k == self.n_passes - 1
        if last:
            done = layout.marker(part.id)
            yield done if done is not None else self._write(k, part, steps, losers or {}, layout)
            return
        assert group is not None
        spill, keys = layout.spill_path(k, part.id), layout.keys_path(k, part.id)
        if not (os.path.exists(spill) and os.path.exists(keys)):
            os.makedirs(os.path.dirname(spill), exist_ok=True)
            out = run_steps(steps, self._input(k, part, layout), losers or {})
            key_schema = self.keys_schema(k)
            key_batches = (_reduce_rows(b, group, key_schema) for b in _write_stream(spill, steps[-1].schema, out))
            # Drain into the keys file; the spill is complete only once both are renamed into place.
            for _ in _write_stream(keys, key_schema, key_batches):
                pass
        yield from _read_stream(keys)

    def _input(self, k: int, part: Part, layout: OutputLayout) -> Iterator[pa.RecordBatch]:
        if k == 0:
            return read_part(part, self.spec.reader)
        return _read_stream(layout.spill_path(k - 1, part.id))

    def _write(self, k: int, part: Part, steps: list[Step], losers: Mapping[str, str], layout: OutputLayout) -> dict:
        return write_part(run_steps(steps, self._input(k, part, layout), losers), layout, self.spec.shards, part.id)
