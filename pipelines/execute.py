"""Engine-neutral execution: one part through one pass, and the files that connect passes and reduces.

Engines only schedule (which part, which pass); everything a part's rows go through happens here, so Spark
and Beam produce the same bytes. Between passes a part's rows are spilled to the work folder with the small
key columns a global stage's reduce needs; the reduce writes, per part, the keys that lost and their
survivor. Only key columns cross the engine, and a resumed run reuses every file that is complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.operator import GroupOperator
from pipelines.output import OutputLayout, write_part
from pipelines.plan import Step, plan_passes, run_steps
from pipelines.readers.base import Part, read_part
from pipelines.schema import conform
from pipelines.spec import PipelineSpec

LOSERS_SCHEMA = pa.schema([("key", pa.string()), ("survivor", pa.string())])


def reduce_schema(op: GroupOperator, schema: pa.Schema) -> pa.Schema:
    """Columns of the keyed reduce of a global stage: key, part, the group column and the order columns."""
    names = ["key", "part", op.group_column, *[c for c, _ in op.order_columns]]
    return pa.schema([schema.field(n) for n in names])


def _reduce_rows(batch: pa.RecordBatch, group: GroupOperator, schema: pa.Schema) -> pa.RecordBatch:
    """The live rows that take part in the reduce (a row without a group value has nothing to match)."""
    mask = pc.and_(batch.column("keep"), pc.is_valid(batch.column(group.group_column)))
    return conform(batch.filter(mask), schema)


def _tmp(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def _read_stream(path: str) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(path, "rb") as source:
        yield from pa.ipc.open_stream(source)


@dataclass
class PassRunner:
    """Everything a worker needs to run any pass of a pipeline on any part (small and picklable)."""

    spec: PipelineSpec
    root: str
    passes: list[tuple[list[Step], GroupOperator | None]] = field(init=False)

    def __post_init__(self) -> None:
        self.passes = plan_passes(self.spec.operators())

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.root)

    @property
    def n_passes(self) -> int:
        return len(self.passes)

    def group(self, k: int) -> GroupOperator:
        group = self.passes[k][1]
        assert group is not None, f"pass {k} ends in no global stage"
        return group

    def keys_schema(self, k: int) -> pa.Schema:
        return reduce_schema(self.group(k), self.passes[k][0][-1].schema)

    def describe(self, k: int) -> str:
        """A task name for pass `k`: the operators it runs."""
        steps, group = self.passes[k]
        names = []
        for s in steps:
            if s.kind == "apply":
                names.append(f"apply {s.op.name}")
            else:
                names.append(f"{s.op.name} (map)" if s.op is group else s.op.name)
        return f"pass-{k}: " + ", ".join(names + (["write shards"] if group is None else []))

    # --- pass -----------------------------------------------------------------------------------------

    def run(self, k: int, part: Part) -> dict[str, Any]:
        """Pass `k` on `part`, unless its output is already complete. Returns the marker, or the spill summary."""
        layout = self.layout
        steps, group = self.passes[k]
        if group is None:
            done = layout.marker(part.id)
            if done is not None:
                return done
            return write_part(run_steps(steps, self._input(k, part), self.losers(k, part.id)), layout,
                              self.spec.shards, part.id)
        spill, keys = layout.spill_path(k, part.id), layout.keys_path(k, part.id)
        if os.path.exists(spill) and os.path.exists(keys):
            return {"part": part.id, "resumed": True}
        os.makedirs(os.path.dirname(spill), exist_ok=True)
        key_schema = self.keys_schema(k)
        n = 0
        with pa.OSFile(_tmp(spill), "wb") as sink, pa.ipc.new_stream(sink, steps[-1].schema) as rows, \
                pq.ParquetWriter(_tmp(keys), key_schema) as key_writer:
            for batch in run_steps(steps, self._input(k, part), self.losers(k, part.id)):
                rows.write_batch(batch)
                key_writer.write_batch(_reduce_rows(batch, group, key_schema))
                n += batch.num_rows
        # The spill is renamed last: its presence is the proof that both files are complete.
        os.replace(_tmp(keys), keys)
        os.replace(_tmp(spill), spill)
        return {"part": part.id, "rows": n}

    def _input(self, k: int, part: Part) -> Iterator[pa.RecordBatch]:
        if k == 0:
            return read_part(part, self.spec.reader)
        return _read_stream(self.layout.spill_path(k - 1, part.id))

    # --- reduce ---------------------------------------------------------------------------------------

    def key_files(self, k: int, parts: list[Part]) -> list[str]:
        return [self.layout.keys_path(k, p.id) for p in parts]

    def losers(self, k: int, part: int) -> dict[str, str]:
        """Keys of `part` that lost the reduce before pass `k`, mapped to their survivors."""
        if k == 0:
            return {}
        path = self.layout.losers_path(k - 1, part)
        if not os.path.exists(path):
            return {}
        table = pq.read_table(path, schema=LOSERS_SCHEMA)
        return dict(zip(table.column("key").to_pylist(), table.column("survivor").to_pylist(), strict=True))

    def write_losers(self, k: int, part: int, pairs: list[tuple[str, str]]) -> None:
        path = self.layout.losers_path(k, part)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        keys, survivors = zip(*sorted(pairs), strict=True) if pairs else ((), ())
        pq.write_table(pa.table({"key": list(keys), "survivor": list(survivors)}, schema=LOSERS_SCHEMA), _tmp(path))
        os.replace(_tmp(path), path)

    def reduce_done(self, k: int) -> bool:
        return os.path.exists(self.layout.reduce_marker(k))

    def mark_reduce_done(self, k: int) -> None:
        path = self.layout.reduce_marker(k)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("done\n")
