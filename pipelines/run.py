"""Run a pipeline spec end to end on an engine: plan inputs, run passes and reduces, merge into the output folder."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.execute import PassRunner
from pipelines.global_stage import CountOperator, DedupOperator, dedup_in_process, entries_of
from pipelines.output import OutputLayout, finalize, write_stats
from pipelines.readers.base import Part, plan_parts
from pipelines.spec import PipelineSpec


class Engine(Protocol):
    """What an engine does: run one pass over every part, and one global stage's keyed reduce."""

    name: str

    def run_pass(self, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]: ...

    def reduce(self, runner: PassRunner, parts: list[Part], k: int) -> int: ...


@dataclass
class RunReport:
    output: str
    stats: dict[str, Any]
    parts_total: int
    parts_resumed: int
    seconds: float
    worker_maxrss_kb: int = 0


def plan(spec: PipelineSpec, inputs: list[str]) -> tuple[list[Part], str]:
    """The input parts and the run fingerprint (reader + stages + shards config + inputs)."""
    parts = plan_parts(inputs, spec.reader, spec.engine.parallelism())
    parts_json = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
    return parts, spec.fingerprint(parts_json)


def run_reduce(engine: Engine, runner: PassRunner, parts: list[Part], k: int) -> int | None:
    """The reduce after pass `k`; skipped (None) when a previous run completed it."""
    if runner.reduce_done(k):
        return None
    op = runner.group(k)
    setting = "driver_compare_rows" if isinstance(op, DedupOperator) and op.compares_rows else "driver_reduce_rows"
    limit = getattr(runner.spec.engine, setting)
    rows = runner.key_rows(k, parts, stop_above=limit) if limit else None
    if rows is not None and rows <= limit:
        # A distributed reduce starts jobs, shuffles and workers: seconds that a few key rows never repay (Spark's
        # broadcast threshold, for a reduce). Every engine writes the same losers either way.
        logging.getLogger("vlmdata").info("reduce-%d: %d key rows (engine.%s: %d): reduced in the driver",
                                          k, rows, setting, limit)
        losers = reduce_in_process(runner, parts, k)
    else:
        losers = engine.reduce(runner, parts, k)
    runner.mark_reduce_done(k)
    return losers


def reduce_in_process(runner: PassRunner, parts: list[Part], k: int) -> int:
    """The global stage's keyed reduce after pass `k`, in this process: the key rows are read here, reduced, and the
    losers (or counts) written as every engine writes them. The local engine's reduce, and Spark's and Beam's when
    the key rows are few (`engine.driver_reduce_rows`, `engine.driver_compare_rows`)."""
    op = runner.group(k)
    if isinstance(op, CountOperator):
        counts: Counter[str] = Counter()
        for p in parts:
            for batch in runner.read_keys(k, p.id):
                counts.update(entries_of(op, batch))
        runner.write_counts(k, list(counts), list(counts.values()))
        return len(counts)
    assert isinstance(op, DedupOperator)
    state = runner.fit_state(k, parts)
    batches = [b for p in parts for b in runner.read_keys(k, p.id)]
    losers = dedup_in_process(op, state, batches)
    by_part: dict[int, list[tuple[str, str]]] = {}
    for key, (part, survivor) in losers.items():
        by_part.setdefault(part, []).append((key, survivor))
    for part, pairs in by_part.items():
        runner.write_losers(k, part, pairs)
    return len(losers)


def finish(runner: PassRunner, parts: list[Part], markers: list[dict[str, Any]], engine: str, seconds: float,
           fingerprint: str) -> dict[str, Any]:
    """Merge index.json, ledger.parquet and stats.json; drop the work files a resume would have reused."""
    layout = runner.layout
    stats = finalize(layout, [p.id for p in parts], runner.spec.name, runner.stage_names)
    stats["engine"] = engine
    stats["seconds"] = round(seconds, 3)
    stats["throughput_per_s"] = round(stats["inputs"] / seconds, 2) if seconds > 0 else None
    stats["fingerprint"] = fingerprint
    stats["worker_maxrss_kb"] = max((m.get("worker_maxrss_kb", 0) for m in markers), default=0)
    stats["unreadable_inputs"] = unreadable_inputs(parts, markers)
    stats["sources"] = _sources_used(parts)
    kept_concepts = stats.pop("concepts_kept", {})
    for k in range(runner.n_passes - 1):
        if runner.group(k).reduce_kind == "count":
            # Entry counts before balancing (the reduce's) and after it (over the kept samples).
            stats["concepts"] = {"before": dict(sorted(runner.counts(k).items())), "after": kept_concepts}
    write_stats(layout, stats)
    layout.drop_spills()
    return stats


def unreadable_inputs(parts: list[Part], markers: list[dict[str, Any]]) -> list[str]:
    """Inputs none of whose rows could be read (a missing or broken file): every row a `read` error."""
    rows: dict[str, list[int]] = {}
    for part, marker in zip(parts, markers, strict=False):
        flow = (marker or {}).get("flow") or {}
        sources = int(flow.get("sources", 0))
        failed = int((flow.get("left") or {}).get("read", 0))
        total = rows.setdefault(part.input or part.root, [0, 0])
        total[0] += sources
        total[1] += failed
    return sorted(root for root, (n, failed) in rows.items() if n == 0 or failed == n)


def _sources_used(parts: list[Part]) -> dict[str, str]:
    """Which source read which input (the summary says it, so an auto-detection is never silent)."""
    return {p.input or p.root: p.format for p in parts}


def run_passes(engine: Engine, runner: PassRunner, parts: list[Part],
               run_pass: Callable[[Engine, PassRunner, list[Part], int], list[dict[str, Any]]] | None = None,
               reduce: Callable[[Engine, PassRunner, list[Part], int], Any] = run_reduce) -> list[dict[str, Any]]:
    """Every pass with the reduce after it, in order, from the first pass with work left (`PassRunner.first_pass`);
    the last pass's markers. `run_pass` and `reduce` default to the engine's pass and `run_reduce` (a flow run wraps
    them as Prefect tasks)."""
    markers: list[dict[str, Any]] = []
    for k in range(runner.first_pass(parts), runner.n_passes):
        markers = run_pass(engine, runner, parts, k) if run_pass else engine.run_pass(runner, parts, k)
        if k < runner.n_passes - 1:
            reduce(engine, runner, parts, k)
    return markers


def process(engine: Engine, spec: PipelineSpec, parts: list[Part], output: str, fingerprint: str) -> RunReport:
    """Every pass and reduce in order (each skips what a previous run finished), then the merge."""
    layout = OutputLayout(output)
    resumed = layout.prepare(fingerprint)  # the caller holds layout.lock() and has run layout.check_safe(inputs)
    runner = PassRunner.for_parts(spec, output, parts)
    start = time.perf_counter()
    markers = run_passes(engine, runner, parts)
    seconds = time.perf_counter() - start
    stats = finish(runner, parts, markers, engine.name, seconds, fingerprint)
    return RunReport(output, stats, len(parts), resumed, seconds, stats["worker_maxrss_kb"])


def run_pipeline(spec: PipelineSpec, inputs: list[str], output: str, engine: Engine, close: bool = True) -> RunReport:
    """Plan, run and merge under the output folder's lock. `close`: shut the engine's workers down afterwards
    (False keeps a local engine's pool warm for another run)."""
    layout = OutputLayout(output)
    layout.check_safe(inputs)
    try:
        with layout.lock():
            parts, fingerprint = plan(spec, inputs)
            return process(engine, spec, parts, output, fingerprint)
    finally:
        if close and hasattr(engine, "close"):
            engine.close()
