"""Streams raw samples from WebDataset shards with a position that resumes by seeking, not replaying.

Per source, shards come in a seeded order (a fresh permutation per pass over the source); `open_shards` of them
are read at once and each next sample comes from one of them picked by a seeded RNG (shard-level interleaving
instead of a sample shuffle buffer, whose content could not be checkpointed cheaply). Sources are mixed by
weight with a seeded RNG. The state of a stream is small: per source the next shard's index, each open
shard's index and samples read, and the RNG states; resuming opens those shards and skips within them only.
"""

from __future__ import annotations

import glob
import itertools
import random
from collections.abc import Iterator, Sequence

import webdataset as wds

from pipelines import codec
from train.config import DataConfig, ShardSource
from train.data.counters import SkipCounter


def expand_urls(pattern: str) -> list[str]:
    """A glob (local files) or a brace pattern (any URL webdataset can open)."""
    if any(c in pattern for c in "*?["):
        urls = sorted(glob.glob(pattern))
    else:
        urls = list(wds.shardlists.expand_urls(pattern))
    if not urls:
        raise FileNotFoundError(f"no shards match {pattern!r}")
    return urls


def stream_seed(seed: int, epoch: int, stream: int, source: int) -> int:
    # a tuple of ints hashes the same in every process (no PYTHONHASHSEED dependence)
    return hash((seed, epoch, stream, source)) & 0x7FFFFFFF


def rng_state(state) -> tuple:
    """A random.Random state back as tuples (DataLoader's batch conversion and JSON turn them into lists)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


class SourceReader:
    """An endless, seekable stream of raw samples of one source."""

    def __init__(self, source: ShardSource, seed: int, open_shards: int, counter: SkipCounter,
                 state: dict | None = None) -> None:
        self.source, self.seed, self.counter = source, seed, counter
        self.urls = expand_urls(source.urls)
        state = state or {}
        self.next_shard: int = state.get("next_shard", 0)
        self.rng = random.Random(seed)
        if "rng" in state:
            self.rng.setstate(rng_state(state["rng"]))
        self.slots: list[list[int]] = [list(s) for s in state.get("slots", [])]  # [shard index, samples read]
        if not self.slots:
            self.slots = [[self._take_shard(), 0] for _ in range(max(1, min(open_shards, len(self.urls))))]
        self.readers = [self._open(idx, read) for idx, read in self.slots]

    def url(self, index: int) -> str:
        """The index-th shard of this source's endless order: pass `index // n` is a seeded permutation."""
        n = len(self.urls)
        order = random.Random(hash((self.seed, index // n)) & 0x7FFFFFFF).sample(range(n), n)
        return self.urls[order[index % n]]

    def _take_shard(self) -> int:
        self.next_shard += 1
        return self.next_shard - 1

    def _open(self, index: int, skip: int) -> Iterator[dict]:
        # the project's own tar reader (webdataset's key rule; about twice as fast as webdataset's on small members)
        samples = codec.tarfile_samples([self.url(index)], handler=self.counter.handler)
        return itertools.islice(samples, skip, None)  # seek within this one shard

    def __iter__(self) -> SourceReader:
        return self

    def __next__(self) -> dict:
        empty = 0
        while True:
            i = self.rng.randrange(len(self.slots))
            sample = next(self.readers[i], None)
            if sample is None:  # shard finished: the next one in the order takes its slot
                empty += 1
                if empty > 2 * (len(self.urls) + len(self.slots)):
                    raise ValueError(f"source {self.source.name!r}: no readable sample in {self.source.urls!r}")
                self.slots[i] = [self._take_shard(), 0]
                self.readers[i] = self._open(*self.slots[i])
                continue
            self.slots[i][1] += 1
            sample["__source__"] = self.source.name
            return sample

    def state(self) -> dict:
        return {"next_shard": self.next_shard, "slots": [list(s) for s in self.slots], "rng": self.rng.getstate()}


class RawStream:
    """The mixed raw-sample stream of one logical data stream for one epoch: each next sample is drawn from a
    source chosen with probability proportional to its weight. `state()` resumes it exactly."""

    def __init__(self, data: DataConfig, seed: int, epoch: int, stream: int, counter: SkipCounter,
                 state: dict | None = None) -> None:
        if not data.sources:
            raise ValueError("data.sources is empty: give --shards GLOB or sources in the YAML")
        state = state or {}
        saved = state.get("sources") or [None] * len(data.sources)
        if len(saved) != len(data.sources):
            raise ValueError(f"the checkpoint's data has {len(saved)} sources and the config {len(data.sources)}: "
                             "resume with the same data.sources, or start a new run folder")
        self.readers = [SourceReader(s, stream_seed(seed, epoch, stream, i), data.open_shards, counter, st)
                        for i, (s, st) in enumerate(zip(data.sources, saved, strict=True))]
        self.weights: Sequence[float] = [s.weight for s in data.sources]
        self.rng = random.Random(stream_seed(seed, epoch, stream, -1))
        if "rng" in state:
            self.rng.setstate(rng_state(state["rng"]))

    def __iter__(self) -> RawStream:
        return self

    def __next__(self) -> dict:
        return next(self.readers[self.rng.choices(range(len(self.readers)), weights=self.weights)[0]])

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "sources": [r.state() for r in self.readers]}


def raw_stream(data: DataConfig, seed: int, epoch: int, stream: int, counter: SkipCounter,
               state: dict | None = None) -> RawStream:
    """The raw samples of logical stream `stream` (global: not tied to a rank or a loader worker, so a run reads
    the same data whatever its world size or worker count), from `state` when resuming."""
    return RawStream(data, seed, epoch, stream, counter, state)
