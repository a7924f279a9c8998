"""Prefect flows: `curate` = plan → one task per pass and per reduce (retried, resumable) → merge → summary artifact."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError

from orchestration.progress import pass_progress
from orchestration.report import markdown_summary
from pipelines.execute import PassRunner
from pipelines.output import OutputLayout
from pipelines.readers.base import Part
from pipelines.run import Engine, RunReport, finish, plan, run_reduce
from pipelines.spec import PipelineSpec, load_spec

TASK_RETRIES = 2
RETRY_DELAY_S = 2


def prefect_configured() -> bool:
    """Whether a Prefect server is configured (PREFECT_API_URL): runs then report to it; without one, `vlmdata`
    runs the same body as plain calls instead of starting Prefect's temporary server (20-45 s here)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _in_flow() -> bool:
    return FlowRunContext.get() is not None


def _log() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # run without Prefect: the same lines on the standard logger
        return logging.getLogger("vlmdata")


def _step(t: Any, name: str | None = None) -> Any:
    """A Prefect task inside a flow run (retried, shown in the UI); its plain function outside one."""
    if not _in_flow():
        return t.fn
    return t.with_options(name=name) if name else t


def make_engine(spec: PipelineSpec) -> Engine:
    """The engine the spec names: Spark (default) or Beam; the operators are the same objects on both."""
    if spec.engine.name == "local":
        from pipelines.engines.local import LocalEngine

        return LocalEngine(spec.engine)
    if spec.engine.name == "beam":
        from pipelines.engines.beam import BeamEngine

        return BeamEngine(spec.engine)
    from pipelines.engines.spark import SparkEngine

    return SparkEngine(spec.engine)


@task(name="plan-inputs", cache_policy=NO_CACHE)
def plan_inputs(spec: PipelineSpec, inputs: list[str], output: str) -> tuple[list[Part], str, int]:
    """List the input parts; a rerun with the same fingerprint (config + inputs) resumes the same work folder."""
    parts, fingerprint = plan(spec, inputs)
    layout = OutputLayout(output)
    layout.check_safe(inputs)
    resumed = layout.prepare(fingerprint)
    _log().info("%d input parts (%d already complete), fingerprint %s", len(parts), resumed, fingerprint)
    return parts, fingerprint, resumed


@task(name="start-engine", cache_policy=NO_CACHE)
def start_engine(spec: PipelineSpec) -> tuple[Engine, float]:
    start = time.perf_counter()
    engine = make_engine(spec)
    getattr(engine, "session", None)  # Spark: start the JVM now so its start-up is timed on its own
    return engine, time.perf_counter() - start


@task(cache_policy=NO_CACHE, retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def pass_task(engine: Engine, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
    with pass_progress(runner, parts, k):
        results = engine.run_pass(runner, parts, k)
    resumed = sum(1 for r in results if r.get("resumed"))
    _log().info("%s: %d parts (%d reused from a previous run)", runner.describe(k), len(parts), resumed)
    return results


@task(cache_policy=NO_CACHE, retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def reduce_task(engine: Engine, runner: PassRunner, parts: list[Part], k: int) -> int | None:
    losers = run_reduce(engine, runner, parts, k)
    logger = _log()
    if losers is None:
        logger.info("reduce-%d (%s): complete from a previous run", k, runner.group(k).name)
    else:
        logger.info("reduce-%d (%s): %d rows lost to a survivor", k, runner.group(k).name, losers)
    return losers


@task(name="merge-outputs", cache_policy=NO_CACHE)
def merge_task(runner: PassRunner, parts: list[Part], markers: list[dict[str, Any]], engine: str, seconds: float,
               fingerprint: str) -> dict[str, Any]:
    return finish(runner, parts, markers, engine, seconds, fingerprint)


@flow(name="curate", log_prints=True)
def curate(config: str, inputs: list[str], output: str, overrides: dict[str, Any] | None = None,
           lock: bool = True) -> dict[str, Any]:
    """Curate `inputs` with the recipe at `config` into `output` (shards, index.json, stats.json, ledger.parquet).
    `lock`: take the output folder's lock (False when the caller already holds it)."""
    return run_without_prefect(load_spec(config, overrides), inputs, output, lock)


@flow(name="synth", log_prints=True)
def synth(verb: str, config: str, inputs: list[str], output: str, overrides: dict[str, Any] | None = None,
          lock: bool = True) -> dict[str, Any]:
    """A generating recipe (`vlmdata synth VERB`): the same passes, reduces, resume, ledger and shards as curate."""
    return run_without_prefect(load_spec(config, overrides), inputs, output, lock)


def run_without_prefect(spec: PipelineSpec, inputs: list[str], output: str, lock: bool = True) -> dict[str, Any]:
    """The body the curate and synth flows share, under the output folder's lock unless the caller holds it. Called
    on its own (what `vlmdata` does when no Prefect server is configured) it runs as plain calls: no flow run, no
    Prefect server; the same passes, reduces, resume, ledger and shards, progress on the console only."""
    if not lock:
        return _curate(spec, inputs, output)
    with OutputLayout(output).lock():
        return _curate(spec, inputs, output)


def _curate(spec: PipelineSpec, inputs: list[str], output: str) -> dict[str, Any]:
    parts, fingerprint, resumed = _step(plan_inputs)(spec, inputs, output)
    engine, startup = _step(start_engine)(spec)
    runner = PassRunner.for_parts(spec, output, parts)
    start = time.perf_counter()
    markers: list[dict[str, Any]] = []
    for k in range(runner.n_passes):
        markers = _step(pass_task, runner.describe(k))(engine, runner, parts, k)
        if k < runner.n_passes - 1:
            _step(reduce_task, f"reduce-{k}: {runner.group(k).name}")(engine, runner, parts, k)
    seconds = time.perf_counter() - start
    stats = _step(merge_task)(runner, parts, markers, engine.name, seconds, fingerprint)
    close = getattr(engine, "close", None)
    if close is not None:
        close()
    stats["engine_start_seconds"] = round(startup, 2)
    if _in_flow():
        create_markdown_artifact(
            key="curate-summary", markdown=markdown_summary(stats), description=f"curate → {output}"
        )
    return asdict(RunReport(output, stats, len(parts), resumed, seconds, stats["worker_maxrss_kb"]))
