"""Progress a data engineer can watch: per pass, rows done of the total, rows/s and an ETA, on the console (rich)
and in the Prefect UI (a progress artifact updated as parts finish), on every engine."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from orchestration.display import markdown_cell, visible
from pipelines.execute import PassRunner
from pipelines.progress import PassWatcher, Snapshot
from pipelines.readers.base import Part


class _Reporter:
    def __init__(self, label: str, artifact_key: str):
        self.console = Console(file=sys.stderr)
        # The label names the recipe's stages: shown as plain text (no markup), its control characters visible.
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("rows  {task.fields[rate]:.1f}/s"), TimeRemainingColumn(),
                            console=self.console, transient=False)
        self.task = self.bar.add_task(visible(label), total=1, rate=0.0)
        self.artifact: Any = None
        self.artifact_key = artifact_key
        self.lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> None:
        with self.lock:
            self.bar.update(self.task, completed=snap.rows_done, total=max(1, snap.rows_total), rate=snap.rate)
            self._prefect(snap)

    def start_artifact(self, label: str) -> None:
        """Created in the task's own thread, so Prefect ties it to the task run; the watcher thread updates it."""
        if "prefect" not in sys.modules:  # a run without Prefect: no task run to attach to, and no 2.4 s import
            return
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import TaskRunContext

            if TaskRunContext.get() is None:  # a run without Prefect: creating one would start a temporary server
                return

            # An artifact's description is markdown: the label escaped as such.
            self.artifact = create_progress_artifact(0.0, key=self.artifact_key,
                                                     description=markdown_cell(f"{label}: starting"))
        except Exception:  # noqa: BLE001 - no Prefect API (a plain function call): the console suffices
            self.artifact = None

    def _prefect(self, snap: Snapshot) -> None:
        if not self.artifact:
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.artifact, round(100.0 * snap.fraction, 1),
                                      description=markdown_cell(snap.line()))
        except Exception:  # noqa: BLE001 - progress is a view; it never fails the run
            self.artifact = None


@contextmanager
def pass_progress(runner: PassRunner, parts: list[Part], k: int) -> Iterator[None]:
    """Watch pass `k` while the engine runs it."""
    label = runner.describe(k)
    reporter = _Reporter(label, artifact_key=f"progress-pass-{k}")
    reporter.start_artifact(label)
    with reporter.bar, PassWatcher(runner, parts, k, label, reporter):
        yield
