"""Curriculum sampling over difficulty tiers: every prompt carries a tier (offline from pass@k, online from each
group's pass rate), and each iteration the tiers are re-weighted by how much signal a group from them carries."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
from pydantic import BaseModel, Field

from train.rlcs.tiers import TIER_NAMES, TIERS, tier_midpoint, tier_of


class SamplerConfig(BaseModel):
    """How tiers are weighted and how a group's result moves its prompt."""

    curriculum: bool = Field(True, description="Weight tiers by expected signal; false: uniform over prompts.")
    prompt_ema: float = Field(0.5, ge=0, le=1, description="Weight of a new group's pass rate in the prompt's "
                              "running pass rate (1: the last group decides the tier).")
    tier_ema: float = Field(0.3, ge=0, le=1, description="Weight of an iteration's accuracy in a tier's running "
                            "accuracy (which sets the tier's weight).")
    min_weight: float = Field(0.02, ge=0, description="Floor of a non-empty tier's weight before normalising (the "
                              "too easy and the too hard are down-weighted, never starved).")
    prior: dict[str, float] = Field(default_factory=dict, description="Optional multiplier per tier name.")


class CurriculumSampler:
    """Draws prompt indices for an iteration and learns from the groups' pass rates.

    A tier's weight is the chance that a group of G rollouts from it is informative (neither all right nor all
    wrong): 1 - a^G - (1 - a)^G for the tier's running accuracy a; very easy (a near 1) and very hard (a near 0)
    tiers fall towards `min_weight`, the middle is favoured. Within a tier, prompts are drawn uniformly without
    replacement within one draw. All state (RNG included) is in `state_dict` for exact resume."""

    def __init__(self, tiers: list[str], group_size: int, cfg: SamplerConfig | None = None, seed: int = 0,
                 pass_rates: list[float | None] | None = None) -> None:
        self.cfg = cfg or SamplerConfig()
        self.group_size = group_size
        self.tiers = list(tiers)
        unknown = set(self.tiers) - set(TIER_NAMES)
        if unknown:
            raise ValueError(f"unknown tiers {sorted(unknown)}; known: {', '.join(TIER_NAMES)}")
        self.pass_rate: list[float] = [tier_midpoint(t) if p is None else float(p)
                                       for t, p in zip(self.tiers, pass_rates or [None] * len(self.tiers), strict=True)]
        self.tier_accuracy: dict[str, float] = {t: tier_midpoint(t) for t in TIER_NAMES}
        self.rng = np.random.default_rng(seed)
        self.iteration = 0

    def __len__(self) -> int:
        return len(self.tiers)

    # -- weights -----------------------------------------------------------------------------------------------
    def population(self) -> dict[str, int]:
        c = Counter(self.tiers)
        return {t: c.get(t, 0) for t in TIER_NAMES}

    def weights(self) -> dict[str, float]:
        """Tier -> probability that a draw comes from it (0 for empty tiers); uniform-over-prompts without curriculum."""
        pop = self.population()
        if not self.cfg.curriculum:
            n = sum(pop.values())
            return {t: pop[t] / n if n else 0.0 for t in TIER_NAMES}
        g = self.group_size
        raw = {}
        for t in TIER_NAMES:
            if not pop[t]:
                raw[t] = 0.0
                continue
            a = min(1.0, max(0.0, self.tier_accuracy[t]))
            raw[t] = max(self.cfg.min_weight, 1.0 - a**g - (1.0 - a) ** g) * self.cfg.prior.get(t, 1.0)
        total = sum(raw.values())
        return {t: w / total if total else 0.0 for t, w in raw.items()}

    # -- drawing -----------------------------------------------------------------------------------------------
    def draw(self, n: int) -> list[int]:
        """n prompt indices: a tier by weight, then a prompt of that tier (no repeats within the draw while the
        tier has unused prompts)."""
        w = self.weights()
        names = [t for t in TIER_NAMES if w[t] > 0]
        probs = np.array([w[t] for t in names])
        members = {t: [i for i, x in enumerate(self.tiers) if x == t] for t in names}
        if not self.cfg.curriculum:  # uniform over prompts, without replacement as far as possible
            pool = np.arange(len(self.tiers))
            picks = [int(i) for i in self.rng.permutation(pool)[:n]]
            while len(picks) < n:
                picks += [int(i) for i in self.rng.permutation(pool)[: n - len(picks)]]
            return picks
        used: dict[str, set[int]] = {t: set() for t in names}
        out = []
        for t_i in self.rng.choice(len(names), size=n, p=probs / probs.sum()):
            t = names[int(t_i)]
            free = [i for i in members[t] if i not in used[t]] or members[t]
            pick = free[int(self.rng.integers(len(free)))]
            used[t].add(pick)
            out.append(pick)
        return out

    # -- learning from groups ----------------------------------------------------------------------------------
    def update(self, indices: list[int], group_pass_rates: list[float]) -> dict[str, int]:
        """Each group's pass rate moves its prompt's running pass rate (and so its tier); the tiers' running
        accuracies move towards this iteration's accuracy per tier (by the tier the prompt was drawn from).
        Returns how many prompts changed tier."""
        by_tier: dict[str, list[float]] = {}
        moved = 0
        for i, rate in zip(indices, group_pass_rates, strict=True):
            by_tier.setdefault(self.tiers[i], []).append(rate)
            b = self.cfg.prompt_ema
            self.pass_rate[i] = (1 - b) * self.pass_rate[i] + b * rate
            new = tier_of(self.pass_rate[i], TIERS)
            if new != self.tiers[i]:
                moved += 1
                self.tiers[i] = new
        for t, rates in by_tier.items():
            c = self.cfg.tier_ema
            self.tier_accuracy[t] = (1 - c) * self.tier_accuracy[t] + c * (sum(rates) / len(rates))
        self.iteration += 1
        return {"moved": moved}

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"tiers": list(self.tiers), "pass_rate": list(self.pass_rate),
                "tier_accuracy": dict(self.tier_accuracy), "rng": copy.deepcopy(self.rng.bit_generator.state),
                "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        if len(state["tiers"]) != len(self.tiers):
            raise ValueError(f"sampler state holds {len(state['tiers'])} prompts, the prompt set {len(self.tiers)}")
        self.tiers = list(state["tiers"])
        self.pass_rate = list(state["pass_rate"])
        self.tier_accuracy = dict(state["tier_accuracy"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.iteration = int(state["iteration"])
