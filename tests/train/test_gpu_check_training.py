"""scripts/gpu_check_training.py is no dead code: its --cpu-smoke mode runs the packed = one-by-one checks on every
backend this machine has and a short real training run, and reports them."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "gpu_check_training.py"


def test_cpu_smoke_checks_every_backend_and_reports_speed(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check_training", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--cpu-smoke"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    checks = {c["backend"]: c for c in report["checks"]}
    assert {"sdpa", "flex"} <= set(checks) and all(c["ok"] and c["rows"] >= 2 for c in checks.values())
    speed = report["speed"]
    assert speed["steps"] == 3 and speed["tokens_per_s"] > 0 and speed["packing_efficiency"] > 0.5
    assert speed["mfu"] is None  # no GPU peak on CPU: not a GPU figure
