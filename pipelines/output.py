"""The output folder: shards/, index.json, stats.json, ledger.parquet, and the per-part work files behind resume."""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import re
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
RUN_FILE = "run.json"  # _work/run.json: the fingerprint of the run the work files belong to, and its run-level record
RECORD_KEY = "record"  # in run.json: the folder keeps records of what runs wrote (absent: an older vlmdata wrote it)
RECORD_SUFFIX = ".written"  # _work/parts/PART.written: every file the part's writer created, one path a line
TEMP = re.compile(r"\.tmp-\d+$")  # storage.tmp_path: where a write goes first (a killed process leaves it behind)
# The work files the passes and reduces write (pipelines.execute, at the paths this layout gives), by folder.
PASS_DIR, REDUCE_DIR = re.compile(r"^pass-\d+$"), re.compile(r"^reduce-\d+$")
SPILL_FILE = re.compile(r"^\d{5,}\.(arrow|keys\.parquet)$")
REDUCE_FILE = re.compile(rf"^(\d{{5,}}\.losers\.parquet|{re.escape(COUNTS_FILE)}|_SUCCESS)$")
RECORD_FILE = re.compile(rf"^\d{{5,}}{re.escape(RECORD_SUFFIX)}$")
MARKER_FILE = re.compile(r"^\d{5,}\.json$")
# A folder an older vlmdata wrote keeps no records: its part markers list the shards of finished parts, beside
# which lie their sidecars; its in-progress shards (_work/tmp) and part files are told by their names.
LEGACY_SIDECAR = re.compile(r"^\.(stats\.json|[A-Za-z0-9_]+\.parquet)$")
LEGACY_TMP = re.compile(r"^\d{5,}-\d{4,}\.tar$")
LEGACY_PART = re.compile(r"^\d{5,}\.(json|ledger\.parquet)$")


class OutputError(ValueError):
    """An output folder a run must not write into; the message says why and what to do."""


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _check_writable(root: str, path: Path) -> None:
    """Refuse an --output that cannot be a folder (a file, or a path that runs through a file or a broken link) or
    that lies where this process cannot write, before anything is created."""
    existing = None
    for p in [*reversed(path.parents), path]:
        if not os.path.lexists(p):
            break
        if not p.is_dir():  # follows links: a link to a folder is a folder
            what = "a broken link" if p.is_symlink() else "a file"
            if p == path:
                raise OutputError(f"--output {root} is {what}; pass a folder (new or one a previous run wrote)")
            raise OutputError(f"--output {root}: {p} is {what}, not a folder; pass an output folder whose path runs "
                              "through folders only")
        existing = p
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--output {root}: cannot write in {existing} (permission denied); pass a folder you can "
                          "write to")


def _record_lines(data: bytes) -> set[str]:
    """The paths in a record that are paths a run writes: relative, under shards/ or _work/, no `..` (a record is
    read before files are deleted: nothing outside those folders is ever named by one)."""
    out = set()
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split("/")
        if len(parts) >= 2 and parts[0] in ("shards", "_work") and not {"", ".", ".."} & set(parts):
            out.add(line)
    return out


def _run_files(run: dict[str, Any] | None) -> set[str]:
    """The paths run.json records (the shard index), checked as a part's record is."""
    return _record_lines("\n".join(str(f) for f in (run or {}).get("files", [])).encode())


def _removal_order(rel: str) -> int:
    """Data files first, then the part files (an older folder's markers say which shards are its own), then the
    records, run.json last: a deletion cut short leaves the records of what is left."""
    name = rel.rsplit("/", 1)[-1]
    base = TEMP.sub("", name)
    if rel.startswith("_work/") and base == RUN_FILE and rel.count("/") == 1:
        return 3
    if rel.startswith("_work/parts/"):
        return 2 if RECORD_FILE.match(base) else 1
    return 0


@dataclass
class Inventory:
    """What lies under an output folder's shards/ and _work/, as paths relative to the folder."""

    owned: list[str]  # files a run recorded writing (with their temporary names), or work files the layout names
    foreign: list[str]  # everything else (a folder ends in /), and top-level names vlmdata does not write
    legacy: bool  # written by an older vlmdata without records: `owned` is what its part markers say
    run: dict[str, Any] | None  # _work/run.json


class OutputLayout:
    """Paths of one output folder. Completion markers per part make a rerun skip finished parts.

    Every file a run writes under shards/ and in the part folder is recorded before it is created (a record per
    part, `_work/parts/PART.written`; the shard index in `_work/run.json`). A run with another fingerprint deletes
    exactly the recorded files, the work files the passes name (`_work/pass-K`, `_work/reduce-K`) and the merged
    outputs; any other file under shards/ or _work/, even one named like a shard, makes a run refuse the folder.
    """

    def __init__(self, root: str):
        self.root = root
        self.shards_dir = storage.join(root, "shards")
        self.work_dir = storage.join(root, "_work")
        self.tmp_dir = storage.join(self.work_dir, "tmp")
        self.parts_dir = storage.join(self.work_dir, "parts")
        self.ledger_path = storage.join(root, "ledger.parquet")
        self.stats_path = storage.join(root, "stats.json")
        self.run_file = storage.join(self.work_dir, RUN_FILE)

    def check_safe(self, inputs: list[str]) -> None:
        """Refuse an output folder this run could harm: a file (or a path through one), a folder holding files
        vlmdata did not write, a folder inside an input, or one that holds an input. Raises OutputError saying which
        and what to do."""
        root = self.root
        local_root = storage.local_path(root)
        if local_root is None:
            return  # object stores: no local path to compare; the ownership marker and prepare's records still guard
        _check_writable(root, Path(os.path.abspath(local_root)))
        out = Path(local_root).resolve()
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
        if OWNER_FILE not in entries:
            raise OutputError(f"the output folder {root} already holds files vlmdata did not write ({_few(entries)}); "
                              "pass a new or empty folder")
        self._refuse_foreign(self.inventory())

    def _refuse_foreign(self, inventory: Inventory) -> None:
        if not inventory.foreign:
            return
        why = ""
        if inventory.legacy:
            why = ("; an older vlmdata wrote this folder and kept no record of its files, so the shards of parts it did "
                   "not finish cannot be told from yours")
        raise OutputError(f"the output folder {self.root} holds files vlmdata did not write "
                          f"({_few(inventory.foreign)}){why}; vlmdata never deletes what it did not write: move them "
                          "away or pass another folder")

    def _claim(self) -> None:
        """Mark a new or empty folder as a vlmdata output (what later runs check before deleting anything)."""
        try:
            storage.makedirs(self.root)
            owner = storage.join(self.root, OWNER_FILE)
            if not storage.exists(owner):
                storage.write_atomic(owner, b"This folder is a vlmdata output: vlmdata deletes only the files it wrote "
                                            b"here.\n")
        except OSError as exc:
            raise OutputError(f"cannot write the output folder {self.root}: {exc.strerror or exc}; pass a folder you "
                              "can write to") from None

    def _run_record(self) -> dict[str, Any] | None:
        if not storage.exists(self.run_file):
            return None
        try:
            run = json.loads(storage.read_bytes(self.run_file))
        except ValueError:
            return {}  # unreadable: no fingerprint, no records
        return run if isinstance(run, dict) else {}

    def _entries(self, rel: str) -> list[tuple[str, str]]:
        """(name, kind) of each entry of the folder `rel` (relative to the root), sorted; kind is file, dir or other
        (a link, a pipe, a socket, a device: never followed, never taken for vlmdata's)."""
        path = storage.join(self.root, *rel.split("/")) if rel else self.root
        local = storage.local_path(path)
        if local is not None:
            try:
                with os.scandir(local) as it:
                    return sorted((e.name, "dir" if e.is_dir(follow_symlinks=False) else
                                   "file" if e.is_file(follow_symlinks=False) else "other") for e in it)
            except (FileNotFoundError, NotADirectoryError):
                return []
        fs, p = storage.fs_of(path)
        if not fs.isdir(p):
            return []
        return sorted((posixpath.basename(e["name"].rstrip("/")), "dir" if e["type"] == "directory" else "file")
                      for e in fs.ls(p, detail=True) if e["name"].rstrip("/") != p.rstrip("/"))

    def _recorded(self, run: dict[str, Any] | None) -> set[str]:
        """Every path the records name: run.json's (the shard index) and each part's."""
        files = _run_files(run)
        for name, kind in self._entries("_work/parts"):
            if kind == "file" and RECORD_FILE.match(name):
                files |= _record_lines(storage.read_bytes(storage.join(self.parts_dir, name)))
        return files

    def _legacy_files(self) -> set[str]:
        """In a folder an older vlmdata wrote: the shards its part markers list, their sidecars, the shard index."""
        files = {"shards/index.json"}
        shard_names = [n for n, kind in self._entries("shards") if kind == "file"]
        for name, kind in self._entries("_work/parts"):
            if kind != "file" or not MARKER_FILE.match(name):
                continue
            try:
                marker = json.loads(storage.read_bytes(storage.join(self.parts_dir, name)))
                urls = [s["url"] for s in marker["shards"]]
            except (ValueError, KeyError, TypeError):
                continue
            for url in urls:
                if not isinstance(url, str) or not url.endswith(".tar") or "/" in url or url.startswith("."):
                    continue
                stem = url[: -len(".tar")]
                files.add(f"shards/{url}")
                files.update(f"shards/{n}" for n in shard_names
                             if n.startswith(stem + ".") and LEGACY_SIDECAR.match(n[len(stem):]))
        return files

    def inventory(self) -> Inventory:
        """Sort what lies under shards/ and _work/ (and the folder's top level) into the files runs recorded writing
        and everything else."""
        run = self._run_record()
        legacy = run is not None and RECORD_KEY not in run
        recorded = self._recorded(run) | (self._legacy_files() if legacy else set())
        owned: list[str] = []
        foreign: list[str] = []

        def place(rel: str, kind: str, ours: bool) -> None:
            if kind == "file" and ours:
                owned.append(rel)
            else:
                foreign.append(rel + {"dir": "/", "other": " (a link or special file)"}.get(kind, ""))

        for name, kind in self._entries(""):
            if name in (OWNER_FILE, LOCK_FILE):
                continue
            if name in ("shards", "_work"):
                if kind != "dir":
                    place(name, kind, False)
                continue
            base = TEMP.sub("", name)
            if base in OWNED_TOP and kind == "file":
                if base != name:
                    owned.append(name)  # a merged output's temporary name, left by a killed run
                continue
            place(name, kind, False)
        for name, kind in self._entries("shards"):
            rel = f"shards/{name}"
            place(rel, kind, TEMP.sub("", rel) in recorded)
        for name, kind in self._entries("_work"):
            rel = f"_work/{name}"
            if TEMP.sub("", name) == RUN_FILE:
                place(rel, kind, True)
                continue
            if kind != "dir" or not (name in ("tmp", "parts") or PASS_DIR.match(name) or REDUCE_DIR.match(name)):
                place(rel, kind, False)
                continue
            for sub, sub_kind in self._entries(rel):
                path = f"{rel}/{sub}"
                base = TEMP.sub("", sub)
                ours = TEMP.sub("", path) in recorded or (
                    bool(SPILL_FILE.match(base)) if PASS_DIR.match(name) else
                    bool(REDUCE_FILE.match(base)) if REDUCE_DIR.match(name) else
                    bool(RECORD_FILE.match(base) or (legacy and LEGACY_PART.match(base))) if name == "parts" else
                    bool(legacy and LEGACY_TMP.match(base)))
                place(path, sub_kind, ours)
        return Inventory(owned, foreign, legacy, run)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One run per output folder at a time: a second run is refused with a clear message (an OS lock, released
        when the run ends or its process dies)."""
        local_root = storage.local_path(self.root)
        if local_root is None:
            yield
            return
        _check_writable(self.root, Path(os.path.abspath(local_root)))
        path = os.path.join(local_root, LOCK_FILE)
        try:
            storage.makedirs(self.root)
            handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise OutputError(f"cannot write the output folder {self.root}: {exc.strerror or exc}; pass a folder you "
                              "can write to") from None
        with handle:
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
        """Start or resume a run. A run with another fingerprint (other inputs or config) left files: exactly those
        it recorded writing are deleted, with the work files and merged outputs; a file no record names refuses the
        folder (OutputError), whatever its name. A resume drops only what a killed run left half-written.

        A folder an older vlmdata wrote (no records) is read by its part markers: the shards they list and their
        sidecars are its own; a shard no marker lists (a part it did not finish, or a file of yours) refuses the
        folder. A resume there records what it found, so later runs go by records.

        Returns the number of parts already complete.
        """
        self._claim()
        found = self.inventory()
        self._refuse_foreign(found)
        previous = (found.run or {}).get("fingerprint")
        files: set[str] = set()
        if previous != fingerprint:
            for rel in sorted(found.owned, key=_removal_order):
                storage.remove(storage.join(self.root, *rel.split("/")))
            for path in (self.ledger_path, self.stats_path):
                storage.remove(path)
            self._drop_empty_work_folders()
        else:
            for rel in found.owned:  # in-progress shards and the temporary names of killed writes
                if rel.startswith("_work/tmp/") or TEMP.search(rel):
                    storage.remove(storage.join(self.root, *rel.split("/")))
            if found.legacy:  # from now on by records: what the markers said, and the part files found
                files = {rel for rel in found.owned if not TEMP.search(rel) and
                         (rel.startswith("shards/") or rel.startswith("_work/parts/"))}
            else:
                files = _run_files(found.run)
        for path in (self.shards_dir, self.tmp_dir, self.parts_dir):
            storage.makedirs(path)
        run = {"fingerprint": fingerprint, RECORD_KEY: 1, "files": sorted(files | {"shards/index.json"})}
        storage.write_atomic(self.run_file, json.dumps(run).encode())
        return len([n for n in storage.listdir(self.parts_dir) if MARKER_FILE.match(n)])

    def _drop_empty_work_folders(self) -> None:
        """The pass and reduce folders a run with another fingerprint left, once emptied (only empty ones go)."""
        local = storage.local_path(self.work_dir)
        if local is None:
            return  # object stores have no folders to drop
        for name, kind in self._entries("_work"):
            if kind == "dir" and (PASS_DIR.match(name) or REDUCE_DIR.match(name)):
                try:
                    os.rmdir(os.path.join(local, name))
                except OSError:
                    pass

    def record_path(self, part: int) -> str:
        """The record of the files part `part`'s writer created under the folder (see `FileRecord`)."""
        return storage.join(self.parts_dir, f"{part:05d}{RECORD_SUFFIX}")

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


class FileRecord:
    """The files one part's writer creates under the output folder, each written down before it is created (in
    `_work/parts/PART.written`, a path relative to the folder a line): what a later run with another fingerprint
    deletes, and nothing else. A resumed part adds to the record of its earlier attempt, so a file a killed attempt
    created stays recorded."""

    def __init__(self, layout: OutputLayout, part: int):
        self.root, self.path = layout.root, layout.record_path(part)
        self.files = _record_lines(storage.read_bytes(self.path)) if storage.exists(self.path) else set()

    def add(self, paths: Iterable[str]) -> None:
        new = {storage.relpath(p, self.root).replace(os.sep, "/") for p in paths} - self.files
        if new:
            self.files |= new
            storage.write_atomic(self.path, "".join(f"{f}\n" for f in sorted(self.files)).encode())


def _status(row: dict[str, Any]) -> str:
    return "kept" if row["keep"] else "error" if row["error"] else "dropped"


class PartWriter:
    """Writes one part: its kept rows into shards, every row into its ledger fragment, then its marker."""

    def __init__(self, layout: OutputLayout, shards: ShardConfig, part: int):
        self.layout, self.part = layout, part
        self.record = FileRecord(layout, part)
        self.writer = ShardWriter(
            layout.shards_dir, layout.tmp_dir, f"{part:05d}", shards.max_samples, shards.max_bytes,
            before_write=self.record.add,
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
        self.record.add([frag, self.layout.marker_path(self.part)])
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
