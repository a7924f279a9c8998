"""Beam engine: a pass is a ParDo over part descriptors; a reduce is GroupByKey / CombinePerKey over key rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.execute import PassRunner
from pipelines.global_stage import (
    CountOperator,
    DedupOperator,
    best_survivor,
    bucket_candidates,
    bucket_schema,
    entries_of,
    explode,
)
from pipelines.readers.base import Part
from pipelines.spec import EngineConfig

# Embedded default: the DirectRunner with one worker process per core for the passes (decoding, models: the work),
# and in this process for the reduces, which move only key rows: starting a pipeline's worker processes costs
# ~2.7 s here, more than a reduce over hundreds of thousands of keys takes in memory.
DEFAULT_OPTIONS = ["--runner=DirectRunner", "--direct_num_workers=0", "--direct_running_mode=multi_processing"]
DEFAULT_REDUCE_OPTIONS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def _keys_of(runner: PassRunner, k: int):
    def read(part_json: str) -> Iterator[pa.RecordBatch]:
        yield from runner.read_keys(k, Part.model_validate_json(part_json).id)

    return read


def _rows(table_or_batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    return table_or_batch.to_pylist()


class BeamEngine:
    """Same passes, reduce steps and files as the Spark engine, scheduled by Beam; runner options pass through."""

    name = "beam"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="beam")

    def options(self, reduce: bool = False) -> PipelineOptions:
        """The configured `beam_options` for every pipeline, or the embedded defaults (a reduce runs in memory)."""
        default = DEFAULT_REDUCE_OPTIONS if reduce else DEFAULT_OPTIONS
        return PipelineOptions(list(self.config.beam_options) or list(default))

    def _pipeline(self, reduce: bool = False) -> beam.Pipeline:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        return beam.Pipeline(options=self.options(reduce))

    def run_pass(self, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
        with self._pipeline() as pipeline:
            (
                pipeline
                | "parts" >> beam.Create([p.model_dump_json() for p in parts], reshuffle=True)
                | runner.describe(k) >> beam.Map(lambda text: runner.run(k, Part.model_validate_json(text)))
            )
        # Results are on disk (markers, spills), written by the workers: read them rather than collect rows.
        if k < runner.n_passes - 1:
            return [{"part": p.id} for p in parts]
        markers = [runner.layout.marker(p.id) for p in parts]
        missing = [p.id for p, m in zip(parts, markers, strict=True) if m is None]
        if missing:
            raise RuntimeError(f"beam: parts {missing[:10]} have no completion marker after the pipeline finished")
        return markers  # type: ignore[return-value]

    def reduce(self, runner: PassRunner, parts: list[Part], k: int) -> int:
        op = runner.group(k)
        state = runner.fit_state(k, parts)
        schema = runner.keys_schema(k)
        with self._pipeline(reduce=True) as pipeline:
            keys = (
                pipeline
                | "parts" >> beam.Create([p.model_dump_json() for p in parts], reshuffle=True)
                | "read keys" >> beam.FlatMap(_keys_of(runner, k))
            )
            if isinstance(op, CountOperator):
                (
                    keys
                    | "entries" >> beam.FlatMap(lambda b: ((e, 1) for e in entries_of(op, b)))
                    | "count" >> beam.CombinePerKey(sum)
                    | "all counts" >> beam.combiners.ToList()
                    | "write counts" >> beam.Map(
                        lambda pairs: runner.write_counts(k, [e for e, _ in pairs], [c for _, c in pairs]))
                )
            else:
                assert isinstance(op, DedupOperator)
                (
                    keys
                    | "buckets" >> beam.FlatMap(lambda b: ((r["bucket"], r) for r in _rows(explode(op, state, b))))
                    | "group by bucket" >> beam.GroupByKey()
                    | "candidates" >> beam.FlatMap(
                        lambda kv: ((r["key"], r) for r in _rows(bucket_candidates(op, state, pa.Table.from_pylist(
                            list(kv[1]), schema=bucket_schema(schema))))))
                    | "group by loser" >> beam.GroupByKey()
                    | "best survivor" >> beam.Map(lambda kv: _rows(best_survivor(pa.Table.from_pylist(list(kv[1]))))[0])
                    | "by part" >> beam.Map(lambda r: (r["part"], (r["key"], r["survivor"])))
                    | "group by part" >> beam.GroupByKey()
                    | "write losers" >> beam.MapTuple(lambda part, pairs: runner.write_losers(k, part, list(pairs)))
                )
        if isinstance(op, CountOperator):
            return len(runner.counts(k))
        return sum(len(runner.losers(k + 1, p.id)) for p in parts)
