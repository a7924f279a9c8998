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


def test_a_run_without_a_server_never_imports_prefect_and_starts_the_pool_while_planning(tmp_path):
    """Prefect's import alone costs 2.4 s: the plain path (CLI check, steps, progress) must not pay it. The local
    engine's workers come up (warmed) during planning and every pass runs on them."""
    _images(tmp_path / "in", 12)
    code = (
        "import json, sys\n"
        "from orchestration.steps import prefect_configured, run_without_prefect\n"
        "from pipelines.spec import PipelineSpec\n"
        f"recipe = {{**{RECIPE!r}, 'engine': {{'name': 'local', 'workers': 2}}}}\n"
        "assert not prefect_configured()\n"
        f"report = run_without_prefect(PipelineSpec.model_validate(recipe), [{str(tmp_path / 'in')!r}], "
        f"{str(tmp_path / 'out')!r})\n"
        "print(json.dumps({'prefect': 'prefect' in sys.modules, 'inputs': report['stats']['inputs'],"
        " 'start': report['stats']['engine_start_seconds']}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profiles file: nothing else can name a server
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["prefect"] is False
    assert result["inputs"] == 12 and result["start"] > 0


def test_prefect_configured_reads_a_profiles_file_when_there_is_one(tmp_path, monkeypatch):
    from orchestration.steps import _prefect_settings_sources

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    assert not _prefect_settings_sources()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text('[profiles.x]\nPREFECT_API_URL = "http://127.0.0.1:1/api"\n')
    assert _prefect_settings_sources()  # then Prefect's own loader decides, as before
    (tmp_path / "home" / "profiles.toml").unlink()
    (tmp_path / "pyproject.toml").write_text("[tool.prefect]\napi.url = 'http://127.0.0.1:1/api'\n")
    assert _prefect_settings_sources()


def test_a_planning_error_closes_the_engine_started_meanwhile(tmp_path):
    from orchestration import steps
    from pipelines.readers.base import InputError

    (tmp_path / "empty").mkdir()
    spec = PipelineSpec.model_validate({**RECIPE, "engine": {"name": "local", "workers": 1}})
    started = []
    real = steps.make_engine

    def spy(s):
        engine = real(s)
        started.append(engine)
        return engine

    steps.make_engine = spy
    try:
        try:
            run_without_prefect(spec, [str(tmp_path / "empty")], str(tmp_path / "out"))
        except InputError:
            pass
        else:
            raise AssertionError("an empty folder must be refused")
    finally:
        steps.make_engine = real
    assert started and started[0]._pool is None  # warmed during planning, then closed


def test_a_synth_verb_with_no_prefect_never_reaches_a_configured_server(tmp_path):
    """`--no-prefect` runs the verb as plain calls even where PREFECT_API_URL names a server (here one that is not
    there: a flow run would fail to reach it)."""
    _images(tmp_path / "in", 6)
    (tmp_path / "r.yaml").write_text("stages:\n  - op: decode\nengine:\n  name: local\n  workers: 1\n")
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = subprocess.run([sys.executable, "-m", "orchestration.cli", "synth", "grounding", "--input", str(tmp_path / "in"),
                          "-o", str(tmp_path / "out"), "-c", str(tmp_path / "r.yaml"), "--no-prefect"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["inputs"] == 6
