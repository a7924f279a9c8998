"""Prefect flows: `curate` = plan → one task per pass and per reduce (retried, resumable) → merge → summary artifact.

The steps themselves live in `orchestration.steps` (no Prefect import): a run without a configured server calls them
as plain functions; this module, imported only for flow runs and deployments, makes them Prefect tasks.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from orchestration import steps
from orchestration.steps import make_engine, prefect_configured, run_without_prefect
from pipelines.spec import load_spec

__all__ = ["TASKS", "curate", "make_engine", "prefect_configured", "run_without_prefect", "synth"]

TASK_RETRIES = 2
RETRY_DELAY_S = 2

_RETRIED = {"retries": TASK_RETRIES, "retry_delay_seconds": RETRY_DELAY_S}
# The steps of `steps._curate` as Prefect tasks (what `steps._step` hands out inside a flow run).
TASKS = {
    "plan_inputs": task(steps.plan_inputs, name="plan-inputs", cache_policy=NO_CACHE),
    "start_engine": task(steps.start_engine, name="start-engine", cache_policy=NO_CACHE),
    "pass_step": task(steps.pass_step, name="pass", cache_policy=NO_CACHE, **_RETRIED),
    "reduce_step": task(steps.reduce_step, name="reduce", cache_policy=NO_CACHE, **_RETRIED),
    "merge_step": task(steps.merge_step, name="merge-outputs", cache_policy=NO_CACHE),
}


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
