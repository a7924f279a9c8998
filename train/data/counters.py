"""Counted warnings for samples a training stream skips (bad image, broken json, too long ...)."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("vlmdata.train.data")


class SkipCounter:
    """Counts skipped samples per reason; warns on the first few of each reason."""

    def __init__(self, warn_first: int = 3) -> None:
        self.counts: Counter[str] = Counter()
        self.warn_first = warn_first

    def skip(self, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= self.warn_first:
            log.warning("skipping sample (%s, #%d): %s", reason, self.counts[reason], detail[:200])

    def handler(self, exn: Exception) -> bool:
        """A webdataset handler: count the error and keep going."""
        self.skip("read_error", repr(exn))
        return True

    def total(self) -> int:
        return sum(self.counts.values())
