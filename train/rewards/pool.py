"""Scoring many (domain, answer, truth) items in parallel, each under a hard timeout.

Built on `pebble.ProcessPool`: a task that overruns its timeout has its worker process killed and replaced, which
no in-process timer can do (sympy may hang inside one C call; math-verify's `signal.alarm` timeout works only on
a main thread). Per-call overhead is kept low by sending chunks of items per task, sized from the measured cost
per item to about `chunk_s` of work (a task costs the caller about half a millisecond of CPU, so cheap verifiers
need hundreds of items per task); a chunk gets `timeout_s` in all, and a chunk that overruns it (or whose worker dies) is re-run one item per task, each with its own
`timeout_s`, so an item is scored as a timeout (0, reason `timeout`, counted) only when it alone overruns.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from pebble import ProcessExpired, ProcessPool

from train.rewards.base import BUILTINS, Verdict, get_verifier

Item = tuple[str, str, str]  # (domain, answer, truth)
_SHOWN = 300  # extracted/compared text sent back per item, at most


@dataclass
class PoolStats:
    """Counters over the pool's life: items scored, timeouts, errors (a verifier raised, a worker died),
    chunks re-run item by item."""

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


Row = tuple[float, str | None, str | None, str]  # a Verdict as a plain tuple: pickles ~6x faster


def _score_chunk(items: list[Item]) -> tuple[float, list[Row]]:
    """(seconds taken, verdicts) for a chunk, in a worker; an exception is that item's verdict (0, `error:…`),
    not the chunk's."""
    start = time.perf_counter()
    out: list[Row] = []
    verifiers: dict[str, Any] = {}
    for domain, answer, truth in items:
        try:
            verifier = verifiers.get(domain)
            if verifier is None:
                verifier = verifiers[domain] = get_verifier(domain, _CONFIGS.get(domain))
            v = verifier.score(answer, truth)
            score = float(v.score)
            if not 0.0 <= score <= 1.0:  # also nan
                score = min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
            out.append((score, _clip(v.extracted), _clip(v.compared), v.reason))
        except Exception as exc:  # noqa: BLE001 - a failing verifier scores 0 with the reason, the batch goes on
            out.append((0.0, None, None, f"error:{type(exc).__name__}: {str(exc)[:200]}"))
    return time.perf_counter() - start, out


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= _SHOWN else str(text)[:_SHOWN] + "…"


class RewardPool:
    """Warm worker processes that score batches: `with RewardPool(workers=2) as pool: pool.score(items)`.

    `configs` maps a domain to its verifier options (`{"grounding": {"iou_threshold": 0.7}}`); `context` is a
    multiprocessing start method (default: the platform's; pass `forkserver` or `spawn` from a process whose
    threads must not be forked)."""

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, chunk_size: int = 1024, chunk_s: float = 0.1,
                 configs: dict[str, dict[str, Any]] | None = None, context: str | None = None,
                 domains: list[str] | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = timeout_s
        self.chunk_size = max(1, chunk_size)  # most items per task
        self.chunk_s = chunk_s  # aimed-at seconds of work per task
        self._per_item: float | None = None  # running estimate of a worker's seconds per item
        self.configs = configs or {}
        self.stats = PoolStats()
        self._lock = threading.Lock()
        warm(self.configs, domains)
        ctx = multiprocessing.get_context(context)
        self._pool = ProcessPool(max_workers=self.workers, initializer=warm, initargs=(self.configs, domains),
                                 context=ctx)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (a stuck one is killed)."""
        self._pool.stop()
        self._pool.join()

    def score(self, items: list[Item] | list[tuple[str, str, str]]) -> Scores:
        """Verdicts for `items` in their order; every item gets one, whatever happens to it."""
        out: Scores = Scores([None] * len(items))  # type: ignore[list-item]
        out.stats = PoolStats()
        guess = 32 if self._per_item is None else int(self.chunk_s / max(self._per_item, 1e-7))
        size = max(1, min(self.chunk_size, guess, math.ceil(len(items) / (2 * self.workers))))
        chunks = [(i, items[i:i + size]) for i in range(0, len(items), size)]
        futures = [(start, chunk, self._pool.schedule(_score_chunk, args=(chunk,), timeout=self.timeout_s))
                   for start, chunk in chunks]
        retry: list[tuple[int, Item, Any]] = []
        for start, chunk, fut in futures:
            try:
                took, rows = fut.result()
                out[start:start + len(chunk)] = map(Verdict._make, rows)
                per = took / len(chunk)
                self._per_item = per if self._per_item is None else 0.7 * self._per_item + 0.3 * per
            except (FutureTimeout, ProcessExpired, OSError, RuntimeError):
                out.stats.split_chunks += 1
                retry.extend((start + j, it, self._pool.schedule(_score_chunk, args=([it],), timeout=self.timeout_s))
                             for j, it in enumerate(chunk))
        for idx, item, fut in retry:
            try:
                out[idx] = Verdict._make(fut.result()[1][0])
            except FutureTimeout:
                out[idx] = Verdict(0.0, None, str(item[2])[:_SHOWN], "timeout")
            except (ProcessExpired, OSError, RuntimeError) as exc:
                out[idx] = Verdict(0.0, None, str(item[2])[:_SHOWN], f"error:worker_died: {exc}")
        for (domain, _, _), v in zip(items, out, strict=True):
            out.stats.items += 1
            out.stats.by_domain[domain] = out.stats.by_domain.get(domain, 0) + 1
            if v.reason == "timeout":
                out.stats.timeouts += 1
            elif v.reason.startswith("error:"):
                out.stats.errors += 1
        with self._lock:
            s = self.stats
            s.items += out.stats.items
            s.timeouts += out.stats.timeouts
            s.errors += out.stats.errors
            s.split_chunks += out.stats.split_chunks
            for d, n in out.stats.by_domain.items():
                s.by_domain[d] = s.by_domain.get(d, 0) + n
        return out


def score_batch(items: list[Item], timeout_s: float = 5.0, workers: int | None = None,
                configs: dict[str, dict[str, Any]] | None = None) -> Scores:
    """Score a batch in a fresh pool (for a one-off; keep a `RewardPool` open to score many batches)."""
    with RewardPool(workers=workers, timeout_s=timeout_s, configs=configs) as pool:
        return pool.score(items)
