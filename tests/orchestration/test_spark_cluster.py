"""The curate flow against a real Spark standalone cluster on loopback gives the same output as local mode."""

import json
import os
import re
import signal
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


def _spark_class(*args, log):
    home = os.path.dirname(pyspark.__file__)
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1"}
    with open(log, "w") as out:
        return subprocess.Popen([os.path.join(home, "bin", "spark-class"), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _logged(path, pattern, deadline):
    """The first group of ``pattern`` once the daemon's log at ``path`` shows it (the ports it bound)."""
    while time.monotonic() < deadline:
        found = re.search(pattern, open(path).read())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in the log:\n" + open(path).read()[-3000:])


def _master_state(ui):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5))


def test_curate_on_a_standalone_cluster_matches_local_mode(prefect_server, spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(24):
        (src / f"{i:02d}.jpg").write_bytes(jpeg_bytes((90, 70), seed=i % 20))  # 4 exact duplicates
        (src / f"{i:02d}.txt").write_text(f"picture number {i}")
    sets = {"reader.part_size": 5}
    spec = load_spec("configs/curate/base.yaml", sets)
    run_pipeline(spec, [str(src)], str(tmp_path / "local"), SparkEngine(spec.engine, spark))

    # Every daemon binds port 0 and the test reads the ports it got from its log: ports picked by the test and
    # bound later by a JVM could be taken in between (a CI run once read another Spark UI's page on the master's).
    master_log, worker_log = tmp_path / "master.log", tmp_path / "worker.log"
    deadline = time.monotonic() + 120
    master = _spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0",
                          "--webui-port", "0", log=master_log)
    worker = None
    try:
        url = _logged(master_log, r"Starting Spark master at (spark://127\.0\.0\.1:\d+)", deadline)
        ui = _logged(master_log, r"Successfully started service 'MasterUI' on port (\d+)", deadline)
        worker = _spark_class("org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
                              "--memory", "2g", "--webui-port", "0", log=worker_log)
        alive = []
        while time.monotonic() < deadline and not alive:
            try:
                alive = [w for w in _master_state(ui).get("workers", []) if w.get("state") == "ALIVE"]
            except (OSError, ValueError):
                pass
            time.sleep(1)
        assert alive, open(master_log).read()[-3000:] + open(worker_log).read()[-3000:]
        out = tmp_path / "cluster"
        cmd = [sys.executable, "-m", "orchestration.cli", "curate", "-c", BASE, "-i", str(src), "-o", str(out),
               "--master", url, "--set", "reader.part_size=5"]
        env = {**os.environ, "PREFECT_API_URL": prefect_server}
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert _master_state(ui)["completedapps"], "the run did not go through the cluster"
    finally:
        daemons = [proc for proc in (worker, master) if proc is not None]
        for proc in daemons:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in daemons:
            proc.wait(timeout=60)
    local_ledger = pq.read_table(tmp_path / "local" / "ledger.parquet")
    assert pq.read_table(out / "ledger.parquet").equals(local_ledger)
    assert sum(r["stage"] == "exact_dedup" for r in local_ledger.to_pylist()) == 4
    names = sorted(os.listdir(tmp_path / "local" / "shards"))
    assert names == sorted(os.listdir(out / "shards"))
    for name in names:
        assert (out / "shards" / name).read_bytes() == (tmp_path / "local" / "shards" / name).read_bytes()
