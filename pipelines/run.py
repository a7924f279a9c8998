"""Run a pipeline spec end to end on an engine: plan inputs, process parts, merge into the output folder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.output import OutputLayout, finalize, write_stats
from pipelines.readers.base import Part, plan_parts
from pipelines.spec import PipelineSpec


class Engine(Protocol):
    name: str

    def run(self, spec: PipelineSpec, parts: list[Part], layout: OutputLayout) -> list[dict[str, Any]]: ...


@dataclass
class RunReport:
    output: str
    stats: dict[str, Any]
    parts_total: int
    parts_resumed: int
    seconds: float
    worker_maxrss_kb: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def plan(spec: PipelineSpec, inputs: list[str]) -> tuple[list[Part], str]:
    """The input parts and the run fingerprint (reader + stages + shards config + inputs)."""
    parts = plan_parts(inputs, spec.reader)
    parts_json = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
    return parts, spec.fingerprint(parts_json)


def process(engine: Engine, spec: PipelineSpec, parts: list[Part], output: str, fingerprint: str) -> RunReport:
    """Process every part not already complete, then merge index.json, ledger.parquet and stats.json."""
    layout = OutputLayout(output)
    resumed = layout.prepare(fingerprint)
    start = time.perf_counter()
    markers = engine.run(spec, parts, layout)
    seconds = time.perf_counter() - start
    stats = finalize(layout, [p.id for p in parts], spec.name)
    layout.drop_spills()  # the run is complete: what a resume would reuse is no longer needed
    stats["engine"] = engine.name
    stats["seconds"] = round(seconds, 3)
    stats["throughput_per_s"] = round(stats["inputs"] / seconds, 2) if seconds > 0 else None
    stats["fingerprint"] = fingerprint
    write_stats(layout, stats)
    return RunReport(
        output=output,
        stats=stats,
        parts_total=len(parts),
        parts_resumed=resumed,
        seconds=seconds,
        worker_maxrss_kb=max((m.get("worker_maxrss_kb", 0) for m in markers), default=0),
    )


def run_pipeline(spec: PipelineSpec, inputs: list[str], output: str, engine: Engine) -> RunReport:
    parts, fingerprint = plan(spec, inputs)
    return process(engine, spec, parts, output, fingerprint)
