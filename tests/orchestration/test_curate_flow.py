"""The curate flow under Prefect's test harness, and the CLI a user runs (in a subprocess, killed midway)."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pyarrow.parquet as pq
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.flows import curate
from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import load_spec
from tests.images import jpeg_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(REPO, "configs", "curate", "base.yaml")
DEMO = BASE


def test_flow_runs_on_spark_and_publishes_a_summary_artifact(prefect_server, spark, tmp_path):
    from prefect.client.orchestration import get_client

    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.jpg").write_bytes(jpeg_bytes((80, 60), seed=i))
        (src / f"{i}.txt").write_text(f"picture number {i}" if i != 5 else "")
    report = curate(DEMO, [str(src)], str(tmp_path / "out"))
    stats = report["stats"]
    assert stats["status"] == {"kept": 5, "dropped": 0, "error": 1}
    assert stats["by_stage"] == {"heuristics": {"caption_empty": 1}}
    assert stats["engine_start_seconds"] >= 0 and stats["throughput_per_s"] > 0
    assert json.load(open(tmp_path / "out" / "stats.json"))["inputs"] == 6

    import asyncio

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    artifacts = [a for a in asyncio.run(latest()) if a.key == "curate-summary"]
    assert artifacts and "caption_empty" in artifacts[0].data


def test_cli_reports_bad_input_without_a_traceback(prefect_server, spark, tmp_path):
    result = CliRunner().invoke(app, ["curate", "-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - op: nope\n")
    result = CliRunner().invoke(app, ["curate", "-c", str(bad), "-i", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown operator 'nope'" in result.output


def test_cli_help_documents_every_verb():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("curate", "demo", "ops"):
        assert verb in result.output
    ops = CliRunner().invoke(app, ["ops"])
    assert "max_pixels" in ops.output and "min_side" in ops.output


def _complete_tars(shards):
    """Every .tar visible under shards/ must be complete: tarfile reads it to the end-of-archive marker."""
    names = sorted(n for n in os.listdir(shards) if n.endswith(".tar"))
    for n in names:
        with tarfile.open(shards / n) as tf:
            for m in tf:
                assert tf.extractfile(m).read() is not None
    return names


def test_killed_run_resumes_to_the_same_shards_as_an_uninterrupted_one(prefect_server, spark, demo_corpus, tmp_path):
    root, _ = demo_corpus
    inputs = []
    for name in ("a", "b"):  # two named copies: 1.7k inputs in 70 parts, plenty of time to kill midway
        os.symlink(root / "corpus", tmp_path / name)
        inputs.append(str(tmp_path / name))
    sets = {"reader.part_size": 24, "shards.max_samples": 16}
    spec = load_spec(DEMO, sets)
    reference = tmp_path / "reference"
    report = run_pipeline(spec, inputs, str(reference), SparkEngine(spec.engine, spark))
    n_parts = report.parts_total
    assert n_parts >= 60

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "orchestration.cli", "curate", "-c", BASE, "-o", str(out)]
    for i in inputs:
        cmd += ["-i", i]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts_dir = out / "_work" / "parts"
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(parts_dir.glob("*.json"))) if parts_dir.exists() else 0
        if done >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert 3 <= done < n_parts, f"the run was not killed midway ({done} of {n_parts} parts done)"
    time.sleep(1)  # let killed workers' files settle
    visible = _complete_tars(out / "shards")
    ref_bytes = {n: (reference / "shards" / n).read_bytes() for n in visible}
    assert visible and all((out / "shards" / n).read_bytes() == ref_bytes[n] for n in visible)
    assert not (out / "ledger.parquet").exists()

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    got = _complete_tars(out / "shards")
    want = sorted(n for n in os.listdir(reference / "shards") if n.endswith(".tar"))
    assert got == want
    assert all((out / "shards" / n).read_bytes() == (reference / "shards" / n).read_bytes() for n in want)
    assert pq.read_table(out / "ledger.parquet").equals(pq.read_table(reference / "ledger.parquet"))
    assert json.load(open(out / "shards" / "index.json")) == json.load(open(reference / "shards" / "index.json"))


def test_a_successful_cli_run_prints_no_traceback(tmp_path):
    """As a newcomer runs it: no Prefect server configured (a temporary one starts), the local engine, a clean screen."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.jpg").write_bytes(jpeg_bytes((80, 60), seed=i))
        (src / f"{i}.txt").write_text(f"picture number {i}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    cmd = [sys.executable, "-m", "orchestration.cli", "curate", "-i", str(src), "-o", str(tmp_path / "out"),
           "--engine", "local"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    screen = run.stdout + run.stderr
    assert run.returncode == 0, screen[-3000:]
    assert "Traceback" not in screen and "database is locked" not in screen, screen[-3000:]
    assert json.load(open(tmp_path / "out" / "stats.json"))["status"]["kept"] == 4
