"""Scoring many (domain, answer, truth) items in parallel, each under a hard timeout.

Built on `pebble.ProcessPool`: a task that overruns its deadline has its worker process killed and replaced, which
no in-process timer can do (sympy may hang inside one C call; math-verify's `signal.alarm` timeout works only on
a main thread). Per-item overhead is kept low by sending chunks of items per task: a batch is grouped by domain,
and each domain's items go as columns of plain strings in chunks sized from that domain's measured CPU cost per
item to about `chunk_s` of work (a task costs the caller and a worker about 0.3 ms of CPU in all, so cheap
verifiers need hundreds of items per task).

Where the rest goes, per OCR item (~35 µs of verifier, 2 workers, measured 2026-12-01 from per-thread CPU): the
caller's main thread ~1.0 µs (grouping, building the returned `Verdict`s; the garbage collector's passes over them
cost the plain in-process loop the same), pebble's scheduler thread ~0.7 µs (pickling the chunk's strings into the
pipe), its message thread ~0.7 µs (results out of the pipe), a worker's loop ~0.3-1 µs beyond the verifier (the
progress stamp, clipping). Packing a chunk's strings into one string plus lengths was measured slower than pickling
the tuple of strings (slicing them apart again costs more than pickle's own per-string work), so it is not done.

Every item still gets its own `timeout_s`: a worker writes, into an array shared with the caller, which item of
its chunk it is scoring and since when. A chunk's deadline is `timeout_s` for the item that may hang plus
`timeout_s` for the rest (chunks are sized to a tenth of that at most); when a chunk overruns it (or its worker
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


def _score_chunk(slot: int, domain: str, answers: tuple[str, ...], truths: tuple[str, ...]) -> Columns:
    """Score a chunk of one domain in a worker: (CPU seconds taken, errors, scores, extracted, compared, reasons);
    `compared` is None when every item compared its own truth as given (the caller has those: fewer bytes back).
    An exception is that item's verdict (0, `error:…`), not the chunk's. Before each item, its index and start
    time go to progress slot `slot` (-1: none)."""
    start = time.thread_time()
    same = True  # every compared text is the truth as given
    progress = _PROGRESS if slot >= 0 else None
    at = 2 * slot
    now = time.monotonic_ns
    scores: list[float] = []
    extracted: list[str | None] = []
    compared: list[str | None] = []
    reasons: list[str] = []
    seen: dict[str, str] = {}
    errors = 0
    verifier: Any = None
    failure: Exception | None = None
    try:
        verifier = get_verifier(domain, _CONFIGS.get(domain))
    except Exception as exc:  # noqa: BLE001 - an unknown or broken domain: each of its items says why
        failure = exc
    failure_text = str(failure)
    for i, (answer, truth) in enumerate(zip(answers, truths, strict=True)):
        if progress is not None:
            progress[at] = i
            progress[at + 1] = now()
        try:
            if failure is not None:
                raise ValueError(failure_text)
            score, ext, cmp, reason = verifier.score(answer, truth)
            score = float(score)
            if not 0.0 <= score <= 1.0:  # also nan
                score = min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
            if ext is not None and len(ext) > _SHOWN:
                ext = str(ext)[:_SHOWN] + "…"
            if cmp is not None and len(cmp) > _SHOWN:
                cmp = str(cmp)[:_SHOWN] + "…"
            reason = seen.setdefault(reason, reason)  # one object per distinct reason: pickled once, shared back
        except Exception as exc:  # noqa: BLE001 - a failing verifier scores 0 with the reason, the batch goes on
            kind = type(failure if failure is not None else exc).__name__
            score, ext, cmp, reason = 0.0, None, None, f"error:{kind}: {str(exc)[:200]}"
            errors += 1
        same = same and cmp == truth
        scores.append(score)
        extracted.append(ext)
        compared.append(cmp)
        reasons.append(reason)
    if progress is not None:
        progress[at] = len(answers)  # all scored: a failure from here on lost results, not an item
    return time.thread_time() - start, errors, scores, extracted, None if same else compared, reasons


def _stamp(future: Any) -> None:
    future.done_ns = time.monotonic_ns()  # when the task ended (for a killed chunk: when its worker was stopped)


@dataclass
class _Job:
    where: range | list[int]  # the chunk's positions in the batch
    items: list[Item]  # all of one domain
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
        self._cost: dict[str, float] = {}  # running estimate of a worker's CPU seconds per item, per domain
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

    def _chunk_len(self, domain: str, batch: int) -> int:
        cost = self._cost.get(domain)
        if cost is None:
            guess = 32
        else:  # about chunk_s of work, and far below the deadline's slack for the items besides a stuck one
            guess = int(min(self.chunk_s, self.timeout_s / 10) / max(cost, 1e-7))
        return max(1, min(self.chunk_size, guess, math.ceil(batch / (2 * self.workers))))

    def _submit(self, where: range | list[int], items: list[Item]) -> _Job:
        """Schedule `items` (one domain) as one task: a single item under `timeout_s`; a chunk under
        `2 * timeout_s`, reporting its progress in a slot when one is free."""
        slot = -1
        if len(items) > 1:
            with self._lock:
                slot = self._free.pop() if self._free else -1
            if slot >= 0:
                self._view[2 * slot] = -1
        _, answers, truths = zip(*items, strict=True)
        future = self._pool.schedule(_score_chunk, args=(slot, items[0][0], answers, truths),
                                     timeout=self.timeout_s * min(len(items), 2))
        if slot >= 0:
            future.add_done_callback(_stamp)
        return _Job(where, items, slot, future)

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
        stats.by_domain = dict(Counter(map(itemgetter(0), items)))
        groups: dict[str, range | list[int]]
        if len(stats.by_domain) <= 1:
            groups = {d: range(n) for d in stats.by_domain}
        else:  # chunks of one domain each: sized by that domain's cost, and timed per domain
            groups = {d: [] for d in stats.by_domain}
            for i, it in enumerate(items):
                groups[it[0]].append(i)  # type: ignore[union-attr]
        jobs: deque[_Job] = deque()
        for domain, where in groups.items():
            size = self._chunk_len(domain, n)
            for i in range(0, len(where), size):
                part = where[i:i + size]
                jobs.append(self._submit(part, items[part.start:part.stop] if isinstance(part, range)
                                         else [items[j] for j in part]))
        timeout = self.timeout_s * 1e9
        took: dict[str, list[float]] = {}
        while jobs:
            job = jobs.popleft()
            try:
                cpu, errors, scores, extracted, compared, reasons = job.future.result()
            except _FAILED as exc:
                k, began = self._release(job.slot)
                self._failed(job, exc, k, began, timeout, out, jobs)
                continue
            self._release(job.slot)
            if compared is None:  # each compared its own truth
                compared = map(itemgetter(2), job.items)
            # Verdicts from 4-tuples at C speed (Verdict._make is a Python function)
            verdicts = map(tuple.__new__, repeat(Verdict), zip(scores, extracted, compared, reasons, strict=True))
            if isinstance(job.where, range):
                out[job.where.start:job.where.stop] = verdicts
            else:
                for j, v in zip(job.where, verdicts, strict=True):
                    out[j] = v
            stats.errors += errors
            t = took.setdefault(job.items[0][0], [0.0, 0])
            t[0] += cpu
            t[1] += len(job.items)
        for domain, (cpu, count) in took.items():
            if count >= 8:  # CPU time is steady under load, unlike wall time; a few items say little
                old = self._cost.get(domain)
                self._cost[domain] = cpu / count if old is None else 0.7 * old + 0.3 * cpu / count
        stats.items = n
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
        chunk, where = job.items, job.where
        if len(chunk) == 1:
            truth = str(chunk[0][2])[:_SHOWN]
            if isinstance(exc, FutureTimeout):
                out[where[0]] = Verdict(0.0, None, truth, "timeout")
                stats.timeouts += 1
            else:
                out[where[0]] = Verdict(0.0, None, truth, f"error:worker_died: {exc}")
                stats.errors += 1
            return
        stats.split_chunks += 1
        if not 0 <= k < len(chunk):  # never started, no slot, or lost after scoring all: each item alone
            jobs.extend(self._submit(where[j:j + 1], [it]) for j, it in enumerate(chunk))
            return
        if k:
            jobs.append(self._submit(where[:k], chunk[:k]))
        ended = getattr(job.future, "done_ns", None) or time.monotonic_ns()
        if isinstance(exc, FutureTimeout) and ended - began >= timeout:
            out[where[k]] = Verdict(0.0, None, str(chunk[k][2])[:_SHOWN], "timeout")
            stats.timeouts += 1
        else:  # it had less than its own timeout, or its worker died: once more, alone
            jobs.append(self._submit(where[k:k + 1], [chunk[k]]))
        if k + 1 < len(chunk):
            jobs.append(self._submit(where[k + 1:], chunk[k + 1:]))


def score_batch(items: list[Item], timeout_s: float = 5.0, workers: int | None = None,
                configs: dict[str, dict[str, Any]] | None = None) -> Scores:
    """Score a batch in a fresh pool (for a one-off; keep a `RewardPool` open to score many batches)."""
    with RewardPool(workers=workers, timeout_s=timeout_s, configs=configs) as pool:
        return pool.score(items)
