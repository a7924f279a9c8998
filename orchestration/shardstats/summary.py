"""Merge per-shard results into one summary (counts, distributions, task mix, problems) plus the run's own
stats.json/ledger (kept/dropped/error by stage, concepts); memory holds merged histograms, not samples."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec

from orchestration.shardstats.config import InspectConfig
from orchestration.shardstats.scan import scan_shards
from orchestration.shardstats.sources import resolve
from pipelines.shard_stats import ShardStats
from pipelines.stats import RunStats, ValueHistogram

QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class Report:
    """`data` is what `--json` prints; `samples` are the browser's records (thumbnails inlined)."""

    data: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


def describe(hist: ValueHistogram) -> dict[str, Any]:
    out = hist.to_dict()
    for q in QUANTILES:
        out[f"p{int(q * 100)}"] = hist.quantile(q)
    return out


def _load_json(url: str) -> dict[str, Any] | None:
    try:
        with fsspec.open(url, "r") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _ledger_counts(url: str) -> RunStats | None:
    """kept/dropped/error by stage and reason from ledger.parquet, grouped by Arrow (no Python loop over rows)."""
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as f:
            table = pq.read_table(f, columns=["status", "stage", "reason"])
    except (OSError, ValueError, KeyError):
        return None
    stats = RunStats()
    grouped = table.group_by(["status", "stage", "reason"]).aggregate([("status", "count")])
    for row in grouped.to_pylist():
        stats.status[row["status"]] += row["status_count"]
        if row["status"] != "kept":
            prefix = (row["reason"] or "unknown").split(":", 1)[0]
            stats.by_stage.setdefault(row["stage"] or "unknown", Counter())[prefix] += row["status_count"]
    return stats


def run_info(runs: list[str], top: int) -> dict[str, Any] | None:
    """What the flows that wrote these folders recorded: status and reasons per stage, concepts, throughput."""
    if not runs:
        return None
    merged = RunStats()
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    found, extra = False, {}
    for run in runs:
        stats = _load_json(f"{run}/stats.json")
        if stats is not None and "status" in stats:
            merged.merge(RunStats(stats))
            found = True
            concepts = stats.get("concepts") or {}
            before.update(concepts.get("before") or {})
            after.update(concepts.get("after") or {})
            for key in ("engine", "seconds", "throughput_per_s"):
                if key in stats and len(runs) == 1:
                    extra[key] = stats[key]
        elif (ledger := _ledger_counts(f"{run}/ledger.parquet")) is not None:
            merged.merge(ledger)
            found = True
    if not found:
        return None
    counts = merged.to_dict()
    out: dict[str, Any] = {"folders": runs, "status": counts["status"], "by_stage": counts["by_stage"], **extra}
    out["inputs"] = sum(counts["status"].values())
    if before or after:
        out["concepts"] = {"before": before.most_common(top), "after": after.most_common(top),
                           "distinct_before": len(before), "distinct_after": len(after)}
    return out


class SummaryBuilder:
    """Folds shard results in as they arrive; keeps merged stats, one small row per shard and ≤ browse_max samples."""

    def __init__(self, cfg: InspectConfig):
        self.cfg = cfg
        self.total = ShardStats()
        self.rows: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []

    def add(self, result: dict[str, Any]) -> None:
        stats = ShardStats(result["stats"])
        self.total.merge(stats)
        self.rows.append({
            "url": result["url"], "nsamples": stats.nsamples, "bytes": stats.bytes, "filesize": result["filesize"],
            "source": result["source"], "status": result["status"], "error": result["error"],
        })
        room = self.cfg.browse_max - len(self.samples)
        self.samples.extend(result["samples"][: max(room, 0)])

    def build(self, inputs: list[str], filesizes: dict[str, int], run: dict[str, Any] | None) -> Report:
        order = {row["url"]: i for i, row in enumerate(sorted(self.rows, key=lambda r: r["url"]))}
        rows = sorted(self.rows, key=lambda r: order[r["url"]])
        prefix = os.path.commonprefix([r["url"] for r in rows]).rpartition("/")[0]
        for row in rows:
            row["name"] = row["url"][len(prefix) + 1 :] if prefix else row["url"]
            if row["filesize"] is None:
                row["filesize"] = filesizes.get(row["url"])
        total = self.total
        status = Counter(row["status"] for row in rows)
        data: dict[str, Any] = {
            "inputs": inputs,
            "totals": {
                "shards": len(rows),
                "samples": total.nsamples,
                "bytes": total.bytes,
                "filesize": sum(r["filesize"] or 0 for r in rows),
                "from_sidecar": sum(r["source"] == "sidecar" for r in rows),
                "scanned": sum(r["source"] == "scan" for r in rows),
                "truncated": status.get("truncated", 0),
                "unreadable": status.get("unreadable", 0),
            },
            "problems": dict(sorted(total.problems.items())),
            "problem_examples": total.examples,
            "tasks": dict(total.tasks.most_common()),
            "extensions": dict(total.extensions.most_common()),
            "sizes": {k: describe(h) for k, h in total.sizes.items()},
            "scores": {k: describe(h) for k, h in sorted(total.fields.items())},
            "shards": rows,
        }
        if total.fields_dropped:
            data["scores_dropped"] = total.fields_dropped
        if run is not None:
            data["run"] = run
        samples = sorted(self.samples, key=lambda s: order.get(s["shard"], 0))
        return Report(data, samples)


def summarise(
    inputs: list[str],
    cfg: InspectConfig | None = None,
    browse: bool = False,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> Report:
    """Resolve the inputs, read every shard's statistics (sidecar or scan, in parallel) and merge them.

    Raises `SourceError` when an input names no shards.
    """
    cfg = cfg or InspectConfig()
    sources = resolve(inputs)
    builder = SummaryBuilder(cfg)
    for result in scan_shards(sources.shards, cfg, browse=browse):
        builder.add(result)
        if on_shard is not None:
            on_shard(result)
    return builder.build(inputs, sources.filesizes, run_info(sources.runs, cfg.top_concepts))
