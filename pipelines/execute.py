"""Engine-neutral execution: one part through one pass, and the files that connect passes and reduces.

Engines only schedule (which part, which pass); everything a part's rows go through happens here, so Spark
and Beam produce the same bytes. Between passes a part's rows are spilled to the work folder with the small
key columns a global stage's reduce needs; the reduce writes, per part, the keys that lost and their
survivor. Only key columns cross the engine, and a resumed run reuses every file that is complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.global_stage import COUNT_SCHEMA, DedupOperator, GlobalOperator, reduce_rows, reduce_schema
from pipelines.memory import keep_heap
from pipelines.output import OutputLayout, write_part
from pipelines.plan import Step, check_columns, plan_passes, run_steps
from pipelines.readers.base import Part, read_part, source_fields
from pipelines.spec import PipelineSpec

LOSERS_SCHEMA = pa.schema([("key", pa.string()), ("survivor", pa.string())])
_COUNTS_CACHE: dict[tuple[str, int], dict[str, int]] = {}


def _read_stream(path: str) -> Iterator[pa.RecordBatch]:
    """The batches of a spill; a local one is memory-mapped (its batches point into the page cache: no copy)."""
    local = storage.local_path(path)
    with pa.memory_map(local) if local is not None else storage.open_file(path, "rb") as source:
        yield from pa.ipc.open_stream(source)


@dataclass
class PassRunner:
    """Everything a worker needs to run any pass of a pipeline on any part (small and picklable)."""

    spec: PipelineSpec
    root: str
    formats: tuple[str, ...] = ()  # the sources the run reads (their columns join the record schema)
    passes: list[tuple[list[Step], GlobalOperator | None]] = field(init=False)

    def __post_init__(self) -> None:
        ops = self.spec.operators()
        fields = source_fields(list(self.formats))
        check_columns(ops, fields)
        self.passes = plan_passes(ops, fields)

    @classmethod
    def for_parts(cls, spec: PipelineSpec, root: str, parts: list[Part]) -> PassRunner:
        return cls(spec, root, tuple(dict.fromkeys(p.format for p in parts)))

    @property
    def stage_names(self) -> list[str]:
        """The recipe's stages in order (the ledger's `stage` and `origin` values)."""
        return [s.op.name for steps, _ in self.passes for s in steps if s.kind == "map"]

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.root)

    @property
    def n_passes(self) -> int:
        return len(self.passes)

    def group(self, k: int) -> GlobalOperator:
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
        keep_heap()  # this process reuses its pages from row to row (pipelines.memory)
        layout = self.layout
        steps, group = self.passes[k]
        if group is None:
            done = layout.marker(part.id)
            if done is None:
                done = write_part(run_steps(steps, self._input(k, part), self.result_for(k, part.id)), layout,
                                  self.spec.shards, part.id)
            else:
                done = {**done, "resumed": True}
            self._drop_input(k, part.id)
            return done
        spill, keys = layout.spill_path(k, part.id), layout.keys_path(k, part.id)
        if self.part_done(k, part.id):
            self._drop_input(k, part.id)
            return {"part": part.id, "resumed": True}
        storage.makedirs(storage.dirname(spill))
        key_schema = self.keys_schema(k)
        n = 0
        # The spill is renamed last (atomic_target exits inner first): its presence proves both files complete.
        with storage.atomic_target(spill) as spill_tmp, storage.atomic_target(keys) as keys_tmp, \
                storage.open_file(spill_tmp, "wb") as sink, pa.ipc.new_stream(sink, steps[-1].schema) as rows, \
                storage.open_file(keys_tmp, "wb") as key_sink, pq.ParquetWriter(key_sink, key_schema) as key_writer:
            for batch in run_steps(steps, self._input(k, part), self.result_for(k, part.id)):
                rows.write_batch(batch)
                key_writer.write_batch(reduce_rows(batch, group, key_schema))
                n += batch.num_rows
        self._drop_input(k, part.id)
        return {"part": part.id, "rows": n}

    def part_done(self, k: int, part: int) -> bool:
        """Whether pass `k` finished `part`: its completion marker (the shard pass), or its keys with its spill, or
        with a later pass that finished the part (which has dropped the spill it consumed)."""
        layout = self.layout
        if self.passes[k][1] is None:
            return storage.exists(layout.marker_path(part))
        if not storage.exists(layout.keys_path(k, part)):
            return False
        return storage.exists(layout.spill_path(k, part)) or self.part_done(k + 1, part)

    def first_pass(self, parts: list[Part]) -> int:
        """The first pass with work left. The last one when a previous run wrote every part's shards: its end dropped
        the spills and keys the earlier passes left, so without this a rerun would redo those passes (and reduces)
        only to find every shard written."""
        last = self.n_passes - 1
        if not all(self.part_done(last, p.id) for p in parts):
            return 0
        # The merge reads a count reduce's result (the concept counts before balancing), which that end dropped too:
        # then the passes and reduces are redone to rebuild it, as before.
        if any(self.group(k).reduce_kind == "count" and not storage.exists(self.layout.counts_path(k))
               for k in range(last)):
            return 0
        return last

    def _drop_input(self, k: int, part: int) -> None:
        """Pass `k` committed `part`: the spill it read is no longer needed, even by a resume (`part_done`), so it
        goes now rather than at the end of the run. The work folder then holds about one copy of the rows, not one
        per pass, and the next parts' writes reuse the freed pages."""
        if k > 0:
            storage.remove(self.layout.spill_path(k - 1, part))

    def _input(self, k: int, part: Part) -> Iterator[pa.RecordBatch]:
        if k == 0:
            return read_part(part, self.spec.reader)
        return _read_stream(self.layout.spill_path(k - 1, part.id))

    # --- reduce ---------------------------------------------------------------------------------------

    def fit_sample(self, k: int, parts: list[Part], n: int) -> pa.Table:
        """The first `n` key rows in part order: the same sample on every engine, so the fit agrees too."""
        batches, rows = [], 0
        for p in parts:
            for b in self.read_keys(k, p.id):
                batches.append(b)
                rows += b.num_rows
            if rows >= n:
                break
        return pa.Table.from_batches(batches, schema=self.keys_schema(k)).slice(0, n)

    def fit_state(self, k: int, parts: list[Part]) -> Any:
        """The bucketing state of the dedup reduce after pass `k`: its `fit` on the fit sample, or None."""
        op = self.group(k)
        if isinstance(op, DedupOperator) and op.fit_sample:
            return op.fit(self.fit_sample(k, parts, op.fit_sample))
        return None

    def key_rows(self, k: int, parts: list[Part], stop_above: int | None = None) -> int:
        """The key rows pass `k` left over `parts`, from the files' footers; counting stops once past `stop_above`."""
        rows = 0
        for p in parts:
            with storage.open_file(self.layout.keys_path(k, p.id)) as f:
                rows += pq.ParquetFile(f).metadata.num_rows
            if stop_above is not None and rows > stop_above:
                break
        return rows

    def read_keys(self, k: int, part: int) -> Iterator[pa.RecordBatch]:
        """The reduce columns pass `k` left for `part`."""
        with storage.open_file(self.layout.keys_path(k, part)) as f:
            yield from pq.ParquetFile(f).iter_batches()

    def result_for(self, k: int, part: int) -> object:
        """What the apply step at the start of pass `k` needs: losers of this part, or the global counts."""
        if k == 0:
            return None
        if self.group(k - 1).reduce_kind == "count":
            return self.counts(k - 1)
        return self.losers(k, part)

    def counts(self, k: int) -> dict[str, int]:
        """Entry counts of the count reduce after pass `k`, read once per worker process and file version (a
        worker of a pool that outlives a run must not serve a later run's pass the counts of an earlier one)."""
        path = self.layout.counts_path(k)
        fs, fs_path = storage.fs_of(path)
        version = (path, fs.checksum(fs_path))  # fsspec: a hash of the file's info (size, modification time)
        if version not in _COUNTS_CACHE:
            with storage.open_file(path) as f:
                table = pq.read_table(f, schema=COUNT_SCHEMA)
            _COUNTS_CACHE.clear()  # one version at a time: the cache does not grow with runs
            _COUNTS_CACHE[version] = dict(zip(table.column("entry").to_pylist(),
                                              table.column("count").to_pylist(), strict=True))
        return _COUNTS_CACHE[version]

    def write_counts(self, k: int, entries: list[str], counts: list[int]) -> None:
        path = self.layout.counts_path(k)
        storage.makedirs(storage.dirname(path))
        order = sorted(range(len(entries)), key=entries.__getitem__)
        table = pa.table({"entry": [entries[i] for i in order], "count": [counts[i] for i in order]},
                         schema=COUNT_SCHEMA)
        storage.write_parquet_atomic(path, table)

    def losers(self, k: int, part: int) -> dict[str, str]:
        """Keys of `part` that lost the reduce before pass `k`, mapped to their survivors."""
        path = self.layout.losers_path(k - 1, part)
        if not storage.exists(path):
            return {}
        with storage.open_file(path) as f:
            table = pq.read_table(f, schema=LOSERS_SCHEMA)
        return dict(zip(table.column("key").to_pylist(), table.column("survivor").to_pylist(), strict=True))

    def write_losers(self, k: int, part: int, pairs: list[tuple[str, str]]) -> None:
        path = self.layout.losers_path(k, part)
        storage.makedirs(storage.dirname(path))
        keys, survivors = zip(*sorted(pairs), strict=True) if pairs else ((), ())
        storage.write_parquet_atomic(path, pa.table({"key": list(keys), "survivor": list(survivors)}, schema=LOSERS_SCHEMA))

    def reduce_done(self, k: int) -> bool:
        return storage.exists(self.layout.reduce_marker(k))

    def mark_reduce_done(self, k: int) -> None:
        path = self.layout.reduce_marker(k)
        storage.makedirs(storage.dirname(path))
        storage.write_atomic(path, b"done\n")
