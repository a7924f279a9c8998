"""Scoring many (domain, answer, truth) items in parallel, each under a hard timeout.

Built on `pebble.ProcessPool`: a task that overruns its deadline has its worker process killed and replaced, which
no in-process timer can do (sympy may hang inside one C call; math-verify's `signal.alarm` timeout works only on
a main thread). Per-item overhead is kept low by sending chunks of items per task, as columns of plain strings,
sized from the measured CPU cost per item to about `chunk_s` of work (a task costs the caller and a worker about
0.3 ms of CPU in all, so cheap verifiers need hundreds of items per task).

Every item still gets its own `timeout_s`: a worker writes, into an array shared with the caller, which item of
its chunk it is scoring and since when. A chunk's deadline is `timeout_s` for the item that may hang plus
`timeout_s` for the rest (chunks are sized to a small fraction of that); when a chunk overruns it (or its worker
dies), the caller reads how far it got: the item in progress scores 0 as a `timeout` if it alone ran for
`timeout_s` (else it is re-run alone with its own `timeout_s`; a worker that dies on it twice is `error:worker_died`),
and the items before and after it are re-run as chunks, so only the stuck item scores 0.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

from pebble import ProcessExpired, ProcessPool

from train.rewards.base import BUILTINS, Verdict, get_verifier

Item = tuple[str, str, str]  # (domain, answer, truth)
_SHOWN = 300  # extracted/compared text sent back per item, at most
_SLOTS = 8192  # chunks in flight that report their progress (more still run; a failure then re-runs item by item)
_FAILED = (FutureTimeout, ProcessExpired, OSError, RuntimeError)  # a task that gave no result


@dataclass
class PoolStats:
    """Counters over the pool's life: items scored, timeouts, errors (a verifier raised, a worker died),
    chunks that overran their deadline or lost their worker and were split around the item in progress."""

    items: int = 0
    timeouts: int = 0
    errors: int = 0
    split_chunks: int = 0
    by_domain: dict[str, int] = field(default_factory=dict)


class Scores(list[Verdict]):
    """The verdicts of one batch, in input order, with that batch's counters as `stats`."""

    stats: PoolStats


_CONFIGS: dict[str, dict[str, Any]] = {}


def warm(configs: dict[str, dict[str, Any]] | None = None, domains: list[str] | None = None) -> None:
    """Build the verifiers once in this process (imports, pint's registry), so workers forked from it, or set up
    by it, answer their first item at full speed."""
    _CONFIGS.clear()
    _CONFIGS.update(configs or {})
    for name in domains if domains is not None else list(BUILTINS):
        verifier = get_verifier(name, _CONFIGS.get(name))
        if name in ("physics", "chemistry"):
            from train.rewards.physics import units

            units()
        del verifier


_PROGRESS: memoryview | None = None  # in a worker: per slot, [index of the item being scored, its start in ns]


def _init_worker(configs: dict[str, dict[str, Any]], domains: list[str] | None, progress: Any) -> None:
    """A worker's setup: warm verifiers, the shared progress array, and the warm heap moved out of the garbage
    collector's sight (it never becomes garbage; scanning it on every full collection is pure overhead)."""
    global _PROGRESS
    warm(configs, domains)
    _PROGRESS = memoryview(progress).cast("B").cast("q")
    gc.freeze()


Columns = tuple[float, int, list[float], list[str | None], list[str | None], list[str]]


def _score_chunk(slot: int, domains: str | tuple[str, ...], answers: tuple[str, ...],
                 truths: tuple[str, ...]) -> Columns:
    """Score a chunk in a worker: (CPU seconds taken, errors, scores, extracted, compared, reasons). `domains` is
    one name for the whole chunk or one per item. An exception is that item's verdict (0, `error:…`), not the
    chunk's. Before each item, its index and start time go to progress slot `slot` (-1: none)."""
    start = time.thread_time()
    progress = _PROGRESS if slot >= 0 else None
    at = 2 * slot
    now = time.monotonic_ns
    scores: list[float] = []
    extracted: list[str | None] = []
    compared: list[str | None] = []
    reasons: list[str] = []
    errors = 0
    verifiers: dict[str, Any] = {}
    names = repeat(domains, len(answers)) if isinstance(domains, str) else domains
    for i, (domain, answer, truth) in enumerate(zip(names, answers, truths, strict=True)):
        if progress is not None:
            progress[at] = i
            progress[at + 1] = now()
        try:
            verifier = verifiers.get(domain)
            if verifier is None:
                verifier = verifiers[domain] = get_verifier(domain, _CONFIGS.get(domain))
            score, ext, cmp, reason = verifier.score(answer, truth)
            score = float(score)
            if not 0.0 <= score <= 1.0:  # also nan
                score = min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
        except Exception as exc:  # noqa: BLE001 - a failing verifier scores 0 with the reason, the batch goes on
            score, ext, cmp, reason = 0.0, None, None, f"error:{type(exc).__name__}: {str(exc)[:200]}"
            errors += 1
        scores.append(score)
        extracted.append(ext if ext is None or len(ext) <= _SHOWN else str(ext)[:_SHOWN] + "…")
        compared.append(cmp if cmp is None or len(cmp) <= _SHOWN else str(cmp)[:_SHOWN] + "…")
        reasons.append(reason)
    if progress is not None:
        progress[at] = len(answers)  # all scored: a failure from here on lost results, not an item
    return time.thread_time() - start, errors, scores, extracted, compared, reasons


def _stamp(future: Any) -> None:
    future.done_ns = time.monotonic_ns()  # when the task ended (for a killed chunk: when its worker was stopped)


@dataclass
class _Job:
    start: int  # index of the chunk's first item in the batch
    items: list[Item]
    slot: int
    future: Any


class RewardPool:
    """Warm worker processes that score batches: `with RewardPool(workers=2) as pool: pool.score(items)`.

    `configs` maps a domain to its verifier options (`{"grounding": {"iou_threshold": 0.7}}`); `context` is a
    multiprocessing start method (default: the platform's; pass `forkserver` or `spawn` from a process whose
    threads must not be forked). Safe to call `score` from several threads at once."""

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, chunk_size: int = 1024, chunk_s: float = 0.1,
                 configs: dict[str, dict[str, Any]] | None = None, context: str | None = None,
                 domains: list[str] | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = timeout_s
        self.chunk_size = max(1, chunk_size)  # most items per task
        self.chunk_s = chunk_s  # aimed-at CPU seconds of work per task
        self._per_item: float | None = None  # running estimate of a worker's CPU seconds per item
        self.configs = configs or {}
        self.stats = PoolStats()
        self._lock = threading.Lock()
        warm(self.configs, domains)
        ctx = multiprocessing.get_context(context)
        self._progress = ctx.RawArray("q", 2 * _SLOTS)  # shared with every worker, replacements included
        self._view = memoryview(self._progress).cast("B").cast("q")
        self._free = list(range(_SLOTS))
        self._pool = ProcessPool(max_workers=self.workers, initializer=_init_worker,
                                 initargs=(self.configs, domains, self._progress), context=ctx)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (a stuck one is killed)."""
        self._pool.stop()
        self._pool.join()

    def _chunk_len(self, n: int) -> int:
        if self._per_item is None:
            guess = 32
        else:  # about chunk_s of work, and far below the deadline's slack for the items besides a stuck one
            guess = int(min(self.chunk_s, self.timeout_s / 10) / max(self._per_item, 1e-7))
        return max(1, min(self.chunk_size, guess, math.ceil(n / (2 * self.workers))))

    def _submit(self, start: int, items: list[Item]) -> _Job:
        """Schedule `items` as one task: a single item under `timeout_s`; a chunk under `2 * timeout_s`, reporting
        its progress in a slot when one is free."""
        slot = -1
        if len(items) > 1:
            with self._lock:
                slot = self._free.pop() if self._free else -1
            if slot >= 0:
                self._view[2 * slot] = -1
        domains, answers, truths = zip(*items, strict=True)
        first = domains[0]
        same = domains.count(first) == len(domains)
        deadline = self.timeout_s * min(len(items), 2)
        future = self._pool.schedule(_score_chunk, args=(slot, first if same else domains, answers, truths),
                                     timeout=deadline)
        if slot >= 0:
            future.add_done_callback(_stamp)
        return _Job(start, items, slot, future)

    def _release(self, slot: int) -> tuple[int, int]:
        """Free a slot whose task has ended; (the index of the item it was at, that item's start in ns)."""
        if slot < 0:
            return -1, 0
        at = self._view[2 * slot], self._view[2 * slot + 1]
        with self._lock:
            self._free.append(slot)
        return at

    def score(self, items: list[Item] | list[tuple[str, str, str]]) -> Scores:
        """Verdicts for `items` in their order; every item gets one, whatever happens to it."""
        n = len(items)
        out: Scores = Scores([None] * n)  # type: ignore[list-item]
        stats = out.stats = PoolStats()
        size = self._chunk_len(n)
        jobs = deque(self._submit(i, items[i:i + size]) for i in range(0, n, size))
        timeout, took, scored = self.timeout_s * 1e9, 0.0, 0
        while jobs:
            job = jobs.popleft()
            try:
                cpu, errors, *columns = job.future.result()
            except _FAILED as exc:
                k, began = self._release(job.slot)
                self._failed(job, exc, k, began, timeout, out, jobs)
                continue
            self._release(job.slot)
            out[job.start:job.start + len(job.items)] = map(Verdict._make, zip(*columns, strict=True))
            stats.errors += errors
            took, scored = took + cpu, scored + len(job.items)
        if scored >= 8:  # CPU time is steady under load, unlike wall time; tiny batches say little
            per = took / scored
            self._per_item = per if self._per_item is None else 0.7 * self._per_item + 0.3 * per
        stats.items = n
        stats.by_domain = dict(Counter(map(itemgetter(0), items)))
        with self._lock:
            s = self.stats
            s.items += stats.items
            s.timeouts += stats.timeouts
            s.errors += stats.errors
            s.split_chunks += stats.split_chunks
            for d, c in stats.by_domain.items():
                s.by_domain[d] = s.by_domain.get(d, 0) + c
        return out

    def _failed(self, job: _Job, exc: BaseException, k: int, began: int, timeout: float, out: Scores,
                jobs: deque[_Job]) -> None:
        """A task gave no result (deadline passed, worker died, pool broken): verdicts for a single item; for a
        chunk, the item in progress is settled and the items around it are re-run."""
        stats = out.stats
        chunk = job.items
        if len(chunk) == 1:
            item = chunk[0]
            if isinstance(exc, FutureTimeout):
                out[job.start] = Verdict(0.0, None, str(item[2])[:_SHOWN], "timeout")
                stats.timeouts += 1
            else:
                out[job.start] = Verdict(0.0, None, str(item[2])[:_SHOWN], f"error:worker_died: {exc}")
                stats.errors += 1
            return
        stats.split_chunks += 1
        if not 0 <= k < len(chunk):  # never started, no slot, or lost after scoring all: each item alone
            jobs.extend(self._submit(job.start + j, [it]) for j, it in enumerate(chunk))
            return
        if k:
            jobs.append(self._submit(job.start, chunk[:k]))
        ended = getattr(job.future, "done_ns", None) or time.monotonic_ns()
        if isinstance(exc, FutureTimeout) and ended - began >= timeout:
            out[job.start + k] = Verdict(0.0, None, str(chunk[k][2])[:_SHOWN], "timeout")
            stats.timeouts += 1
        else:  # it had less than its own timeout, or its worker died: once more, alone
            jobs.append(self._submit(job.start + k, [chunk[k]]))
        if k + 1 < len(chunk):
            jobs.append(self._submit(job.start + k + 1, chunk[k + 1:]))


def score_batch(items: list[Item], timeout_s: float = 5.0, workers: int | None = None,
                configs: dict[str, dict[str, Any]] | None = None) -> Scores:
    """Score a batch in a fresh pool (for a one-off; keep a `RewardPool` open to score many batches)."""
    with RewardPool(workers=workers, timeout_s=timeout_s, configs=configs) as pool:
        return pool.score(items)
