"""Statistics of each shard, in parallel: its sidecar when one is there, else one streaming read of the tar;
plus the first few samples of the shards the browser shows."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from orchestration.shardstats.browse import browse_record
from orchestration.shardstats.config import InspectConfig
from pipelines.codec import READ_ERRORS, TarSamples, open_url
from pipelines.shard_stats import ShardStats, sidecar_path


@dataclass(frozen=True)
class ShardTask:
    url: str
    browse: int  # samples of this shard the browser shows
    use_sidecar: bool
    thumb_px: int
    max_json_chars: int


def _read_sidecar(url: str) -> ShardStats | None:
    try:
        with fsspec.open(sidecar_path(url), "r") as f:
            return ShardStats.from_dict(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or another version: read the tar instead


def _local_size(url: str) -> int | None:
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        try:
            return os.path.getsize(path)
        except OSError:
            return None
    return None


def inspect_shard(task: ShardTask) -> dict[str, Any]:
    """One shard's result: {"url", "source": sidecar|scan, "status": ok|truncated|unreadable, "error", "filesize",
    "stats": ShardStats dict, "samples": browse records}."""
    stats = _read_sidecar(task.url) if task.use_sidecar else None
    source = "sidecar" if stats is not None else "scan"
    samples: list[dict[str, Any]] = []
    error: str | None = None
    scanning = stats is None
    if scanning:
        stats = ShardStats()
    assert stats is not None
    if scanning or task.browse:
        try:
            with open_url(task.url) as stream:
                reader = TarSamples(stream, limit=None if scanning else task.browse)
                for sample in reader:
                    try:
                        fields = stats.add(sample) if scanning else _fields(sample)
                        if len(samples) < task.browse:
                            samples.append(browse_record(sample, fields, task.url, task.thumb_px, task.max_json_chars))
                    except Exception as exc:  # noqa: BLE001 - one odd sample must not hide the rest of the shard
                        stats.problem("sample_unreadable", str(sample.get("__key__")), f"{type(exc).__name__}: {exc}")
                error = reader.error
                if error and reader.lost:
                    error += f" (sample {reader.lost!r} lost a member)"
                for problem in reader.problems if scanning else ():
                    stats.problem("tar_member_odd", os.path.basename(task.url), problem)
        except READ_ERRORS as exc:
            error = f"cannot open: {type(exc).__name__}: {exc}"
    status = "ok"
    if error:
        status = "unreadable" if error.startswith("cannot open") or not stats.nsamples else "truncated"
        stats.problem("unreadable_shard" if status == "unreadable" else "truncated_tar", os.path.basename(task.url), error)
    return {
        "url": task.url,
        "source": source,
        "status": status,
        "error": error,
        "filesize": _local_size(task.url),
        "stats": stats.to_dict(),
        "samples": samples,
    }


def _fields(sample: dict[str, Any]) -> dict[str, Any] | None:
    try:
        fields = json.loads(sample["json"]) if "json" in sample else None
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def browse_plan(nshards: int, cfg: InspectConfig) -> list[int]:
    """Samples to browse per shard: `browse_per_shard` from shards spread evenly, `browse_max` in all."""
    plan = [0] * nshards
    if not nshards or not cfg.browse_per_shard or not cfg.browse_max:
        return plan
    wanted = min(nshards, math.ceil(cfg.browse_max / cfg.browse_per_shard))
    picks = {round(i * (nshards - 1) / max(wanted - 1, 1)) for i in range(wanted)}
    left = cfg.browse_max
    for i in sorted(picks):
        plan[i] = min(cfg.browse_per_shard, left)
        left -= plan[i]
    return plan


def scan_shards(urls: list[str], cfg: InspectConfig, browse: bool = True) -> Iterator[dict[str, Any]]:
    """Each shard's result, in completion order; shards are read by `cfg.workers` processes."""
    plan = browse_plan(len(urls), cfg) if browse else [0] * len(urls)
    tasks = [ShardTask(u, n, cfg.use_sidecars, cfg.thumb_px, cfg.max_json_chars) for u, n in zip(urls, plan, strict=True)]
    workers = min(cfg.workers, len(tasks))
    if workers <= 1:
        yield from map(inspect_shard, tasks)
        return
    chunk = max(1, min(8, len(tasks) // (workers * 16)))
    with multiprocessing.get_context(cfg.start_method).Pool(workers) as pool:
        yield from pool.imap_unordered(inspect_shard, tasks, chunksize=chunk)
