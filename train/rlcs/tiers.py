"""Difficulty tiers from a pass rate: the same names and lower bounds as the distillation's pass@k tiers
(synth/distill/checks.py; `train` does not import `synth`, so the table is repeated here and a test keeps the two
equal)."""

from __future__ import annotations

# (name, lowest pass rate in the tier), easiest first; a pass rate of exactly 0 is `unsolved`.
TIERS: tuple[tuple[str, float], ...] = (("very_easy", 0.9), ("easy", 0.6), ("medium", 0.3), ("hard", 0.101),
                                        ("very_hard", 1e-9))
UNSOLVED = "unsolved"
TIER_NAMES: tuple[str, ...] = tuple(name for name, _ in TIERS) + (UNSOLVED,)


def tier_of(pass_rate: float | None, tiers: tuple[tuple[str, float], ...] = TIERS) -> str:
    """The tier of a pass rate in [0, 1]; None (never rolled out) counts as unsolved."""
    if pass_rate is None:
        return UNSOLVED
    for name, low in tiers:
        if pass_rate >= low:
            return name
    return UNSOLVED


def tier_midpoint(name: str, tiers: tuple[tuple[str, float], ...] = TIERS) -> float:
    """A representative pass rate of a tier (the middle of its range): the prior of its accuracy."""
    bounds = [1.0] + [low for _, low in tiers] + [0.0]
    names = [n for n, _ in tiers] + [UNSOLVED]
    i = names.index(name)
    return 0.0 if name == UNSOLVED else (bounds[i] + bounds[i + 1]) / 2
