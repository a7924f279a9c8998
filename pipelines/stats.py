"""Mergeable statistics: counts by status/stage/reason and power-of-two histograms, per part then per run."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

HISTOGRAM_FIELDS = ("width", "height", "caption_chars", "image_bytes")


class Histogram:
    """Counts per power-of-two bucket plus n/sum/min/max: small, exact to merge, fine for size distributions."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.buckets: Counter[int] = Counter({int(k): v for k, v in data.get("buckets", {}).items()})
        self.n: int = data.get("n", 0)
        self.sum: float = data.get("sum", 0.0)
        self.min: float | None = data.get("min")
        self.max: float | None = data.get("max")

    def add(self, value: float) -> None:
        self.buckets[0 if value < 1 else 1 << int(math.log2(value))] += 1
        self.n += 1
        self.sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def merge(self, other: Histogram) -> Histogram:
        self.buckets.update(other.buckets)
        self.n += other.n
        self.sum += other.sum
        for attr, pick in (("min", min), ("max", max)):
            values = [v for v in (getattr(self, attr), getattr(other, attr)) if v is not None]
            setattr(self, attr, pick(values) if values else None)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sum": self.sum,
            "mean": self.sum / self.n if self.n else None,
            "min": self.min,
            "max": self.max,
            "buckets": {str(k): self.buckets[k] for k in sorted(self.buckets)},
        }


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
