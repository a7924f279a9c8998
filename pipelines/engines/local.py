"""Local engine: passes run on a process pool over parts (no JVM, no Beam); reduces run in this process.

For small inputs, operator authors and tests. The passes, spills and markers are the same files the Spark and
Beam engines use (engines schedule, they do not transform), so all three give the same ledger and shards.
`workers: 0` runs everything in this process (a debugger sees the operators).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pipelines.execute import PassRunner
from pipelines.readers.base import Part
from pipelines.run import reduce_in_process
from pipelines.spec import EngineConfig, PipelineSpec


def _warm(spec: PipelineSpec | None) -> None:
    """A worker's start: import the recipe's operator modules and the built-in sources (PIL, numpy, …) while the
    driver still plans the inputs, not at the first part of the first pass."""
    import pipelines.readers.builtin  # noqa: F401

    if spec is not None:
        spec.operators()


def _ready() -> int:
    return os.getpid()


def _run_part(runner: PassRunner, k: int, part: Part) -> dict[str, Any]:
    result = dict(runner.run(k, part))
    result["worker_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result


class LocalEngine:
    """Schedules one task per part on a pool of worker processes that lives as long as the engine (operators are set
    up once per worker and reused across passes). A worker that dies (a crash, an OOM kill) fails only its parts,
    which are retried on a fresh pool up to `task_retries` times."""

    name = "local"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="local")
        workers = self.config.workers
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._spec: PipelineSpec | None = None  # what a fresh worker imports at start (see warm_up)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers start from a clean process (no threads of the caller's, e.g. Prefect's, copied).
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pipelines.execute", "pyarrow"])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_warm,
                                             initargs=(self._spec,))
        return self._pool

    def warm_up(self, spec: PipelineSpec | None = None) -> None:
        """Start every worker now and import `spec`'s operators in each (a caller plans its inputs meanwhile), so
        the first pass starts on warm workers. Idempotent; a no-op with `workers: 0`."""
        if self.workers == 0 or self._pool is not None:
            return
        self._spec = spec
        pool = self._executor()
        # One call per worker, submitted together: the pool starts a new worker for each call no idle one takes.
        try:
            for future in [pool.submit(_ready) for _ in range(self.workers)]:
                future.result()
        except BrokenProcessPool:  # a worker died at start: the passes start a plain pool and report it per part
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._spec = None, None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:  # noqa: D105
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def run_pass(self, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
        if self.workers == 0:
            return [_run_part(runner, k, p) for p in parts]
        results: dict[int, dict[str, Any]] = {}
        attempts: Counter[int] = Counter()
        todo = list(parts)
        while todo:
            pool = self._executor()
            futures: dict[int, Future] = {p.id: pool.submit(_run_part, runner, k, p) for p in todo}
            failed: list[Part] = []
            for part in todo:
                try:
                    results[part.id] = futures[part.id].result()
                except BrokenProcessPool:
                    attempts[part.id] += 1
                    if attempts[part.id] > self.config.task_retries:
                        raise RuntimeError(
                            f"local engine: part {part.id} ({part.path or part.root}) killed its worker "
                            f"{attempts[part.id]} times in {runner.describe(k)}; see the worker's output above (a script "
                            "that runs a pipeline must guard its entry point with `if __name__ == '__main__':`, as "
                            "Python's multiprocessing requires)"
                        ) from None
                    failed.append(part)
            if failed:
                self._pool = None  # a broken pool cannot be reused: start a fresh one for the failed parts
            todo = failed
        return [results[p.id] for p in parts]

    def reduce(self, runner: PassRunner, parts: list[Part], k: int) -> int:
        """The keyed reduce in this process over the key rows pass `k` left (they are small)."""
        return reduce_in_process(runner, parts, k)
