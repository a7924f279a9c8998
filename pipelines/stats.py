"""Mergeable statistics: counts by status/stage/reason and histograms, per part then per run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipelines.inspect.histogram import ValueHistogram as Histogram  # the histogram `stats` merges too

HISTOGRAM_FIELDS = ("width", "height", "caption_chars", "image_bytes")


class RunStats:
    """Counts and histograms of one part, or of a whole run once parts are merged."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.status: Counter[str] = Counter(data.get("status", {}))
        self.by_stage: dict[str, Counter[str]] = {s: Counter(r) for s, r in data.get("by_stage", {}).items()}
        self.histograms = {f: Histogram(data.get("histograms", {}).get(f)) for f in HISTOGRAM_FIELDS}
        self.concepts_kept: Counter[str] = Counter(data.get("concepts_kept", {}))

    def add_row(self, status: str, stage: str | None, reason: str | None) -> None:
        self.status[status] += 1
        if status != "kept":
            # Reasons are "prefix:detail"; the prefix is what to count (details such as survivor keys vary).
            prefix = (reason or "unknown").split(":", 1)[0]
            self.by_stage.setdefault(stage or "unknown", Counter())[prefix] += 1

    def add_kept(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            if value is not None:
                self.histograms[name].add(value)

    def add_concepts(self, entries: list[str] | None) -> None:
        """Concept entries of a kept sample (the 'after' side of concept balancing)."""
        self.concepts_kept.update(set(entries or ()))

    def merge(self, other: RunStats) -> RunStats:
        self.status.update(other.status)
        self.concepts_kept.update(other.concepts_kept)
        for stage, reasons in other.by_stage.items():
            self.by_stage.setdefault(stage, Counter()).update(reasons)
        for name, hist in other.histograms.items():
            self.histograms[name].merge(hist)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": {s: self.status.get(s, 0) for s in ("kept", "dropped", "error")},
            "by_stage": {s: dict(sorted(r.items())) for s, r in sorted(self.by_stage.items())},
            "histograms": {f: h.to_dict() for f, h in self.histograms.items()},
            **({"concepts_kept": dict(sorted(self.concepts_kept.items()))} if self.concepts_kept else {}),
        }
