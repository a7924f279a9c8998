"""The server's single generation thread: it gathers the requests that arrive within a few milliseconds (and all
that queued up while the previous batch ran) into one batch, so concurrent requests share one `generate`."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from model.serve.engine import Engine, Job, Result

log = logging.getLogger(__name__)

Done = Callable[[Result | BaseException], None]


class BatchWorker:
    def __init__(self, engine: Engine, max_batch_rows: int = 32, batch_wait_s: float = 0.01):
        self.engine = engine
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_s
        self._queue: queue.Queue[tuple[Job, Done] | None] = queue.Queue()
        self._carry: tuple[Job, Done] | None = None  # a job that did not fit the last batch: first in the next
        self.stats = {"batches": 0, "requests": 0, "rows": 0, "largest_batch_requests": 0}
        self._thread = threading.Thread(target=self._loop, name="generate", daemon=True)
        self._thread.start()

    def submit(self, job: Job, done: Done) -> None:
        """`done` is called from the worker thread with the job's Result, or the exception that failed it."""
        self._queue.put((job, done))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _collect(self, first: tuple[Job, Done]) -> tuple[list[tuple[Job, Done]], bool]:
        batch, rows = [first], first[0].params.n
        deadline = time.monotonic() + self.batch_wait_s
        while rows < self.max_batch_rows:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            if rows + item[0].params.n > self.max_batch_rows:
                self._carry = item
                break
            batch.append(item)
            rows += item[0].params.n
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first, self._carry = self._carry or self._queue.get(), None
            if first is None:
                return
            batch, stop = self._collect(first)
            batch = [(job, done) for job, done in batch if not job.cancelled.is_set()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[tuple[Job, Done]]) -> None:
        st = self.stats
        st["batches"] += 1
        st["requests"] += len(batch)
        st["rows"] += sum(job.params.n for job, _ in batch)
        st["largest_batch_requests"] = max(st["largest_batch_requests"], len(batch))
        try:
            results = self.engine.run([job for job, _ in batch])
        except Exception as exc:  # noqa: BLE001 - reported to each request, never kills the worker
            log.exception("generation failed for a batch of %d requests", len(batch))
            # Rerun the others one by one so only a job that fails on its own gets the error; a streaming job
            # already sent part of its text, so it fails with the batch instead of being sent twice.
            for job, done in batch:
                if len(batch) > 1 and job.on_event is None:
                    self._run([(job, done)])
                else:
                    done(exc)
            return
        for (_, done), result in zip(batch, results, strict=True):
            done(result)
