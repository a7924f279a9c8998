"""The output folder: shards/, index.json, stats.json, ledger.parquet, and the per-part work files behind resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.schema import LEDGER_SCHEMA, WORKING_COLUMNS
from pipelines.shards import EMBEDDING_COLUMNS, ShardConfig, ShardInfo, ShardWriter, write_index
from pipelines.stats import RunStats

# Fields of a record that are not copied into the sample's .json (stored elsewhere or engine-only).
_NOT_IN_JSON = {"image", "text", "meta", "part", "ord", "keep", "error", "stage", "reason", *EMBEDDING_COLUMNS,
                *WORKING_COLUMNS}


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

    def prepare(self, fingerprint: str) -> int:
        """Start or resume a run; work from a run with another fingerprint (other inputs or config) is wiped.

        Returns the number of parts already complete.
        """
        run_file = storage.join(self.work_dir, "run.json")
        previous = None
        if storage.exists(run_file):
            previous = json.loads(storage.read_bytes(run_file)).get("fingerprint")
        if previous != fingerprint:
            for path in (self.shards_dir, self.work_dir):
                storage.rmtree(path)
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
        return storage.join(self.work_dir, f"reduce-{k}", "counts.parquet")

    def reduce_marker(self, k: int) -> str:
        return storage.join(self.work_dir, f"reduce-{k}", "_SUCCESS")

    def drop_spills(self) -> None:
        for name in storage.listdir(self.work_dir):
            if name.startswith(("pass-", "reduce-")):
                storage.rmtree(storage.join(self.work_dir, name))

    def marker_path(self, part: int) -> str:
        return storage.join(self.parts_dir, f"{part:05d}.json")

    def ledger_fragment(self, part: int) -> str:
        return storage.join(self.parts_dir, f"{part:05d}.ledger.parquet")

    def marker(self, part: int) -> dict[str, Any] | None:
        path = self.marker_path(part)
        if not storage.exists(path):
            return None
        return json.loads(storage.read_bytes(path))


def sample_of(row: dict[str, Any]) -> dict[str, bytes]:
    """A kept row as an img2dataset-style WebDataset sample: image, caption .txt, everything else in .json."""
    fields = {k: v for k, v in row.items() if k not in _NOT_IN_JSON and v is not None}
    fields["caption"] = row["text"]
    fields["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    ext = "png" if row.get("image_format") == "png" else "jpg"
    return {
        "__key__": row["key"],
        ext: row["image"],
        "txt": (row["text"] or "").encode(),
        "json": json.dumps(fields, ensure_ascii=False, sort_keys=True).encode(),
    }


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

    def add(self, batch: pa.RecordBatch) -> None:
        ledger_rows = []
        for row in batch.to_pylist():
            status = _status(row)
            self.stats.add_row(status, row["stage"], row["reason"])
            ledger_rows.append(
                {"key": row["key"], "source": row["source"], "dataset": row["dataset"], "status": status,
                 "stage": None if status == "kept" else row["stage"], "reason": row["reason"]}
            )
            if status == "kept":
                self.writer.write(sample_of(row), {c: row[c] for c in EMBEDDING_COLUMNS if row.get(c) is not None})
                self.stats.add_concepts(row.get("concepts"))
                self.stats.add_kept(
                    {"width": row.get("width"), "height": row.get("height"),
                     "caption_chars": len(row["text"] or ""), "image_bytes": len(row["image"] or b"")}
                )
        self.ledger.append(pa.RecordBatch.from_pylist(ledger_rows, schema=LEDGER_SCHEMA))

    def close(self) -> dict[str, Any]:
        shards = self.writer.close()
        frag = self.layout.ledger_fragment(self.part)
        storage.write_parquet_atomic(frag, pa.Table.from_batches(self.ledger, schema=LEDGER_SCHEMA))
        marker = {
            "part": self.part,
            "shards": [s.__dict__ for s in shards],
            "stats": self.stats.to_dict(),
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


def finalize(layout: OutputLayout, part_ids: list[int], name: str) -> dict[str, Any]:
    """Merge per-part results into index.json, ledger.parquet and stats.json (streaming: memory stays flat)."""
    stats = RunStats()
    shards: list[ShardInfo] = []
    missing = [p for p in part_ids if layout.marker(p) is None]
    if missing:
        raise RuntimeError(
            f"parts {missing[:10]} did not finish (no completion marker under {layout.parts_dir}); rerun the flow to resume"
        )
    tmp = storage.tmp_path(layout.ledger_path)
    with storage.open_file(tmp, "wb") as f, pq.ParquetWriter(f, LEDGER_SCHEMA) as ledger:
        for p in part_ids:
            marker = layout.marker(p)
            assert marker is not None
            stats.merge(RunStats(marker["stats"]))
            shards.extend(ShardInfo(**s) for s in marker["shards"])
            with storage.open_file(layout.ledger_fragment(p)) as frag:
                ledger.write_table(pq.read_table(frag, schema=LEDGER_SCHEMA))
    storage.replace(tmp, layout.ledger_path)
    write_index(layout.shards_dir, shards, name)
    result = stats.to_dict()
    result["inputs"] = sum(result["status"].values())
    result["shards"] = {"count": len(shards), "samples": sum(s.nsamples for s in shards),
                        "bytes": sum(s.filesize for s in shards)}
    return result


def write_stats(layout: OutputLayout, stats: dict[str, Any]) -> None:
    storage.write_atomic(layout.stats_path, json.dumps(stats, indent=1, sort_keys=True).encode())
