"""The server's single generation thread. Requests that arrive within a few milliseconds form one batch; a request
that arrives while a batch runs does not wait for the whole batch: the batch pauses after a few steps, and the
unfinished rows resume together with the newcomers in the next `generate` (their text so far re-read as prompt)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from model.serve.engine import Engine, Job, Result, Row

log = logging.getLogger(__name__)

Done = Callable[[Result | BaseException], None]


@dataclass
class _Active:
    job: Job
    done: Done
    rows: list[Row]

    @property
    def finished(self) -> bool:
        return all(r.finish is not None for r in self.rows)


class BatchWorker:
    def __init__(self, engine: Engine, max_batch_rows: int = 32, batch_wait_s: float = 0.01):
        self.engine = engine
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_s
        self._queue: queue.Queue[tuple[Job, Done] | None] = queue.Queue()
        self._carry: tuple[Job, Done] | None = None  # a job that did not fit the last batch: first in the next
        self._closing = False
        self.stats = {"batches": 0, "requests": 0, "rows": 0, "largest_batch_requests": 0, "resumed": 0}
        self._thread = threading.Thread(target=self._loop, name="generate", daemon=True)
        self._thread.start()

    def submit(self, job: Job, done: Done) -> None:
        """`done` is called from the worker thread with the job's Result, or the exception that failed it."""
        self._queue.put((job, done))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _take(self, room: int, wait_s: float) -> list[tuple[Job, Done]]:
        """Queued jobs that fit in `room` rows, waiting up to `wait_s` for more to arrive."""
        taken: list[tuple[Job, Done]] = []
        deadline = time.monotonic() + wait_s
        while room > 0 and not self._closing:
            if self._carry is not None:
                item, self._carry = self._carry, None
            else:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if item is None:
                self._closing = True
                break
            if item[0].params.n > room and (taken or room < self.max_batch_rows):
                self._carry = item
                break
            taken.append(item)
            room -= item[0].params.n
        return taken

    def _should_yield(self, unfinished: int) -> bool:
        room = self.max_batch_rows - unfinished
        if self._carry is not None:
            return self._carry[0].params.n <= room
        return room > 0 and not self._queue.empty()

    def _loop(self) -> None:
        active: list[_Active] = []
        while True:
            if not active:
                if self._closing:
                    return
                first = self._carry or self._queue.get()
                self._carry = None
                if first is None:
                    return
                self._carry = first
                new = self._take(self.max_batch_rows, self.batch_wait_s)
            else:
                used = sum(1 for a in active for r in a.rows if r.finish is None)
                new = self._take(self.max_batch_rows - used, 0.0)
            for job, done in new:
                if not job.cancelled.is_set():
                    active.append(_Active(job, done, self.engine.new_rows(job)))
            if not active:
                continue
            if not self._step(active):
                active = []
                continue
            for a in [a for a in active if a.finished]:
                a.done(self.engine.result(a.job, a.rows))
            active = [a for a in active if not a.finished]

    def _step(self, active: list[_Active]) -> bool:
        """One generate over the active rows; False when it failed (every job has then been answered)."""
        rows = [r for a in active for r in a.rows if r.finish is None]
        st = self.stats
        st["batches"] += 1
        st["requests"] += sum(1 for a in active if not any(r.tokens for r in a.rows))
        st["rows"] += len(rows)
        st["resumed"] += sum(1 for r in rows if r.tokens)
        st["largest_batch_requests"] = max(st["largest_batch_requests"], len(active))
        try:
            self.engine.step(rows, should_yield=None if self._closing else self._should_yield)
        except Exception as exc:  # noqa: BLE001 - reported to each request, never kills the worker
            log.exception("generation failed for a batch of %d requests", len(active))
            # Rerun the others alone from the start so only a job that fails on its own gets the error; a
            # streaming job already sent part of its text, so it fails with the batch instead of repeating it.
            for a in active:
                if len(active) > 1 and a.job.on_event is None:
                    try:
                        a.done(self.engine.run([a.job])[0])
                    except Exception as again:  # noqa: BLE001
                        a.done(again)
                else:
                    a.done(exc)
            return False
        return True
