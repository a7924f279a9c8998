"""The training data loader: per-(rank, worker) packed streams with an exact, checkpointable position."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import Glm4vConfig, Glm4vProcessor

from train.config import DataConfig
from train.data.counters import SkipCounter
from train.data.encode import Encoder
from train.data.pack import pack
from train.data.shards import raw_stream


@dataclass
class DataState:
    """Where the stream stands: epoch, raw samples consumed per logical worker, batches taken this epoch."""

    num_workers: int
    epoch: int = 0
    batches: int = 0
    resume_from: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.resume_from:
            self.resume_from = [0] * self.num_workers

    def state_dict(self) -> dict:
        return {"num_workers": self.num_workers, "epoch": self.epoch, "batches": self.batches,
                "resume_from": list(self.resume_from), "skipped": dict(self.skipped)}

    @classmethod
    def from_state_dict(cls, d: dict) -> DataState:
        return cls(**d)


class PackedStream(IterableDataset):
    """Yields packed micro-batches. DataLoader workers take batches round-robin; physical worker i plays
    logical worker (i + start) % W, so a resumed loader hands out batches in the original order."""

    def __init__(self, data: DataConfig, processor: Glm4vProcessor, config: Glm4vConfig, seed: int,
                 rank: int, world: int, state: DataState) -> None:
        self.data, self.processor, self.config, self.seed = data, processor, config, seed
        self.rank, self.world, self.state = rank, world, state

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        W = max(1, self.data.num_workers)
        physical = info.id if info is not None else 0
        logical = (physical + self.state.batches) % W
        counter = SkipCounter()
        encoder = Encoder(self.processor, self.config, self.data.target or "auto", counter, self.data.seq_len)
        raw = raw_stream(self.data, self.seed, self.state.epoch, self.rank, logical, counter)
        if self.data.samples_per_epoch is not None:
            raw = itertools.islice(raw, self.data.samples_per_epoch // (self.world * W))
        start = self.state.resume_from[logical]
        indexed = ((i, encoder(s)) for i, s in enumerate(raw) if i >= start)
        pad_id = self.processor.tokenizer.pad_token_id
        for batch in pack(indexed, self.data.seq_len, self.data.rows_per_batch, pad_id):
            batch["worker"] = logical
            batch["skipped"] = dict(counter.counts)
            yield batch


class BatchIterator:
    """Endless micro-batches across epochs, tracking DataState as batches are consumed."""

    def __init__(self, data: DataConfig, processor: Glm4vProcessor, config: Glm4vConfig, seed: int,
                 rank: int = 0, world: int = 1, state: DataState | None = None) -> None:
        self.args = (data, processor, config, seed, rank, world)
        self.data = data
        self.state = state or DataState(num_workers=max(1, data.num_workers))
        self._skipped: dict[int, dict[str, int]] = {}
        self._base = dict(self.state.skipped)  # counts from before a resume
        self._it: Iterator[dict] | None = None

    def _loader(self) -> Iterator[dict]:
        data = self.data
        ds = PackedStream(*self.args, state=DataState.from_state_dict(self.state.state_dict()))
        kw = dict(num_workers=data.num_workers, batch_size=None)
        if data.num_workers > 0:
            kw.update(prefetch_factor=data.prefetch_factor, persistent_workers=False)
        return iter(DataLoader(ds, **kw))

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._it = self._loader()
            try:
                batch = next(self._it)
            except StopIteration:  # epoch over (only with samples_per_epoch)
                self._it = None
                self._base, self._skipped = dict(self.state.skipped), {}
                self.state.epoch += 1
                self.state.batches = 0
                self.state.resume_from = [0] * self.state.num_workers
                continue
            w = batch.pop("worker")
            self._skipped[w] = batch.pop("skipped")
            self.state.resume_from[w] = batch.pop("resume_from") or 0
            self.state.batches += 1
            self.state.skipped = _sum_counts([self._base, *self._skipped.values()])
            return batch
        raise RuntimeError("the data stream yields no batches: check the shards and data.seq_len")


def _sum_counts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
