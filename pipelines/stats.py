"""Mergeable statistics: a histogram for any numeric field, and the run's counts by status/stage/reason; per part
(or per shard) first, then merged for the run."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.shard_stats import ShardStats

HISTOGRAM_FIELDS = ("width", "height", "caption_chars", "image_bytes")
# The run's histograms are the shards' size histograms merged: each kept row is histogrammed once, when written.
_FROM_SHARD_SIZES = {"width": "image_width", "height": "image_height", "caption_chars": "caption_chars",
                     "image_bytes": "image_bytes"}


def bucket_key(value: float) -> str:
    """`"27e-2"` for 0.2734, `"13e1"` for 136, `"0"` for 0: the value truncated to two significant digits."""
    if value == 0:
        return "0"
    mag = abs(value)
    exp = math.floor(math.log10(mag)) - 1
    digits = int(mag / 10.0**exp)
    # log10 can land one off at decade edges (0.1 → -0.9999…); fix the two digits to 10..99.
    if digits < 10:
        exp -= 1
        digits = int(mag / 10.0**exp)
    elif digits > 99:
        exp += 1
        digits = int(mag / 10.0**exp)
    return f"{'-' if value < 0 else ''}{digits}e{exp}"


def bucket_span(key: str) -> tuple[float, float]:
    """(low, high) of a bucket key."""
    if key == "0":
        return 0.0, 0.0
    digits, exp = key.split("e")
    d, e = int(digits), int(exp)
    lo, hi = abs(d) * 10.0**e, (abs(d) + 1) * 10.0**e
    return (lo, hi) if d > 0 else (-hi, -lo)


class ValueHistogram:
    """n, sum, min, max and counts per two-significant-digit bucket."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.n: int = data.get("n", 0)
        self.sum: float = data.get("sum", 0.0)
        self.min: float | None = data.get("min")
        self.max: float | None = data.get("max")
        self.buckets: Counter[str] = Counter(data.get("buckets", {}))

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.buckets[bucket_key(value)] += 1
        self.n += 1
        self.sum += value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max

    def merge(self, other: ValueHistogram) -> ValueHistogram:
        self.buckets.update(other.buckets)
        self.n += other.n
        self.sum += other.sum
        for attr, pick in (("min", min), ("max", max)):
            values = [v for v in (getattr(self, attr), getattr(other, attr)) if v is not None]
            setattr(self, attr, pick(values) if values else None)
        return self

    @property
    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """Approximate quantile: the value truncated to two significant digits, clipped to [min, max]."""
        if not self.n:
            return None
        assert self.min is not None and self.max is not None
        target, seen = q * self.n, 0
        for key, count in sorted(self.buckets.items(), key=lambda kv: bucket_span(kv[0])[0]):
            seen += count
            if seen >= target:
                lo, hi = bucket_span(key)
                return min(max(lo if key[0] != "-" else hi, self.min), self.max)
        return self.max

    def bins(self, count: int = 20, log: bool | None = None) -> tuple[list[float], list[int]]:
        """Re-bin into `count` equal bins over [min, max] (log-spaced when the range spans decades).

        Returns (edges, counts) with len(edges) == len(counts) + 1.
        """
        if not self.n:
            return [], []
        assert self.min is not None and self.max is not None
        lo, hi = self.min, self.max
        if log is None:
            log = lo > 0 and hi / lo > 100
        if hi == lo:
            return [lo - 0.5, hi + 0.5], [self.n]
        if log:
            edges = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / count) for i in range(count + 1)]
        else:
            edges = [lo + (hi - lo) * i / count for i in range(count + 1)]
        counts = [0] * count
        for key, n in self.buckets.items():
            b_lo, b_hi = bucket_span(key)
            mid = min(max((b_lo + b_hi) / 2, lo), hi)
            if log:
                idx = int((math.log(mid) - math.log(lo)) / (math.log(hi) - math.log(lo)) * count)
            else:
                idx = int((mid - lo) / (hi - lo) * count)
            counts[min(max(idx, 0), count - 1)] += n
        return edges, counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sum": self.sum,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
            "buckets": dict(sorted(self.buckets.items(), key=lambda kv: bucket_span(kv[0])[0])),
        }



class RunStats:
    """Counts and histograms of one part, or of a whole run once parts are merged."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.status: Counter[str] = Counter(data.get("status", {}))
        self.by_stage: dict[str, Counter[str]] = {s: Counter(r) for s, r in data.get("by_stage", {}).items()}
        self.histograms = {f: ValueHistogram(data.get("histograms", {}).get(f)) for f in HISTOGRAM_FIELDS}
        self.concepts_kept: Counter[str] = Counter(data.get("concepts_kept", {}))
        # Every numeric field of the kept samples' .json (cer, clip_score, pass_at_k, gui_ocr.matched, …), as the
        # shard writer histogrammed them: a generator's quality figures reach stats.json with no code of its own.
        self.fields = {k: ValueHistogram(v) for k, v in data.get("fields", {}).items()}

    def add_row(self, status: str, stage: str | None, reason: str | None) -> None:
        self.status[status] += 1
        if status != "kept":
            # Reasons are "prefix:detail"; the prefix is what to count (details such as survivor keys vary).
            prefix = (reason or "unknown").split(":", 1)[0]
            self.by_stage.setdefault(stage or "unknown", Counter())[prefix] += 1

    def add_shards(self, shards: ShardStats) -> None:
        """The size histograms of the kept samples, as the shard writer counted them (`ShardWriter.stats`)."""
        for name, size in _FROM_SHARD_SIZES.items():
            if size in shards.sizes:
                self.histograms[name].merge(shards.sizes[size])
        for name, hist in shards.fields.items():
            self.fields.setdefault(name, ValueHistogram()).merge(hist)

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
        for name, hist in other.fields.items():
            self.fields.setdefault(name, ValueHistogram()).merge(hist)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": {s: self.status.get(s, 0) for s in ("kept", "dropped", "error")},
            "by_stage": {s: dict(sorted(r.items())) for s, r in sorted(self.by_stage.items())},
            "histograms": {f: h.to_dict() for f, h in self.histograms.items()},
            **({"concepts_kept": dict(sorted(self.concepts_kept.items()))} if self.concepts_kept else {}),
            **({"fields": {k: h.to_dict() for k, h in sorted(self.fields.items())}} if self.fields else {}),
            **({"rates": rates} if (rates := self.rates()) else {}),
        }

    def rates(self) -> dict[str, float]:
        """Pooled rates of count pairs a stage records per sample (`X.matched` / `X.checked`): e.g. the GUI OCR
        read-back match rate over all checked elements."""
        out = {}
        for name, hist in self.fields.items():
            if name.endswith(".matched"):
                base = name[: -len(".matched")]
                checked = self.fields.get(f"{base}.checked")
                if checked is not None and checked.sum > 0:
                    out[f"{base}.match_rate"] = round(hist.sum / checked.sum, 4)
        return out
