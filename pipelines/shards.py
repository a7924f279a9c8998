"""WebDataset shard writer: roll-over by sample count and bytes, temp name then rename, deterministic bytes (the
codec's TarWriter), per-shard statistics and sidecar Parquet files beside each shard."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipelines import storage
from pipelines.codec import TarWriter, member_bytes
from pipelines.shard_stats import ShardStats, sidecar_path


class ShardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int = Field(10_000, ge=1, description="Samples per shard at most (img2dataset's default).")
    max_bytes: int = Field(1 << 30, ge=1 << 16, description="Bytes per shard at most (tar headers included).")


@dataclass
class ShardInfo:
    url: str  # file name relative to the shards folder (wids resolves it against index.json)
    nsamples: int
    filesize: int


class ShardWriter:
    """Writes samples into `{prefix}-{n:04d}.tar` (`name`) under `out_dir`, each first written under `tmp_dir`.

    A shard becomes visible in `out_dir` only when complete (an atomic rename), so a reader never sees a partial
    tar, and a killed run leaves only whole shards behind. Beside each shard land, before it: `NAME.stats.json`
    (its statistics, what `vlmdata stats` merges) and `NAME.<sidecar>.parquet` per sidecar its samples carry
    (key + the sidecar's columns, in the tar's order; `sidecar_schemas` gives their types, else Arrow infers them).
    `before_write` is told the paths of the files about to be created (the temporary tar and its final name when a
    shard opens, its sidecars when it closes), before any is: what an output folder records as its own.
    """

    def __init__(
        self,
        out_dir: str,
        tmp_dir: str,
        prefix: str,
        max_samples: int,
        max_bytes: int,
        on_shard: Callable[[ShardInfo], None] | None = None,
        with_stats: bool = True,
        sidecar_schemas: Mapping[str, pa.Schema] | None = None,
        name: str = "{prefix}-{n:04d}.tar",
        before_write: Callable[[list[str]], None] | None = None,
    ):
        self.out_dir, self.tmp_dir, self.prefix, self.name = out_dir, tmp_dir, prefix, name
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.on_shard = on_shard
        self.before_write = before_write
        self.with_stats = with_stats
        self.sidecar_schemas = dict(sidecar_schemas or {})
        self.stats = ShardStats()  # of every shard closed so far: what the run's statistics merge
        self.shards: list[ShardInfo] = []
        self._shard_stats: ShardStats | None = None
        self._sidecars: dict[str, list[dict[str, Any]]] = {}
        self._stream = None
        self._tar: TarWriter | None = None
        self._count = 0
        self._bytes = 0
        storage.makedirs(out_dir)
        storage.makedirs(tmp_dir)

    @property
    def _name(self) -> str:
        return self.name.format(prefix=self.prefix, n=len(self.shards))

    def _open(self) -> None:
        tmp = storage.join(self.tmp_dir, self._name)
        if self.before_write:
            self.before_write([tmp, storage.join(self.out_dir, self._name)])
        self._stream = storage.open_file(tmp, "wb")
        self._tar = TarWriter(self._stream)
        self._count = self._bytes = 0
        self._shard_stats = ShardStats() if self.with_stats else None
        self._sidecars = {}

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()  # writes the end-of-archive blocks
        assert self._stream is not None
        self._stream.close()
        name = self._name
        tmp, final = storage.join(self.tmp_dir, name), storage.join(self.out_dir, name)
        info = ShardInfo(url=name, nsamples=self._count, filesize=storage.getsize(tmp))
        # Sidecars land before the tar: a visible shard always has its statistics (and sidecar columns).
        if self.before_write:
            stats = [sidecar_path(final)] if self._shard_stats is not None else []
            self.before_write(stats + [sidecar_file(final, sidecar) for sidecar in self._sidecars])
        if self._shard_stats is not None:
            self._shard_stats.write(final)
            self.stats.merge(self._shard_stats)
        for sidecar, rows in self._sidecars.items():
            self._write_sidecar(final, sidecar, rows)
        storage.replace(tmp, final)
        self.shards.append(info)
        self._tar = self._stream = None
        if self.on_shard:
            self.on_shard(info)

    def _write_sidecar(self, tar_path: str, sidecar: str, rows: list[dict[str, Any]]) -> None:
        """`NAME.<sidecar>.parquet` beside the shard: key and the sidecar's columns, in the tar's order."""
        schema = self.sidecar_schemas.get(sidecar)
        table = pa.Table.from_pylist(rows, schema=schema)
        storage.write_parquet_atomic(sidecar_file(tar_path, sidecar), table)

    def write(self, sample: dict[str, bytes], sidecars: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """One sample; `sidecars` are its values per sidecar name (`{"embeddings": {"image_embedding": …}}`)."""
        size = member_bytes(sample)
        if self._tar is not None and (self._count >= self.max_samples or self._bytes + size > self.max_bytes):
            self._close()
        if self._tar is None:
            self._open()
        assert self._tar is not None
        self._tar.write(sample)
        if self._shard_stats is not None:
            self._shard_stats.add(sample)
        for sidecar, values in (sidecars or {}).items():
            self._sidecars.setdefault(sidecar, []).append({"key": sample["__key__"], **values})
        self._count += 1
        self._bytes += size

    def close(self) -> list[ShardInfo]:
        self._close()
        return self.shards


def sidecar_file(tar_path: str, sidecar: str) -> str:
    """`NAME.<sidecar>.parquet` beside `NAME.tar`."""
    return tar_path.removesuffix(".tar") + f".{sidecar}.parquet"


def write_index(shards_dir: str, shards: list[ShardInfo], name: str) -> str:
    """A wids-compatible `index.json` listing every shard with its sample count and file size."""
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": [asdict(s) for s in shards],
    }
    path = storage.join(shards_dir, "index.json")
    storage.write_atomic(path, json.dumps(index, indent=1).encode())
    return path
