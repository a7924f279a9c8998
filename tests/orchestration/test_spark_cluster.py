"""The curate flow against a real Spark standalone cluster on loopback gives the same output as local mode."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pyspark

from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import load_spec
from tests.images import jpeg_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(REPO, "configs", "curate", "base.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(*args, log):
    home = os.path.dirname(pyspark.__file__)
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.Popen([os.path.join(home, "bin", "spark-class"), *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_curate_on_a_standalone_cluster_matches_local_mode(prefect_server, spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(24):
        (src / f"{i:02d}.jpg").write_bytes(jpeg_bytes((90, 70), seed=i % 20))  # 4 exact duplicates
        (src / f"{i:02d}.txt").write_text(f"picture number {i}")
    sets = {"reader.part_size": 5}
    spec = load_spec("configs/curate/base.yaml", sets)
    run_pipeline(spec, [str(src)], str(tmp_path / "local"), SparkEngine(spec.engine, spark))

    port, ui_master, ui_worker = _free_port(), _free_port(), _free_port()
    log = open(tmp_path / "cluster.log", "w")
    master = _spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                          "--webui-port", str(ui_master), log=log)
    worker = _spark_class("org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
                          "--cores", "2", "--memory", "2g", "--webui-port", str(ui_worker), log=log)
    try:
        deadline = time.monotonic() + 120
        alive = []
        while time.monotonic() < deadline and not alive:
            try:
                state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui_master}/json/", timeout=2))
                alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            except OSError:
                pass
            time.sleep(1)
        assert alive, open(tmp_path / "cluster.log").read()[-3000:]
        out = tmp_path / "cluster"
        cmd = [sys.executable, "-m", "orchestration.cli", "curate", "-c", BASE, "-i", str(src), "-o", str(out),
               "--master", f"spark://127.0.0.1:{port}", "--set", "reader.part_size=5"]
        env = {**os.environ, "PREFECT_API_URL": prefect_server}
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui_master}/json/", timeout=5))
        assert state["completedapps"], "the run did not go through the cluster"
    finally:
        for proc in (worker, master):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (worker, master):
            proc.wait(timeout=60)
    local_ledger = pq.read_table(tmp_path / "local" / "ledger.parquet")
    assert pq.read_table(out / "ledger.parquet").equals(local_ledger)
    assert sum(r["stage"] == "exact_dedup" for r in local_ledger.to_pylist()) == 4
    names = sorted(os.listdir(tmp_path / "local" / "shards"))
    assert names == sorted(os.listdir(out / "shards"))
    for name in names:
        assert (out / "shards" / name).read_bytes() == (tmp_path / "local" / "shards" / name).read_bytes()
