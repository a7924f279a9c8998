"""One readable line on the console when a run fails; the whole story (tracebacks included) in OUT/run.log."""

from __future__ import annotations

import errno
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _NoTraceback(logging.Formatter):
    """Wraps a console handler's formatter: the message stays, the traceback goes to the log file instead.
    (`format` caches the empty text on the record; the file handler's formatter recomputes it.)"""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            text = self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text + ("  (traceback in run.log)" if saved[0] else "")


@contextmanager
def run_log(output: str) -> Iterator[Path | None]:
    """Log every Prefect and vlmdata record of this run into OUT/run.log; console handlers print no tracebacks."""
    path = Path(output) / "run.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler | None = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = None  # an unwritable output folder is reported by the run itself
    loggers = [logging.getLogger(n) for n in ("prefect", "vlmdata", "py4j", "apache_beam")]
    wrapped: list[tuple[logging.Handler, logging.Formatter | None]] = []
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for lg in loggers:
            lg.addHandler(handler)
    own = logging.getLogger("vlmdata")  # the run's step lines when it runs without Prefect: INFO, not the root's WARNING
    own_level = own.level
    if own_level == logging.NOTSET:
        own.setLevel(logging.INFO)
    for lg in [logging.getLogger(), *loggers]:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and \
                    not isinstance(h.formatter, _NoTraceback):
                wrapped.append((h, h.formatter))
                h.setFormatter(_NoTraceback(h.formatter))
    try:
        yield path if handler is not None else None
    finally:
        for h, f in wrapped:
            h.setFormatter(f)  # type: ignore[arg-type]
        own.setLevel(own_level)
        if handler is not None:
            for lg in loggers:
                lg.removeHandler(handler)
            handler.close()


def failure_message(exc: BaseException, log: Path | None) -> str:
    """One readable paragraph: what failed, on which path, what to do, where the details are."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    # The error a user can act on: an OS error anywhere in the chain (a full disk, a missing file), else the
    # outermost one (process-pool wrappers carry the worker's traceback text as their "cause").
    root = next((e for e in chain if isinstance(e, OSError)), exc)
    first_line = (str(root).strip().splitlines() or [""])[0]
    detail = f"{type(root).__name__}: {first_line}"
    todo = "fix the cause and run the same command again: finished parts are reused"
    if isinstance(root, OSError) and root.errno == errno.ENOSPC:
        where = root.filename or "the output folder"
        detail = f"no space left on the device while writing {where}"
        todo = "free space (or pass an --output on a larger disk) and run the same command again: finished parts are reused"
    elif isinstance(root, OSError) and root.filename:
        detail = f"{root.strerror or type(root).__name__} on {root.filename}"
    where = f"; details in {log}" if log is not None else ""
    if log is not None:
        try:
            with open(log, "a", encoding="utf-8") as f:
                f.write("".join(traceback.format_exception(exc)))
        except OSError:
            where = ""
    return f"the run failed: {detail}. What to do: {todo}{where}."
