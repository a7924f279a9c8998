"""`vlmdata curate` without a configured Prefect server runs the flow's body as plain calls: no temporary server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestration.flows import run_without_prefect
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import _images

RECIPE = {"reader": {"part_size": 6}, "stages": [{"op": "decode"}, {"op": "exact_dedup"}],
          "engine": {"name": "local", "workers": 0}}


def test_plain_run_writes_the_same_outputs_as_a_flow_would(tmp_path):
    _images(tmp_path / "in", 14)
    report = run_without_prefect(PipelineSpec.model_validate(RECIPE), [str(tmp_path / "in")], str(tmp_path / "out"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert report["stats"]["inputs"] == stats["inputs"] == 14
    assert (tmp_path / "out" / "ledger.parquet").exists()
    assert sum(s["nsamples"] for s in json.loads((tmp_path / "out" / "shards" / "index.json").read_text())["shardlist"]) \
        == stats["status"]["kept"]


def test_cli_without_a_server_starts_none(tmp_path):
    import yaml

    _images(tmp_path / "in", 10)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"name": "t", **RECIPE}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # where a temporary server would keep its database
    out = subprocess.run([sys.executable, "-m", "orchestration.cli", "curate", "-i", str(tmp_path / "in"),
                          "-o", str(tmp_path / "out"), "-c", str(tmp_path / "r.yaml")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["inputs"] == 10
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()
