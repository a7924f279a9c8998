"""The curate/synth run as plain steps (plan → passes and reduces → merge), importable without Prefect.

`orchestration.flows` wraps these steps as Prefect tasks of a flow run; a run without a configured Prefect server
calls them directly, so it never pays Prefect's import (2.4 s idle here) or its temporary server. The inputs are
planned on a thread while the engine starts: the JVM or the worker pool comes up during the listing and hashing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestration.display import markdown_cell
from orchestration.progress import pass_progress
from orchestration.report import markdown_summary
from pipelines.execute import PassRunner
from pipelines.output import OutputLayout
from pipelines.readers.base import Part
from pipelines.run import Engine, RunReport, finish, plan, run_passes, run_reduce
from pipelines.spec import PipelineSpec


def _prefect_settings_sources() -> bool:
    """Whether anything besides the environment could configure Prefect (a profiles file, a .env, prefect.toml or
    pyproject.toml's [tool.prefect] in the working folder): only then is Prefect's own settings loader needed."""
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    if profiles.exists() or Path(".env").exists() or Path("prefect.toml").exists():
        return True
    try:
        return "[tool.prefect" in Path("pyproject.toml").read_text(errors="replace")
    except OSError:
        return False


def prefect_configured() -> bool:
    """Whether a Prefect server is configured (PREFECT_API_URL): runs then report to it; without one, `vlmdata`
    runs the same body as plain calls instead of starting Prefect's temporary server (20-45 s here). Prefect is
    imported only when a settings file could name a server (its import alone costs 2.4 s)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if not _prefect_settings_sources():
        return False
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def in_flow() -> bool:
    """Inside a Prefect flow run (never true when Prefect was not imported)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def log() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run; the standard `vlmdata` logger otherwise."""
    if in_flow():
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger("vlmdata")


def make_engine(spec: PipelineSpec) -> Engine:
    """The engine the spec names: Spark (default), Beam or local; the operators are the same objects on all."""
    if spec.engine.name == "local":
        from pipelines.engines.local import LocalEngine

        return LocalEngine(spec.engine)
    if spec.engine.name == "beam":
        from pipelines.engines.beam import BeamEngine

        return BeamEngine(spec.engine)
    from pipelines.engines.spark import SparkEngine

    return SparkEngine(spec.engine)


def plan_inputs(spec: PipelineSpec, inputs: list[str], output: str) -> tuple[list[Part], str, int]:
    """List the input parts; a rerun with the same fingerprint (config + inputs) resumes the same work folder."""
    parts, fingerprint = plan(spec, inputs)
    layout = OutputLayout(output)
    layout.check_safe(inputs)
    resumed = layout.prepare(fingerprint)
    log().info("%d input parts (%d already complete), fingerprint %s", len(parts), resumed, fingerprint)
    return parts, fingerprint, resumed


def start_engine(spec: PipelineSpec) -> tuple[Engine, float]:
    """The engine, started (Spark: the JVM; local: the worker pool with the recipe's operators imported)."""
    start = time.perf_counter()
    engine = make_engine(spec)
    getattr(engine, "session", None)  # Spark: start the JVM now so its start-up is timed on its own
    warm = getattr(engine, "warm_up", None)
    if warm is not None:
        warm(spec)
    return engine, time.perf_counter() - start


def pass_step(engine: Engine, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
    with pass_progress(runner, parts, k):
        results = engine.run_pass(runner, parts, k)
    resumed = sum(1 for r in results if r.get("resumed"))
    log().info("%s: %d parts (%d reused from a previous run)", runner.describe(k), len(parts), resumed)
    return results


def reduce_step(engine: Engine, runner: PassRunner, parts: list[Part], k: int) -> int | None:
    losers = run_reduce(engine, runner, parts, k)
    if losers is None:
        log().info("reduce-%d (%s): complete from a previous run", k, runner.group(k).name)
    else:
        log().info("reduce-%d (%s): %d rows lost to a survivor", k, runner.group(k).name, losers)
    return losers


def merge_step(runner: PassRunner, parts: list[Part], markers: list[dict[str, Any]], engine: str, seconds: float,
               fingerprint: str) -> dict[str, Any]:
    return finish(runner, parts, markers, engine, seconds, fingerprint)


def _step(name: str, label: str | None = None) -> Any:
    """The Prefect task of step `name` inside a flow run (retried, shown in the UI); the plain function outside."""
    if not in_flow():
        return globals()[name]
    from orchestration import flows

    t = flows.TASKS[name]
    return t.with_options(name=label) if label else t


def run_without_prefect(spec: PipelineSpec, inputs: list[str], output: str, lock: bool = True) -> dict[str, Any]:
    """The body the curate and synth flows share, under the output folder's lock unless the caller holds it. Called
    on its own (what `vlmdata` does when no Prefect server is configured) it runs as plain calls: no flow run, no
    Prefect server; the same passes, reduces, resume, ledger and shards, progress on the console only."""
    if not lock:
        return _curate(spec, inputs, output)
    with OutputLayout(output).lock():
        return _curate(spec, inputs, output)


def _curate(spec: PipelineSpec, inputs: list[str], output: str) -> dict[str, Any]:
    # The inputs are planned on a thread while this thread starts the engine (the JVM or the worker pool comes up
    # during the listing and hashing; Spark installs its Ctrl-C handler only from the main thread). In a flow run
    # both are Prefect tasks: planning is submitted to the flow's task runner, the engine task runs here.
    parts, fingerprint, resumed, engine, startup = _plan_while_starting(spec, inputs, output)
    try:
        runner = PassRunner.for_parts(spec, output, parts)
        start = time.perf_counter()
        markers = run_passes(
            engine, runner, parts,
            run_pass=lambda e, r, p, k: _step("pass_step", r.describe(k))(e, r, p, k),
            reduce=lambda e, r, p, k: _step("reduce_step", f"reduce-{k}: {r.group(k).name}")(e, r, p, k),
        )
        seconds = time.perf_counter() - start
        stats = _step("merge_step")(runner, parts, markers, engine.name, seconds, fingerprint)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    stats["engine_start_seconds"] = round(startup, 2)
    if in_flow():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            key="curate-summary", markdown=markdown_summary(stats), description=f"curate → {markdown_cell(output)}"
        )
    return asdict(RunReport(output, stats, len(parts), resumed, seconds, stats["worker_maxrss_kb"]))


def _plan_while_starting(spec: PipelineSpec, inputs: list[str], output: str
                         ) -> tuple[list[Part], str, int, Engine, float]:
    """`plan_inputs` on a thread (in a flow run: a task submitted to the flow's task runner) while `start_engine`
    runs here. A failure of either is raised after the other has finished (no thread writes to the output
    afterwards), and a started engine is closed when planning failed."""
    if in_flow():
        planning = _step("plan_inputs").submit(spec, inputs, output)
        return _joined(planning.result, planning.wait, lambda: _step("start_engine")(spec))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-inputs") as background:
        future: Future = background.submit(plan_inputs, spec, inputs, output)
        return _joined(future.result, lambda: wait([future]), lambda: start_engine(spec))


def _joined(planned: Callable[[], tuple[list[Part], str, int]], wait_planning: Callable[[], object],
            start: Callable[[], tuple[Engine, float]]) -> tuple[list[Part], str, int, Engine, float]:
    try:
        engine, startup = start()
    except BaseException:
        wait_planning()
        raise
    try:
        parts, fingerprint, resumed = planned()
    except BaseException:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        raise
    return parts, fingerprint, resumed, engine, startup
