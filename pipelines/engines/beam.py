"""Beam engine: a pass is a ParDo over part descriptors; a reduce is GroupByKey on the group column."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.execute import PassRunner
from pipelines.operator import GroupOperator
from pipelines.readers.base import Part
from pipelines.spec import EngineConfig

# Embedded default: the DirectRunner with one worker process per core.
DEFAULT_OPTIONS = ["--runner=DirectRunner", "--direct_num_workers=0", "--direct_running_mode=multi_processing"]

Member = tuple[tuple, str, int]  # (order values, key, part)


def _reduce_members(runner: PassRunner, k: int) -> Callable[[str], Iterator[tuple[Any, Member]]]:
    group = runner.group(k)
    order = [c for c, _ in group.order_columns]

    def members(part_json: str) -> Iterator[tuple[Any, Member]]:
        part = Part.model_validate_json(part_json)
        table = pq.read_table(runner.layout.keys_path(k, part.id))
        cols = {name: table.column(name).to_pylist() for name in ("key", "part", group.group_column, *order)}
        for i, key in enumerate(cols["key"]):
            yield cols[group.group_column][i], (tuple(cols[c][i] for c in order), key, cols["part"][i])

    return members


def survivors_of(group: GroupOperator) -> Callable[[tuple[Any, list[Member]]], Iterator[tuple[int, tuple[str, str]]]]:
    """Within one group: the first row by (order columns, key) survives; every other row loses to it."""
    descending = [desc for _, desc in group.order_columns]

    def rank(member: Member) -> tuple:
        order, key, _ = member
        return (*((-v if d else v) for v, d in zip(order, descending, strict=True)), key)

    def split(element: tuple[Any, list[Member]]) -> Iterator[tuple[int, tuple[str, str]]]:
        ranked = sorted(element[1], key=rank)
        survivor = ranked[0][1]
        for _, key, part in ranked[1:]:
            yield part, (key, survivor)

    return split


class BeamEngine:
    """Same passes and files as the Spark engine, scheduled by Beam; runner options pass through unchanged."""

    name = "beam"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="beam")

    def options(self) -> PipelineOptions:
        return PipelineOptions(list(self.config.beam_options) or list(DEFAULT_OPTIONS))

    def _pipeline(self) -> beam.Pipeline:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        return beam.Pipeline(options=self.options())

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
        group = runner.group(k)
        with self._pipeline() as pipeline:
            (
                pipeline
                | "parts" >> beam.Create([p.model_dump_json() for p in parts], reshuffle=True)
                | "read keys" >> beam.FlatMap(_reduce_members(runner, k))
                | f"group by {group.group_column}" >> beam.GroupByKey()
                | "survivors" >> beam.FlatMap(survivors_of(group))
                | "by part" >> beam.GroupByKey()
                | "write losers" >> beam.MapTuple(lambda part, pairs: runner.write_losers(k, part, list(pairs)))
            )
        return sum(len(runner.losers(k + 1, p.id)) for p in parts)
