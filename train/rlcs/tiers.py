"""Difficulty tiers from a pass rate: the table lives in `pipelines.formats` (shared with the distillation's pass@k
tiers); here, what the sampler adds to it."""

from __future__ import annotations

from pipelines.formats import TIER_NAMES, TIERS, UNSOLVED, tier_of  # noqa: F401 - one table, shared with distillation


def tier_midpoint(name: str, tiers: tuple[tuple[str, float], ...] = TIERS) -> float:
    """A representative pass rate of a tier (the middle of its range): the prior of its accuracy."""
    bounds = [1.0] + [low for _, low in tiers] + [0.0]
    names = [n for n, _ in tiers] + [UNSOLVED]
    i = names.index(name)
    return 0.0 if name == UNSOLVED else (bounds[i] + bounds[i + 1]) / 2
