"""MetaCLIP concept balancing: match captions to metadata entries, count entries globally, resample the head."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from filters.concepts import WORDNET_DIR, ConceptMatcher, load_entries
from pipelines.global_stage import CountOperator
from pipelines.operator import OperatorConfig, with_verdicts
from pipelines.schema import set_columns

_MATCHERS: dict[tuple, ConceptMatcher] = {}


class ConceptBalanceConfig(OperatorConfig):
    t: int = Field(20_000, ge=1, description="Balancing threshold: entries seen more than t times are sampled down to ~t.")
    seed: int = Field(0, description="Seed of the per-(key, entry) draws: a rerun keeps the same samples.")
    unmatched: Literal["drop", "keep"] = Field("drop", description="Samples matching no entry: drop (MetaCLIP) or keep.")
    wordnet_dir: str | None = Field(WORDNET_DIR, description="WordNet 3.0 database folder (noun lemmas); None for none.")
    extra_entries: list[str] = Field(default_factory=list, description="Files of extra entries, one per line.")
    min_chars: int = Field(3, ge=1, description="Single-word entries shorter than this are left out.")


def draw(seed: int, key: str, entry: str) -> float:
    """A uniform [0, 1) draw fixed by (seed, key, entry)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}\x00{entry}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def entry_probability(entry: str, counts: dict[str, int], t: int) -> float:
    """p_i = t / max(c_i, t): 1 for tail entries (c_i ≤ t)."""
    return t / max(counts.get(entry, 0), t)


def keep_probability(entries: list[str], counts: dict[str, int], t: int) -> float:
    """P(keep) = 1 − ∏(1 − p_i)."""
    miss = 1.0
    for e in entries:
        miss *= 1.0 - entry_probability(e, counts, t)
    return 1.0 - miss


class ConceptBalance(CountOperator):
    name = "concept_balance"
    Config = ConceptBalanceConfig
    reads = ("text",)
    adds = (pa.field("concepts", pa.list_(pa.string())),)
    entries_column = "concepts"

    def setup(self) -> None:
        cfg = self.config
        ident = (cfg.wordnet_dir, tuple(cfg.extra_entries), cfg.min_chars)
        if ident not in _MATCHERS:
            _MATCHERS[ident] = ConceptMatcher(load_entries(cfg.wordnet_dir, cfg.extra_entries, cfg.min_chars))
        self.matcher = _MATCHERS[ident]

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not hasattr(self, "matcher"):
            self.setup()
        return set_columns(batch, {"concepts": [self.matcher.match(t or "") for t in batch.column("text").to_pylist()]})

    def decide(self, batch: pa.RecordBatch, result: Any) -> pa.RecordBatch:
        counts: dict[str, int] = result
        t, seed = self.config.t, self.config.seed
        keep, reason = [], []
        for key, entries in zip(batch.column("key").to_pylist(), batch.column("concepts").to_pylist(), strict=True):
            entries = entries or []
            if not entries:
                kept = self.config.unmatched == "keep"
                keep.append(kept)
                reason.append(None if kept else "no_concept")
                continue
            # Kept when any matched entry passes its own Bernoulli(p_i) draw: P = 1 − ∏(1 − p_i).
            kept = any(draw(seed, key, e) < entry_probability(e, counts, t) for e in entries)
            keep.append(kept)
            reason.append(None if kept else f"concept_head:p={keep_probability(entries, counts, t):.3f}")
        return with_verdicts(batch, keep, reason)
