"""Progress of a pass, for any engine: the driver watches the files workers finish (spills, part markers).

Engines only schedule, so progress is read where the work lands: a part is done when its completion marker (the
shard pass) or its keys with its spill (a pass that ends in a reduce; the spill goes once a later pass finished the
part) exist, as `PassRunner.part_done` says. Rows are counted from the parts' planned sizes (a tar's rows are unknown
until read, so its bytes stand in for it). Callers render it (rich, Prefect artifacts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.execute import PassRunner
from pipelines.readers.base import Part


@dataclass
class Snapshot:
    label: str
    parts_done: int
    parts_total: int
    rows_done: int
    rows_total: int
    seconds: float

    @property
    def fraction(self) -> float:
        return self.rows_done / self.rows_total if self.rows_total else self.parts_done / max(1, self.parts_total)

    @property
    def rate(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before the first part is done."""
        if not self.rows_done or self.rate <= 0:
            return None
        return max(0.0, (self.rows_total - self.rows_done) / self.rate)

    def line(self) -> str:
        eta = "?" if self.eta is None else f"{self.eta:.0f} s"
        return (f"{self.label}: {self.rows_done}/{self.rows_total} rows ({self.parts_done}/{self.parts_total} parts), "
                f"{self.rate:.1f} rows/s, ETA {eta}")


def planned_rows(part: Part) -> int:
    if part.items:
        return len(part.items)
    if part.row_end > part.row_start:
        return part.row_end - part.row_start
    return 0


class PassWatcher:
    """Polls the completion files of pass `k` every `interval` seconds on a thread and calls `report`; stops (with
    a last report) when the pass returns. Never raises into the run: a failing report is dropped."""

    def __init__(self, runner: PassRunner, parts: list[Part], k: int, label: str, report: Callable[[Snapshot], None],
                 interval: float = 1.0):
        self.runner, self.parts, self.k, self.label = runner, parts, k, label
        self.report, self.interval = report, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"progress-pass-{k}", daemon=True)
        self._start = time.perf_counter()
        rows = [planned_rows(p) for p in parts]
        self._rows = rows if all(rows) else [1] * len(parts)  # tars: count parts instead of rows

    def _done(self, part: Part) -> bool:
        return self.runner.part_done(self.k, part.id)

    def snapshot(self) -> Snapshot:
        done = [self._done(p) for p in self.parts]
        return Snapshot(self.label, sum(done), len(self.parts), sum(r for r, d in zip(self._rows, done, strict=True) if d),
                        sum(self._rows), time.perf_counter() - self._start)

    def _emit(self) -> None:
        try:
            self.report(self.snapshot())
        except Exception:  # noqa: BLE001 - progress is a view; it must never fail the run
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def __enter__(self) -> PassWatcher:
        self._emit()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._emit()
