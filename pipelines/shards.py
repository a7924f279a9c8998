"""WebDataset shard writer: roll-over by sample count and bytes, temp name then rename, deterministic bytes."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from pipelines import storage
from pipelines.shard_stats import ShardStats

EMBEDDING_COLUMNS = ("image_embedding", "text_embedding")
TAR_BLOCK = 512
FIXED_MTIME = 0  # same input → byte-identical tars
OWNER = "vlmdata"


class TarSampleWriter:
    """Writes samples as webdataset does (`{key}.{ext}` members, extensions sorted) with fixed metadata.

    The stdlib tarfile, not webdataset's TarWriter: importing webdataset imports torch, which would add
    ~650 MB and a second of start-up to every engine worker that writes shards.
    """

    def __init__(self, stream):
        self.tar = tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT)

    def write(self, sample: dict[str, bytes]) -> None:
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("__")):
            data = sample[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o444
            info.uname = info.gname = OWNER
            self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


class ShardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int = Field(10_000, ge=1, description="Samples per shard at most (img2dataset's default).")
    max_bytes: int = Field(1 << 30, ge=1 << 16, description="Bytes per shard at most (tar headers included).")



@dataclass
class ShardInfo:
    url: str  # file name relative to the shards folder (wids resolves it against index.json)
    nsamples: int
    filesize: int


def sample_bytes(sample: dict[str, bytes]) -> int:
    """Bytes a sample takes in a tar: a header block per member plus the data padded to blocks."""
    return sum(TAR_BLOCK + -(-len(v) // TAR_BLOCK) * TAR_BLOCK for k, v in sample.items() if not k.startswith("__"))


class ShardWriter:
    """Writes samples into `{prefix}-{n:04d}.tar` under `out_dir`, each first written under `tmp_dir`.

    A shard becomes visible in `out_dir` only when complete (an atomic rename), so a reader never
    sees a partial tar, and a killed run leaves only whole shards behind.
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
    ):
        self.out_dir, self.tmp_dir, self.prefix = out_dir, tmp_dir, prefix
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.on_shard = on_shard
        self.with_stats = with_stats
        self._stats: ShardStats | None = None
        self.shards: list[ShardInfo] = []
        self._stream = None
        self._tar: TarSampleWriter | None = None
        self._count = 0
        self._bytes = 0
        storage.makedirs(out_dir)
        storage.makedirs(tmp_dir)

    @property
    def _name(self) -> str:
        return f"{self.prefix}-{len(self.shards):04d}.tar"

    def _open(self) -> None:
        self._stream = storage.open_file(storage.join(self.tmp_dir, self._name), "wb")
        self._tar = TarSampleWriter(self._stream)
        self._count = self._bytes = 0
        self._stats = ShardStats() if self.with_stats else None
        self._embeddings: list[dict] = []

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()  # writes the end-of-archive blocks
        assert self._stream is not None
        self._stream.close()
        name = self._name
        tmp, final = storage.join(self.tmp_dir, name), storage.join(self.out_dir, name)
        info = ShardInfo(url=name, nsamples=self._count, filesize=storage.getsize(tmp))
        if self._stats is not None:
            # Sidecars land before the tar: a visible shard always has its statistics (and embeddings).
            self._stats.write(final)
        if self._embeddings:
            self._write_embeddings(final)
        storage.replace(tmp, final)
        self.shards.append(info)
        self._tar = self._stream = None
        if self.on_shard:
            self.on_shard(info)

    def _write_embeddings(self, tar_path: str) -> None:
        """`NAME.embeddings.parquet` beside the shard: key and float16 vectors, in the tar's order."""
        import pyarrow as pa

        columns = {"key": [e["key"] for e in self._embeddings]}
        for name in EMBEDDING_COLUMNS:
            columns[name] = [e.get(name) for e in self._embeddings]
        table = pa.table(columns, schema=pa.schema([("key", pa.string())] + [(c, pa.list_(pa.float16())) for c in EMBEDDING_COLUMNS]))
        storage.write_parquet_atomic(tar_path[: -len(".tar")] + ".embeddings.parquet", table)
        self._embeddings = []

    def write(self, sample: dict[str, bytes], embeddings: dict | None = None) -> None:
        size = sample_bytes(sample)
        if self._tar is not None and (self._count >= self.max_samples or self._bytes + size > self.max_bytes):
            self._close()
        if self._tar is None:
            self._open()
        assert self._tar is not None
        self._tar.write(sample)
        if self._stats is not None:
            self._stats.add(sample)
        if embeddings:
            self._embeddings.append({"key": sample["__key__"], **embeddings})
        self._count += 1
        self._bytes += size

    def close(self) -> list[ShardInfo]:
        self._close()
        return self.shards


def write_index(shards_dir: str, shards: list[ShardInfo], name: str) -> str:
    """A wids-compatible `index.json` listing every shard with its sample count."""
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": [asdict(s) for s in shards],
    }
    path = storage.join(shards_dir, "index.json")
    storage.write_atomic(path, json.dumps(index, indent=1).encode())
    return path
