"""Scheduled deployments served by `vlmdata serve`, and Prefect retrying a pass that failed as a whole."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import yaml

from orchestration.flows import curate
from tests.images import jpeg_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _folder(path, n=6):
    path.mkdir()
    for i in range(n):
        (path / f"{i}.jpg").write_bytes(jpeg_bytes((80, 60), seed=i))
        (path / f"{i}.txt").write_text(f"picture number {i}")
    return path


def _client_call(fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def test_serve_registers_the_schedule_and_runs_a_deployment_triggered_by_name(prefect_server, tmp_path):
    from prefect.deployments import run_deployment

    src = _folder(tmp_path / "in")
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"deployments": [{
        "name": "tiny-nightly", "flow": "curate", "cron": "30 2 * * *",
        "parameters": {"config": f"{REPO}/configs/curate/base.yaml", "inputs": [str(src)], "output": str(tmp_path / "out")},
    }]}))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "serve", "-c", str(config)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deployment = None
        deadline = time.monotonic() + 180
        while deployment is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                deployment = _client_call(lambda c: c.read_deployment_by_name("curate/tiny-nightly"))
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(1)
        assert deployment is not None, open(tmp_path / "serve.log").read()[-3000:]
        assert [s.schedule.cron for s in deployment.schedules] == ["30 2 * * *"]
        run = run_deployment("curate/tiny-nightly", timeout=400, poll_interval=2)
        assert run.state.is_completed(), open(tmp_path / "serve.log").read()[-3000:]
        assert (tmp_path / "out" / "ledger.parquet").exists() and (tmp_path / "out" / "shards" / "index.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_prefect_retries_a_pass_that_failed_as_a_whole(prefect_server, tmp_path):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    src = _folder(tmp_path / "in")
    flag = tmp_path / "failed-once"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "reader": {"part_size": 3},
        "stages": [{"op": "decode"}, {"op": "tests.ops:FailSetupOnce", "flag": str(flag)}, {"op": "exact_dedup"}],
        "engine": {"name": "beam"},  # Beam's DirectRunner does not retry bundles: Prefect's task retry must
    }))
    state = curate(str(recipe), [str(src)], str(tmp_path / "out"), return_state=True)
    assert state.is_completed() and flag.exists()
    assert state.result()["stats"]["status"] == {"kept": 6, "dropped": 0, "error": 0}
    flow_run_id = state.state_details.flow_run_id
    task_runs = _client_call(
        lambda c: c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    )
    first_pass = [t for t in task_runs if t.name.startswith("pass-0")]
    assert first_pass and first_pass[0].run_count == 2 and first_pass[0].state.is_completed()
