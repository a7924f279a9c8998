"""After a distillation run: the RL prompt set (`OUT/rl_prompts.parquet`) and the difficulty report, derived
from what the run recorded (the ledger: every prompt and every teacher sample, a sample's parent its prompt) and
the prompt files themselves. Engines are not involved, so all three give the same set."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.readers.prompts import _records
from synth.distill.checks import TIERS, UNSOLVED, UNVERIFIABLE, counts_as_pass, is_verifiable, tier

RL_FILE = "rl_prompts.parquet"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # HF datasets' Image layout (verl reads it)
RL_SCHEMA = pa.schema([
    pa.field("key", pa.string()),  # the prompt's key in the ledger
    pa.field("id", pa.string()),  # the prompt set's `id`
    pa.field("question", pa.string()),
    pa.field("images", pa.list_(IMAGE)),
    pa.field("answer", pa.string()),
    pa.field("domain", pa.string()),
    pa.field("k", pa.int32()),
    pa.field("passed", pa.int32()),
    pa.field("pass_at_k", pa.float32()),
    pa.field("difficulty", pa.string()),
    pa.field("source", pa.string()),
    pa.field("dataset", pa.string()),
])


def _split_source(source: str) -> tuple[str, int] | None:
    path, sep, row = source.rpartition("#row=")
    return (path, int(row)) if sep and row.isdigit() else None


def _images(refs: list[Any], folder: str) -> list[dict[str, Any]] | None:
    """Every image the prompt names, read; None when one of them cannot be (a prompt without an image its question
    is about would not say what it asks)."""
    out = []
    for ref in refs:
        if not isinstance(ref, str):
            return None
        path = ref if storage.is_url(ref) or ref.startswith("/") else storage.join(folder, ref)
        try:
            out.append({"bytes": storage.read_bytes(path), "path": ref})
        except Exception:  # noqa: BLE001 - a missing or unreadable file: the prompt is left out and counted
            return None
    return out


def build_rl_set(output: str, tiers: tuple[tuple[str, float], ...] = TIERS, too_easy: float = 1.0,
                 origin: str = "distill") -> dict[str, Any]:
    """Write `OUT/rl_prompts.parquet` (verifiable prompts whose samples were generated, with pass@k and tier)
    and return the difficulty report: prompts per tier, too easy, unsolved, unverifiable, teacher errors."""
    ledger = pq.read_table(storage.join(output, "ledger.parquet")).to_pylist()
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ledger:
        if r["origin"] == origin and r["parent"]:
            children[r["parent"]].append(r)
    prompts = [r for r in ledger if r["origin"] is None and r["parent"] is None]
    records: dict[str, dict[int, dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    report: Counter[str] = Counter()
    for p in prompts:
        if p["status"] == "error" or p["reason"] is None or not str(p["reason"]).startswith("expanded:"):
            report["teacher_error" if p["stage"] == origin else "not_read"] += 1
            continue
        where = _split_source(p["source"] or "")
        if where is None:
            report["not_read"] += 1
            continue
        path, row = where
        if path not in records:
            records[path] = {i: rec for i, rec, _ in _records(path) if rec is not None}
        rec = records[path].get(row)
        if rec is None:
            report["not_read"] += 1
            continue
        samples = children.get(p["key"], [])
        verifiable = is_verifiable(rec.get("domain"), None if rec.get("answer") is None else str(rec.get("answer")))
        passed = sum(counts_as_pass(s["status"], s["reason"]) for s in samples)
        pak = passed / len(samples) if verifiable and samples else None
        level = tier(pak, tiers)
        report[level] += 1
        if pak is not None and pak >= too_easy:
            report["too_easy"] += 1
        if not verifiable or not samples:
            continue
        refs = rec.get("images", rec.get("image"))
        refs = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
        images = _images(refs, storage.dirname(path))
        if images is None:
            report["images_unreadable"] += 1
            continue
        rows.append({"key": p["key"], "id": None if rec.get("id") is None else str(rec.get("id")),
                     "question": rec.get("question"), "images": images,
                     "answer": str(rec.get("answer")), "domain": str(rec.get("domain")), "k": len(samples),
                     "passed": passed, "pass_at_k": pak, "difficulty": level, "source": p["source"],
                     "dataset": p["dataset"]})
    storage.write_parquet_atomic(storage.join(output, RL_FILE), pa.Table.from_pylist(rows, schema=RL_SCHEMA))
    tiers_seen = {name: report.get(name, 0) for name, _ in tiers}
    return {"prompts": len(prompts), "rl_prompts": len(rows), "tiers": {**tiers_seen, UNSOLVED: report[UNSOLVED]},
            "too_easy": report["too_easy"], "unsolved": report[UNSOLVED], "unverifiable": report[UNVERIFIABLE],
            "teacher_errors": report["teacher_error"], "not_read": report["not_read"],
            "images_unreadable": report["images_unreadable"]}


def add_to_stats(output: str, section: str, values: dict[str, Any]) -> None:
    """Put `values` under `section` of OUT/stats.json (the run summary researchers open)."""
    path = storage.join(output, "stats.json")
    stats = json.loads(storage.read_bytes(path))
    stats[section] = values
    storage.write_atomic(path, json.dumps(stats, indent=1, sort_keys=True).encode())
