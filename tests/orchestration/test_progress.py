"""Progress of a pass, read from the files workers finish: rows done of the total, rate, ETA; and in Prefect."""

from __future__ import annotations

import pytest

from orchestration.flows import curate
from pipelines.engines.local import LocalEngine
from pipelines.execute import PassRunner
from pipelines.progress import PassWatcher
from pipelines.run import plan
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import _images


def test_watcher_counts_rows_of_finished_parts(tmp_path):
    _images(tmp_path / "in", 20)
    spec = PipelineSpec.model_validate({"reader": {"part_size": 6}, "stages": [{"op": "decode"}],
                                        "engine": {"name": "local", "workers": 0}})
    parts, fingerprint = plan(spec, [str(tmp_path / "in")])
    runner = PassRunner.for_parts(spec, str(tmp_path / "out"), parts)
    runner.layout.prepare(fingerprint)
    seen = []
    watcher = PassWatcher(runner, parts, 0, "pass-0", seen.append, interval=0.01)
    assert watcher.snapshot().rows_done == 0 and watcher.snapshot().rows_total == 20
    with watcher:
        LocalEngine(spec.engine).run_pass(runner, parts[:2], 0)
        mid = watcher.snapshot()
        LocalEngine(spec.engine).run_pass(runner, parts[2:], 0)
    assert (mid.parts_done, mid.rows_done) == (2, 12) and mid.eta is not None
    assert seen[-1].rows_done == 20 and seen[-1].fraction == 1.0 and seen[-1].parts_done == len(parts) == 4
    assert "20/20 rows" in seen[-1].line()


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_publishes_a_progress_artifact_per_pass(tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client

    _images(tmp_path / "in", 8)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - op: decode\n  - op: exact_dedup\nengine:\n  name: local\n  workers: 1\n")
    curate(str(recipe), [str(tmp_path / "in")], str(tmp_path / "out"))

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    progress = {a.key: a for a in asyncio.run(latest()) if a.key and a.key.startswith("progress-pass-")}
    assert {"progress-pass-0", "progress-pass-1"} <= set(progress)
    assert all(float(a.data) == 100.0 for a in progress.values())


@pytest.mark.usefixtures("prefect_server")
def test_a_synth_verb_with_prefect_runs_as_the_synth_flow(tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from typer.testing import CliRunner

    from orchestration.cli import app

    _images(tmp_path / "in", 6)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - op: decode\nengine:\n  name: local\n  workers: 1\n")
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["synth", "grounding", "--input", str(tmp_path / "in"), "-o", str(out),
                                    "-c", str(recipe), "--prefect"])
    assert done.exit_code == 0, done.output

    async def runs():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["synth"])))

    mine = [r for r in asyncio.run(runs()) if r.parameters.get("output") == str(out)]
    assert len(mine) == 1 and mine[0].parameters["verb"] == "grounding" and mine[0].state.is_completed()


@pytest.mark.usefixtures("prefect_server")
def test_in_a_flow_run_the_engine_starts_while_the_inputs_are_planned(tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    recipe = tmp_path / "r.yaml"
    recipe.write_text("reader:\n  format: tests.ops:SlowPlanSource\nengine:\n  name: local\n  workers: 1\n")
    out = tmp_path / "out"
    report = curate(str(recipe), ["slowplan:5"], str(out))
    assert report["stats"]["status"]["kept"] == 5

    async def task_runs():
        async with get_client() as client:
            runs = [r for r in await client.read_flow_runs() if r.parameters.get("output") == str(out)]
            assert len(runs) == 1
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])))

    by_name = {r.name.rsplit("-", 1)[0]: r for r in asyncio.run(task_runs())}
    plan, start = by_name["plan-inputs"], by_name["start-engine"]
    # planning sleeps a second; the engine task starts before it ends and planning starts before the engine is up
    assert start.start_time < plan.end_time and plan.start_time < start.end_time
