"""`vlmdata stats` on a real output folder: tables, --json with the run's reasons and concepts, ledger fallback."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from orchestration.cli import app
from tests.orchestration.test_shardstats_scan import write_shards

RUN_STATS = {
    "status": {"kept": 20, "dropped": 5, "error": 2},
    "by_stage": {"heuristics": {"too_small": 4, "aspect_ratio": 1}, "decode": {"truncated": 2}},
    "histograms": {},
    "concepts": {"before": {"dog": 50, "cat": 30, "axolotl": 2}, "after": {"dog": 10, "cat": 10, "axolotl": 2}},
}


def make_run(root, stats=True):
    paths = write_shards(root / "shards", nshards=2, per_shard=10)
    if stats:
        (root / "stats.json").write_text(json.dumps(RUN_STATS))
    ledger = [{"key": f"k{i}", "source": "s", "dataset": "d", "status": st, "stage": stage, "reason": reason}
              for i, (st, stage, reason) in enumerate(
                  [("kept", None, None)] * 20 + [("dropped", "heuristics", "too_small")] * 4
                  + [("dropped", "exact_dedup", "exact_duplicate:k1")] + [("error", "decode", "truncated")] * 2)]
    pq.write_table(pa.Table.from_pylist(ledger), root / "ledger.parquet")
    return paths


def test_json_summary_of_a_run_folder(tmp_path):
    make_run(tmp_path)
    result = CliRunner().invoke(app, ["stats", str(tmp_path), "--json", "--workers", "1", "--top-concepts", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["samples"] == 20 and data["totals"]["shards"] == 2
    assert data["run"]["status"] == {"kept": 20, "dropped": 5, "error": 2}
    assert data["run"]["by_stage"]["heuristics"] == {"aspect_ratio": 1, "too_small": 4}
    assert data["run"]["concepts"]["before"] == [["dog", 50], ["cat", 30]]
    assert data["run"]["concepts"]["distinct_before"] == 3
    assert set(data["tasks"]) == {"caption", "grounding", "ocr", "cot", "gui"}
    assert "clip_score" in data["scores"]


def test_tables_name_every_part(tmp_path):
    make_run(tmp_path)
    result = CliRunner().invoke(app, ["stats", str(tmp_path), "--workers", "2"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("2 shards", "00000.tar", "too_small", "distributions", "clip_score", "task mix", "grounding",
                 "top concepts", "axolotl"):
        assert text in result.output, text


def test_ledger_is_read_when_stats_json_is_missing(tmp_path):
    make_run(tmp_path, stats=False)
    result = CliRunner().invoke(app, ["stats", str(tmp_path), "--json", "--workers", "1"])
    data = json.loads(result.stdout)
    assert data["run"]["status"] == {"kept": 20, "dropped": 5, "error": 2}
    assert data["run"]["by_stage"]["exact_dedup"] == {"exact_duplicate": 1}  # the reason's prefix is counted
    assert "concepts" not in data["run"]


def test_no_shards_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "no such shard" in result.output
