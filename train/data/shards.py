"""Streams raw samples from WebDataset shards: resampled shards, shuffle buffer, seeded mixing of sources."""

from __future__ import annotations

import glob
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


def source_stream(source: ShardSource, data: DataConfig, seed: int, counter: SkipCounter) -> Iterator[dict]:
    """An endless stream of raw samples of one source: shards drawn with replacement from a seeded RNG,
    samples shuffled through a seeded buffer. Distinct seeds per logical stream split the work."""
    urls = expand_urls(source.urls)
    pipeline = wds.DataPipeline(
        wds.ResampledShards(urls, seed=seed, worker_seed=lambda: 0, deterministic=True),
        codec.tarfile_to_samples(handler=counter.handler),
        wds.shuffle(data.shuffle_buffer, initial=data.shuffle_initial, seed=seed + 1),
    )
    for sample in pipeline:
        sample["__source__"] = source.name
        yield sample


def mix(streams: Sequence[Iterator[dict]], weights: Sequence[float], seed: int) -> Iterator[dict]:
    """Draw each next sample from a source chosen with probability proportional to its weight."""
    rng = random.Random(seed)
    idx = list(range(len(streams)))
    while True:
        yield next(streams[rng.choices(idx, weights=weights)[0]])


def stream_seed(seed: int, epoch: int, stream: int, source: int) -> int:
    # a tuple of ints hashes the same in every process (no PYTHONHASHSEED dependence)
    return hash((seed, epoch, stream, source)) & 0x7FFFFFFF


def raw_stream(data: DataConfig, seed: int, epoch: int, stream: int, counter: SkipCounter) -> Iterator[dict]:
    """The mixed raw-sample stream of one logical data stream for one epoch. A stream is global (not tied to
    a rank or a loader worker), so the same run reads the same data whatever its world size or worker count."""
    if not data.sources:
        raise ValueError("data.sources is empty: give --shards GLOB or sources in the YAML")
    streams = [source_stream(s, data, stream_seed(seed, epoch, stream, i), counter) for i, s in enumerate(data.sources)]
    return mix(streams, [s.weight for s in data.sources], stream_seed(seed, epoch, stream, -1))
