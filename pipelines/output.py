"""The output folder: shards/, index.json, stats.json, ledger.parquet, and the per-part work files behind resume."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.codec import sample_from_row, sidecar_schemas
from pipelines.schema import LEDGER_SCHEMA
from pipelines.shards import ShardConfig, ShardInfo, ShardWriter, write_index
from pipelines.stats import RunStats

OWNER_FILE = ".vlmdata-output"  # written when a run first claims a folder
LOCK_FILE = ".vlmdata-lock"
COUNTS_FILE = "counts.parquet"  # a count reduce's result, kept when a run ends
OWNED_TOP = (OWNER_FILE, LOCK_FILE, "shards", "_work", "ledger.parquet", "stats.json", "run.log",
             "rl_prompts.parquet")  # the distill verb's RL prompt set
# What the shard writer names: PART-NNNN.tar and its sidecars, and the index.
OWNED_SHARD = re.compile(r"^(\d{5}-\d{4}\.(tar|stats\.json|[A-Za-z0-9_]+\.parquet)|index\.json)$")


class OutputError(ValueError):
    """An output folder a run must not write into; the message says why and what to do."""


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class OutputLayout:
    """Paths of one output folder. Completion markers per part make a rerun skip finished parts."""

    def __init__(self, root: str):
        self.root = root
        self.shards_dir = storage.join(root, "shards")
        self.work_dir = storage.join(root, "_work")
        self.tmp_dir = storage.join(self.work_dir, "tmp")
        self.parts_dir = storage.join(self.work_dir, "parts")
        self.ledger_path = storage.join(root, "ledger.parquet")
        self.stats_path = storage.join(root, "stats.json")

    def check_safe(self, inputs: list[str]) -> None:
        """Refuse an output folder this run could harm: a file, a folder holding files vlmdata did not write, a
        folder inside an input, or one that holds an input. Raises OutputError saying which and what to do."""
        root = self.root
        local_root = storage.local_path(root)
        if local_root is None:
            return  # object stores: no local path to compare; the ownership marker still guards the folder
        out = Path(local_root).resolve()
        if out.exists() and not out.is_dir():
            raise OutputError(f"--output {root} is a file; pass a folder (new or one a previous run wrote)")
        for item in inputs:
            local_item = None if item.startswith("count:") else storage.local_path(item)
            if local_item is None:
                continue
            src = Path(local_item).resolve()
            if src == out or out in src.parents:
                raise OutputError(f"input {item} is inside the output folder {root}: a run would read its own output; "
                                  "pass an output folder outside your inputs")
            if src.is_dir() and src in out.parents:
                raise OutputError(f"the output folder {root} is inside the input {item}: the next run would read "
                                  "this run's output as input; pass an output folder outside your inputs")
        if not out.exists():
            self._claim()
            return
        entries = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
        if not entries:
            self._claim()
            return
        if entries and OWNER_FILE not in entries:
            raise OutputError(f"the output folder {root} already holds files vlmdata did not write ({_few(entries)}); "
                              "pass a new or empty folder")
        foreign = sorted(set(entries) - set(OWNED_TOP))
        if (out / "shards").is_dir():
            foreign += [f"shards/{n}" for n in sorted(os.listdir(out / "shards")) if not OWNED_SHARD.match(n)]
        if foreign:
            raise OutputError(f"the output folder {root} holds files vlmdata did not write ({_few(foreign)}); "
                              "vlmdata never deletes what it did not write: move them away or pass another folder")

    def _claim(self) -> None:
        """Mark a new or empty folder as a vlmdata output (what later runs check before deleting anything)."""
        storage.makedirs(self.root)
        owner = storage.join(self.root, OWNER_FILE)
        if not storage.exists(owner):
            storage.write_atomic(owner, b"This folder is a vlmdata output: vlmdata deletes only the files it wrote here.\n")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One run per output folder at a time: a second run is refused with a clear message (an OS lock, released
        when the run ends or its process dies)."""
        local_root = storage.local_path(self.root)
        if local_root is None:
            yield
            return
        storage.makedirs(self.root)
        path = os.path.join(local_root, LOCK_FILE)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise OutputError(f"another run is writing to {self.root} ({holder}); wait for it to finish or pass "
                                  "another --output") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self, fingerprint: str) -> int:
        """Start or resume a run; work from a run with another fingerprint (other inputs or config) is removed, and
        only what vlmdata wrote (its own file names under shards/, its merged outputs, its work folder).

        Returns the number of parts already complete.
        """
        self._claim()
        run_file = storage.join(self.work_dir, "run.json")
        previous = None
        if storage.exists(run_file):
            previous = json.loads(storage.read_bytes(run_file)).get("fingerprint")
        if previous != fingerprint:
            if storage.exists(self.shards_dir):
                for name in storage.listdir(self.shards_dir):
                    if OWNED_SHARD.match(name):
                        storage.remove(storage.join(self.shards_dir, name))
            storage.rmtree(self.work_dir)
            for path in (self.ledger_path, self.stats_path):
                storage.remove(path)
        storage.rmtree(self.tmp_dir)
        for path in (self.shards_dir, self.tmp_dir, self.parts_dir):
            storage.makedirs(path)
        storage.write_atomic(run_file, json.dumps({"fingerprint": fingerprint}).encode())
        return len([n for n in storage.listdir(self.parts_dir) if n.endswith(".json")])

    def spill_path(self, k: int, part: int) -> str:
        """Rows of `part` after pass `k` (Arrow IPC stream): the input of pass k+1, and what a resume reuses."""
        return storage.join(self.work_dir, f"pass-{k}", f"{part:05d}.arrow")

    def keys_path(self, k: int, part: int) -> str:
        """The small columns of `part` that the reduce after pass `k` needs (key, part, group, order)."""
        return storage.join(self.work_dir, f"pass-{k}", f"{part:05d}.keys.parquet")

    def losers_path(self, k: int, part: int) -> str:
        """Keys of `part` that lost the reduce after pass `k`, with their survivors."""
        return storage.join(self.work_dir, f"reduce-{k}", f"{part:05d}.losers.parquet")

    def counts_path(self, k: int) -> str:
        """Global entry counts of the count reduce after pass `k`."""
        return storage.join(self.work_dir, f"reduce-{k}", COUNTS_FILE)

    def reduce_marker(self, k: int) -> str:
        return storage.join(self.work_dir, f"reduce-{k}", "_SUCCESS")

    def drop_spills(self) -> None:
        """The end of a run: drop what the passes and reduces handed on, but keep a count reduce's result (one small
        row per entry), which the merge reads for the stats: a rerun of the finished run then only merges again."""
        for name in storage.listdir(self.work_dir):
            if name.startswith("pass-"):
                storage.rmtree(storage.join(self.work_dir, name))
            elif name.startswith("reduce-"):
                folder = storage.join(self.work_dir, name)
                items = storage.listdir(folder)
                if COUNTS_FILE not in items:
                    storage.rmtree(folder)
                    continue
                for item in items:
                    if item != COUNTS_FILE:
                        storage.rmtree(storage.join(folder, item))

    def marker_path(self, part: int) -> str:
        return storage.join(self.parts_dir, f"{part:05d}.json")

    def ledger_fragment(self, part: int) -> str:
        return storage.join(self.parts_dir, f"{part:05d}.ledger.parquet")

    def marker(self, part: int) -> dict[str, Any] | None:
        path = self.marker_path(part)
        if not storage.exists(path):
            return None
        return json.loads(storage.read_bytes(path))


def sample_of(row: dict[str, Any], schema: pa.Schema) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """A kept row as an img2dataset-style WebDataset sample, and its sidecar values (the codec decides both)."""
    return sample_from_row(row, schema)


def _status(row: dict[str, Any]) -> str:
    return "kept" if row["keep"] else "error" if row["error"] else "dropped"


class PartWriter:
    """Writes one part: its kept rows into shards, every row into its ledger fragment, then its marker."""

    def __init__(self, layout: OutputLayout, shards: ShardConfig, part: int):
        self.layout, self.part = layout, part
        self.writer = ShardWriter(
            layout.shards_dir, layout.tmp_dir, f"{part:05d}", shards.max_samples, shards.max_bytes
        )
        self.stats = RunStats()
        self.ledger: list[pa.RecordBatch] = []
        self.flow = StageFlow()

    def add(self, batch: pa.RecordBatch) -> None:
        if not self.writer.sidecar_schemas:
            self.writer.sidecar_schemas.update(sidecar_schemas(batch.schema))  # float16 embeddings stay float16
        ledger_rows = []
        for row in batch.to_pylist():
            status = _status(row)
            self.stats.add_row(status, row["stage"], row["reason"])
            self.flow.add(status, row["stage"], row.get("origin"))
            ledger_rows.append(
                {"key": row["key"], "parent": row.get("parent"), "origin": row.get("origin"), "source": row["source"],
                 "dataset": row["dataset"], "status": status, "stage": None if status == "kept" else row["stage"],
                 "reason": row["reason"]}
            )
            if status == "kept":
                self.writer.write(*sample_of(row, batch.schema))
                self.stats.add_concepts(row.get("concepts"))
        self.ledger.append(pa.RecordBatch.from_pylist(ledger_rows, schema=LEDGER_SCHEMA))

    def close(self) -> dict[str, Any]:
        shards = self.writer.close()
        self.stats.add_shards(self.writer.stats)  # kept samples are histogrammed once, by the shard writer
        frag = self.layout.ledger_fragment(self.part)
        storage.write_parquet_atomic(frag, pa.Table.from_batches(self.ledger, schema=LEDGER_SCHEMA))
        marker = {
            "part": self.part,
            "shards": [s.__dict__ for s in shards],
            "stats": self.stats.to_dict(),
            "flow": self.flow.to_dict(),
        }
        # The marker is written last: it is the proof that this part's shards and ledger are complete.
        storage.write_atomic(self.layout.marker_path(self.part), json.dumps(marker).encode())
        return marker


def write_part(batches: Iterator[pa.RecordBatch], layout: OutputLayout, shards: ShardConfig, part: int) -> dict[str, Any]:
    """Write one part's rows (in read order): kept rows into shards, every row into the ledger. Returns its marker."""
    writer = PartWriter(layout, shards, part)
    for batch in batches:
        writer.add(batch)
    return writer.close()


class StageFlow:
    """Per stage: rows that left the stream there (dropped, error, or expanded parents) and rows it generated, and
    per generating stage the status of its children; enough to give every stage's rows in, out and generated."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.sources = int(data.get("sources", 0))
        self.left: Counter[str] = Counter(data.get("left", {}))
        self.children: dict[str, Counter[str]] = {k: Counter(v) for k, v in data.get("children", {}).items()}

    def add(self, status: str, stage: str | None, origin: str | None) -> None:
        if origin is None:
            self.sources += 1
        else:
            self.children.setdefault(origin, Counter())[status] += 1
        if status != "kept":
            self.left[stage or "read"] += 1

    def merge(self, other: StageFlow) -> StageFlow:
        self.sources += other.sources
        self.left.update(other.left)
        for k, v in other.children.items():
            self.children.setdefault(k, Counter()).update(v)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "left": dict(sorted(self.left.items())),
                "children": {k: dict(sorted(v.items())) for k, v in sorted(self.children.items())}}

    def per_stage(self, stages: list[str]) -> list[dict[str, Any]]:
        """Rows in, out and generated of each stage, in recipe order (stages are told apart by name)."""
        alive = self.sources - self.left.get("read", 0)
        out = []
        for name in dict.fromkeys(stages):
            generated = sum(self.children.get(name, {}).values())
            left = self.left.get(name, 0)
            row: dict[str, Any] = {"stage": name, "rows_in": alive, "rows_out": alive - left + generated}
            if name in self.children:
                row["generated"] = generated
                row["children"] = {s: self.children[name].get(s, 0) for s in ("kept", "dropped", "error")}
            out.append(row)
            alive = row["rows_out"]
        return out


def finalize(layout: OutputLayout, part_ids: list[int], name: str, stages: list[str] | None = None) -> dict[str, Any]:
    """Merge per-part results into index.json, ledger.parquet and stats.json (streaming: memory stays flat)."""
    stats = RunStats()
    flow = StageFlow()
    shards: list[ShardInfo] = []
    missing = [p for p in part_ids if layout.marker(p) is None]
    if missing:
        raise RuntimeError(
            f"parts {missing[:10]} did not finish (no completion marker under {layout.parts_dir}); rerun the flow to resume"
        )
    with storage.atomic_target(layout.ledger_path) as tmp, storage.open_file(tmp, "wb") as f, \
            pq.ParquetWriter(f, LEDGER_SCHEMA) as ledger:
        for p in part_ids:
            marker = layout.marker(p)
            assert marker is not None
            stats.merge(RunStats(marker["stats"]))
            flow.merge(StageFlow(marker.get("flow")))
            shards.extend(ShardInfo(**s) for s in marker["shards"])
            with storage.open_file(layout.ledger_fragment(p)) as frag:
                ledger.write_table(pq.read_table(frag, schema=LEDGER_SCHEMA))
    write_index(layout.shards_dir, shards, name)
    result = stats.to_dict()
    result["inputs"] = flow.sources
    result["rows"] = sum(result["status"].values())  # source rows + generated rows
    if stages is not None:
        result["stages"] = flow.per_stage(stages)
    if flow.children:
        result["generated"] = sum(sum(v.values()) for v in flow.children.values())
    result["shards"] = {"count": len(shards), "samples": sum(s.nsamples for s in shards),
                        "bytes": sum(s.filesize for s in shards)}
    return result


def write_stats(layout: OutputLayout, stats: dict[str, Any]) -> None:
    storage.write_atomic(layout.stats_path, json.dumps(stats, indent=1, sort_keys=True).encode())
