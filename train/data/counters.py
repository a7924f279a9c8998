"""Counted warnings for samples a training stream skips (bad image, broken json, ...) and for what it changes
(over-long samples truncated)."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("vlmdata.train.data")


class SkipCounter:
    """Counts skipped samples per reason; warns on the first few of each reason."""

    def __init__(self, warn_first: int = 3) -> None:
        self.counts: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.warn_first = warn_first

    def skip(self, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= self.warn_first:
            log.warning("skipping sample (%s, #%d): %s", reason, self.counts[reason], detail[:200])

    def note(self, event: str) -> None:
        """Count something done to a sample that is kept (e.g. `truncated`)."""
        self.notes[event] += 1

    def handler(self, exn: Exception) -> bool:
        """A webdataset handler: count the error and keep going."""
        self.skip("read_error", repr(exn))
        return True

    def total(self) -> int:
        return sum(self.counts.values())
