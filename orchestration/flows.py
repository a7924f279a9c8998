"""Prefect flows: `curate` = plan inputs → run the pipeline on an engine → merge outputs → summary artifact."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from orchestration.report import markdown_summary
from pipelines.readers.base import Part
from pipelines.run import plan, process
from pipelines.spec import PipelineSpec, load_spec


def make_engine(spec: PipelineSpec):
    """The engine the spec names (only Spark so far)."""
    from pipelines.engines.spark import SparkEngine

    return SparkEngine(spec.engine)


@task(name="plan-inputs", cache_policy=NO_CACHE)
def plan_inputs(spec: PipelineSpec, inputs: list[str]) -> tuple[list[Part], str]:
    parts, fingerprint = plan(spec, inputs)
    get_run_logger().info("%d input parts, fingerprint %s", len(parts), fingerprint)
    return parts, fingerprint


@task(name="start-engine", cache_policy=NO_CACHE)
def start_engine(spec: PipelineSpec) -> tuple[Any, float]:
    start = time.perf_counter()
    engine = make_engine(spec)
    engine.session  # noqa: B018 - start the JVM now so its start-up is timed on its own
    return engine, time.perf_counter() - start


@task(name="process-parts", cache_policy=NO_CACHE)
def process_parts(engine: Any, spec: PipelineSpec, parts: list[Part], output: str, fingerprint: str) -> dict[str, Any]:
    report = process(engine, spec, parts, output, fingerprint)
    logger = get_run_logger()
    logger.info(
        "%d parts (%d resumed) in %.1f s; worker peak RSS %d MB",
        report.parts_total, report.parts_resumed, report.seconds, report.worker_maxrss_kb // 1024,
    )
    result = asdict(report)
    return result


@flow(name="curate", log_prints=True)
def curate(config: str, inputs: list[str], output: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Curate `inputs` with the recipe at `config` into `output` (shards, index.json, stats.json, ledger.parquet)."""
    spec = load_spec(config, overrides)
    parts, fingerprint = plan_inputs(spec, inputs)
    engine, startup = start_engine(spec)
    report = process_parts(engine, spec, parts, output, fingerprint)
    report["stats"]["engine_start_seconds"] = round(startup, 2)
    create_markdown_artifact(
        key="curate-summary", markdown=markdown_summary(report["stats"]), description=f"curate → {output}"
    )
    return report
