"""The training data loader: global logical streams, split over ranks and loader workers, each packed by best fit
with an exact, checkpointable position.

A run reads `S` logical data streams (fixed when it starts, kept in its checkpoints). Rank r owns streams
r*k .. r*k+k-1 (k = S / world) and takes its micro-batches from them in turn, so the global data of a step does
not depend on how the streams are spread: 2 ranks x 1 micro-batch read what 1 rank x 2 micro-batches reads.
DataLoader workers split a rank's streams (a worker count that does not divide k is lowered to one that does).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import Glm4vConfig, Glm4vProcessor

from train.config import DataConfig
from train.data.counters import SkipCounter
from train.data.encode import Encoder
from train.data.pack import BestFitPacker, collate_rows
from train.data.shards import raw_stream

log = logging.getLogger("vlmdata.train.data")


@dataclass
class StreamState:
    """Where one logical stream stands: its epoch, the raw samples read this epoch and the raw stream's seek
    state (open shards and offsets, RNGs), the raw samples waiting in its packing buffer, skip/truncation counts."""

    epoch: int = 0
    position: int = 0
    raw: dict | None = None
    buffer: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class DataState:
    """A rank's view: the run's stream count, the micro-batches this rank took, its streams' states."""

    streams: int
    batches: int = 0
    stream_states: dict[int, dict] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"streams": self.streams, "batches": self.batches, "stream_states": dict(self.stream_states)}

    @classmethod
    def from_state_dict(cls, d: dict) -> DataState:
        return cls(d["streams"], d.get("batches", 0), dict(d.get("stream_states", {})))

    @classmethod
    def resume(cls, saved: list[dict], rank: int, world: int, saved_world: int) -> DataState:
        """This rank's state from every rank's saved state; a changed world size is fine when it divides the
        stream count (each stream continues where it stood), else refused with what to do."""
        streams = saved[0]["streams"]
        if streams % world:
            raise ValueError(f"the checkpoint's data has {streams} streams, which {world} ranks cannot share; "
                             f"resume with a world size that divides {streams}, or start a new run folder")
        states: dict[int, dict] = {}
        for d in saved:
            states.update(d.get("stream_states", {}))
        mine = range(rank * streams // world, (rank + 1) * streams // world)
        batches = saved[rank]["batches"] if world == saved_world and rank < len(saved) else 0
        return cls(streams, batches, {s: states[s] for s in mine if s in states})

    def skipped(self) -> dict[str, int]:
        return _sum_counts(s.get("skipped", {}) for s in self.stream_states.values())

    def notes(self) -> dict[str, int]:
        return _sum_counts(s.get("notes", {}) for s in self.stream_states.values())


def local_streams(streams: int, rank: int, world: int) -> list[int]:
    if streams % world:
        raise ValueError(f"data.streams={streams} must be a multiple of the world size {world}")
    k = streams // world
    return list(range(rank * k, (rank + 1) * k))


def effective_workers(requested: int, streams_per_rank: int) -> int:
    """The largest worker count <= requested that divides the rank's streams (each stream has one reader)."""
    w = max(1, min(requested, streams_per_rank))
    while streams_per_rank % w:
        w -= 1
    return w


class PackedStream(IterableDataset):
    """Yields packed micro-batches of a rank's streams. The j-th micro-batch of the rank comes from stream
    j mod k; worker i of W produces micro-batches b0+i, b0+i+W, … (the DataLoader takes workers in turn), so a
    resumed loader hands out batches in the original order."""

    def __init__(self, data: DataConfig, processor: Glm4vProcessor, config: Glm4vConfig, seed: int,
                 streams: list[int], state: DataState) -> None:
        self.data, self.processor, self.config, self.seed = data, processor, config, seed
        self.streams, self.state = streams, state

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        i, W = (info.id, info.num_workers) if info is not None else (0, 1)
        k = len(self.streams)
        its: dict[int, Iterator[dict]] = {}
        for j in itertools.count(self.state.batches + i, W):
            s = self.streams[j % k]
            if s not in its:
                its[s] = self.stream_batches(s, StreamState(**self.state.stream_states.get(s, {})))
            yield next(its[s])

    def stream_batches(self, stream: int, st: StreamState) -> Iterator[dict]:
        """Endless: one epoch after another (an epoch is this stream's share of samples_per_epoch)."""
        data = self.data
        counter = SkipCounter()
        counter.counts.update(st.skipped)
        counter.notes.update(st.notes)
        encoder = Encoder(self.processor, self.config, data.target or "auto", counter, data.seq_len, data.over_long)
        pad_id = self.processor.tokenizer.pad_token_id
        epoch, position, buffered = st.epoch, st.position, st.buffer
        while True:
            packer = BestFitPacker(data.seq_len, data.rows_per_batch, data.pack_buffer)
            for raw in buffered:  # the packing buffer of a resumed stream (these encoded before)
                if (e := encoder(raw)) is not None:
                    packer.add(e, raw)
            # resumes by seeking: the saved state reopens the shards it was reading at their offsets
            raw_it = raw_stream(data, self.seed, epoch, stream, counter, st.raw if epoch == st.epoch else None)
            share = None if data.samples_per_epoch is None else max(1, data.samples_per_epoch // self.state.streams)
            while share is None or position < share:
                raw = next(raw_it)
                position += 1
                if (e := encoder(raw)) is not None:
                    packer.add(e, raw)
                    if packer.full():
                        yield self.emit(stream, packer, pad_id, epoch, position, raw_it.state(), counter)
            epoch, position, buffered = epoch + 1, 0, []
            while len(packer):  # the epoch's last samples (the state already points at the next epoch)
                yield self.emit(stream, packer, pad_id, epoch, position, None, counter)

    def emit(self, stream: int, packer: BestFitPacker, pad_id: int, epoch: int, position: int,
             raw_state: dict | None, counter: SkipCounter) -> dict:
        """A batch from the packer, carrying its stream's state after it (what a checkpoint saves)."""
        rows = packer.take_rows()
        batch = collate_rows([[e for e, _ in r] for r in rows], self.data.seq_len, pad_id,
                             [[e.source for e, _ in r] for r in rows])
        batch["stream"] = stream
        batch["stream_state"] = {"epoch": epoch, "position": position, "raw": raw_state,
                                 "buffer": packer.payloads(), "skipped": dict(counter.counts),
                                 "notes": dict(counter.notes)}
        return batch


class BatchIterator:
    """Endless micro-batches of one rank, tracking its DataState as batches are consumed."""

    def __init__(self, data: DataConfig, processor: Glm4vProcessor, config: Glm4vConfig, seed: int,
                 rank: int = 0, world: int = 1, state: DataState | None = None) -> None:
        self.data = data
        self.state = state or DataState(streams=data.streams or world * max(1, data.num_workers))
        self.streams = local_streams(self.state.streams, rank, world)
        self.workers = effective_workers(data.num_workers, len(self.streams)) if data.num_workers > 0 else 0
        if data.num_workers > 0 and self.workers != data.num_workers:
            log.warning("data.num_workers=%d lowered to %d: it must divide this rank's %d data streams "
                        "(raise data.streams to use more workers)", data.num_workers, self.workers, len(self.streams))
        self.args = (data, processor, config, seed, self.streams)
        self._it: Iterator[dict] | None = None

    def _loader(self) -> Iterator[dict]:
        ds = PackedStream(*self.args, state=DataState.from_state_dict(self.state.state_dict()))
        kw: dict = dict(num_workers=self.workers, batch_size=None)
        if self.workers > 0:
            kw.update(prefetch_factor=self.data.prefetch_factor, persistent_workers=False)
        return iter(DataLoader(ds, **kw))

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self._it = self._loader()
        batch = next(self._it)
        self.state.stream_states[batch.pop("stream")] = batch.pop("stream_state")
        self.state.batches += 1
        return batch


def _sum_counts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
