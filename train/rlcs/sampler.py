"""Curriculum sampling over difficulty tiers: every prompt carries a tier (offline from pass@k, online from each
group's pass rate), and each iteration prompts are drawn by how likely a group of theirs is to carry signal."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from train.rlcs.tiers import TIER_NAMES, TIERS, tier_midpoint, tier_of


class SamplerConfig(BaseModel):
    """How prompts and tiers are weighted and how a group's result moves its prompt."""

    curriculum: bool = Field(True, description="Draw prompts by the chance that their group is informative; "
                             "false: uniform over prompts.")
    prompt_ema: float = Field(0.5, ge=0, le=1, description="Weight of a new group's pass rate in the prompt's "
                              "running pass rate (1: the last group decides the tier); the prompt's counts of passes "
                              "and failures are discounted by 1 - prompt_ema per group, so old groups are forgotten "
                              "as the policy moves.")
    tier_ema: float = Field(0.3, ge=0, le=1, description="Weight of an iteration's accuracy in a tier's running "
                            "accuracy (logged per tier).")
    min_weight: float = Field(0.02, ge=0, description="Floor of a prompt's weight (the too easy and the too hard "
                              "are down-weighted, never starved).")
    offline_rollouts: float = Field(2.0, ge=0, description="How many rollouts an offline pass rate counts as (the "
                                    "k of the pass@k that set the tiers: the toy start grades with k=2).")
    prior: float = Field(0.5, gt=0, description="Pseudo-count of passes and of failures every prompt starts with "
                         "(Beta(prior, prior); 0.5 is Jeffreys' prior).")
    tier_prior: dict[str, float] = Field(default_factory=dict, description="Optional multiplier of the weight of "
                                         "every prompt in a tier, by tier name.")
    balance: Literal["none", "answer"] = Field("none", description="answer: a source's draws are split among its "
                                               "reference answers by how many prompts have each, and the curriculum "
                                               "weighs prompts within an answer (the source's total weight is kept). "
                                               "Stops the curriculum from favouring the prompts whose answer is the "
                                               "policy's habit (their groups are the mixed ones) until the others "
                                               "fail every rollout. Answers only one prompt of the source has are "
                                               "pooled, so free-form answers keep the curriculum's weights as they "
                                               "are; short answer sets (colours, counts, choices) are balanced. "
                                               "none: the report's recipe.")


def _codes(keys: list) -> np.ndarray:
    """Dense integer codes of hashable keys, in the order they are first seen."""
    index: dict = {}
    return np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.intp, count=len(keys))


def beta_moments(a: np.ndarray, b: np.ndarray, g: int) -> np.ndarray:
    """E[p^g] for p ~ Beta(a, b), elementwise: prod_{k<g} (a + k) / (a + b + k)."""
    out = np.ones_like(a, dtype=np.float64)
    for k in range(g):
        out *= (a + k) / (a + b + k)
    return out


def informative_chances(a: np.ndarray, b: np.ndarray, g: int) -> np.ndarray:
    """The chance that g rollouts of a prompt whose pass rate is Beta(a, b) are neither all right nor all wrong,
    elementwise: 1 - E[p^g] - E[(1 - p)^g]. For a known rate p (a, b large, a/(a+b) = p) it is 1 - p^g - (1 - p)^g."""
    return np.maximum(0.0, 1.0 - beta_moments(a, b, g) - beta_moments(b, a, g))


def beta_moment(a: float, b: float, g: int) -> float:
    """`beta_moments` of one (a, b)."""
    return float(beta_moments(np.float64(a), np.float64(b), g))


def informative_chance(a: float, b: float, g: int) -> float:
    """`informative_chances` of one (a, b)."""
    return float(informative_chances(np.float64(a), np.float64(b), g))


class CurriculumSampler:
    """Draws prompt indices for an iteration and learns from the groups' pass rates.

    Each prompt has a running pass rate (the EMA of its groups' pass rates; it sets the prompt's tier) and
    discounted counts of passed and failed rollouts s, f (an offline pass rate r of k rollouts starts them at r k,
    (1 - r) k; each group multiplies them by 1 - prompt_ema and adds its own). Its weight is the chance that its next
    group of G is informative (neither all right nor all wrong) under the Beta(prior + s, prior + f) posterior:
    1 - E[p^G] - E[(1 - p)^G], at least `min_weight`. Prompts known to be too easy or too hard (groups all right or
    all wrong, again and again) fall towards the floor; the middle and the little-seen stay high. A tier's weight is the
    share of its prompts' weights (the chance that a draw comes from it). An iteration draws prompts by weight
    without replacement. All state (RNG included) is in `state_dict` for exact resume."""

    def __init__(self, tiers: list[str], group_size: int, cfg: SamplerConfig | None = None, seed: int = 0,
                 pass_rates: list[float | None] | None = None, strata: list[tuple[str, str]] | None = None) -> None:
        self.cfg = cfg or SamplerConfig()
        self.group_size = group_size
        self.tiers = list(tiers)
        given = list(strata) if strata is not None else [("", str(i)) for i in range(len(self.tiers))]
        if len(given) != len(self.tiers):
            raise ValueError(f"{len(given)} strata for {len(self.tiers)} prompts")
        # (source, reference answer) of every prompt: what `balance: answer` balances. An answer only one prompt has
        # cannot be a habit: those prompts share one stratum per source (answer None).
        held = Counter(given)
        self.strata: list[tuple[str, str | None]] = [key if held[key] > 1 else (key[0], None) for key in given]
        # each prompt's source and stratum as dense codes (first-seen order), for `_balanced`'s bincounts
        self._source_code = _codes([src for src, _ in self.strata])
        self._stratum_code = _codes(self.strata)
        unknown = set(self.tiers) - set(TIER_NAMES)
        if unknown:
            raise ValueError(f"unknown tiers {sorted(unknown)}; known: {', '.join(TIER_NAMES)}")
        rates = pass_rates or [None] * len(self.tiers)
        self.pass_rate: list[float] = [tier_midpoint(t) if p is None else float(p)
                                       for t, p in zip(self.tiers, rates, strict=True)]
        # a tier without a measured rate is a guess (its midpoint): no counts, the prior alone
        k = self.cfg.offline_rollouts
        self.passes: list[float] = [0.0 if p is None else float(p) * k for p in rates]
        self.fails: list[float] = [0.0 if p is None else (1.0 - float(p)) * k for p in rates]
        self.tier_accuracy: dict[str, float] = {t: tier_midpoint(t) for t in TIER_NAMES}
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self._weights: np.ndarray | None = None  # prompt_weights until the counts change

    def __len__(self) -> int:
        return len(self.tiers)

    # -- weights -----------------------------------------------------------------------------------------------
    def population(self) -> dict[str, int]:
        c = Counter(self.tiers)
        return {t: c.get(t, 0) for t in TIER_NAMES}

    def prompt_weights(self) -> np.ndarray:
        """[N] unnormalised draw weight of every prompt (all 1 without curriculum), computed for all prompts at once
        and kept until the next `update` (the loop asks for the weights and then draws by them)."""
        if not self.cfg.curriculum:
            return np.ones(len(self.tiers))
        if self._weights is None:
            a0, g = self.cfg.prior, self.group_size
            a, b = a0 + np.asarray(self.passes, dtype=np.float64), a0 + np.asarray(self.fails, dtype=np.float64)
            chance = informative_chances(a, b, g)
            scale = np.asarray([self.cfg.tier_prior.get(t, 1.0) for t in self.tiers], dtype=np.float64)
            w = np.maximum(self.cfg.min_weight, chance) * scale
            self._weights = self._balanced(w) if self.cfg.balance == "answer" else w
        return self._weights.copy()

    def _balanced(self, w: np.ndarray) -> np.ndarray:
        """Each source keeps its total weight, split among its reference answers by their prompt counts; within an
        answer, prompts keep their relative weights (answers of one prompt each count as one answer together)."""
        src, key = self._source_code, self._stratum_code
        source_w, source_n = np.bincount(src, weights=w), np.bincount(src)
        answer_w, answer_n = np.bincount(key, weights=w), np.bincount(key)
        aw = answer_w[key]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = source_w[src] * answer_n[key] / source_n[src] * w / aw
        return np.where(aw > 0, out, 0.0)

    def weights(self) -> dict[str, float]:
        """Tier -> probability that a draw comes from it (0 for empty tiers): its prompts' share of the weight."""
        w = self.prompt_weights()
        total = float(w.sum())
        raw = dict.fromkeys(TIER_NAMES, 0.0)
        for t, x in zip(self.tiers, w, strict=True):
            raw[t] += float(x)
        return {t: v / total if total else 0.0 for t, v in raw.items()}

    # -- drawing -----------------------------------------------------------------------------------------------
    def draw(self, n: int) -> list[int]:
        """n prompt indices drawn by weight without replacement (as many passes over the set as n needs)."""
        if not self.cfg.curriculum:  # uniform over prompts, without replacement as far as possible
            pool = np.arange(len(self.tiers))
            picks = [int(i) for i in self.rng.permutation(pool)[:n]]
            while len(picks) < n:
                picks += [int(i) for i in self.rng.permutation(pool)[: n - len(picks)]]
            return picks
        w = self.prompt_weights()
        if not w.sum():
            w = np.ones(len(w))
        out: list[int] = []
        while len(out) < n:
            k = min(n - len(out), int((w > 0).sum()))
            out += [int(i) for i in self.rng.choice(len(w), size=k, replace=False, p=w / w.sum())]
        return out

    # -- learning from groups ----------------------------------------------------------------------------------
    def update(self, indices: list[int], group_pass_rates: list[float]) -> dict[str, int]:
        """Each group's pass rate moves its prompt's running pass rate (and so its tier) and its passes and failures
        to the prompt's discounted counts; the tiers' running accuracies move towards this iteration's accuracy per tier
        (by the tier the prompt was drawn from). Returns how many prompts changed tier."""
        by_tier: dict[str, list[float]] = {}
        moved = 0
        self._weights = None
        b = self.cfg.prompt_ema
        for i, rate in zip(indices, group_pass_rates, strict=True):
            by_tier.setdefault(self.tiers[i], []).append(rate)
            self.pass_rate[i] = (1 - b) * self.pass_rate[i] + b * rate
            self.passes[i] = (1 - b) * self.passes[i] + rate * self.group_size
            self.fails[i] = (1 - b) * self.fails[i] + (1 - rate) * self.group_size
            new = tier_of(self.pass_rate[i], TIERS)
            if new != self.tiers[i]:
                moved += 1
                self.tiers[i] = new
        for t, rates in by_tier.items():
            c = self.cfg.tier_ema
            self.tier_accuracy[t] = (1 - c) * self.tier_accuracy[t] + c * (sum(rates) / len(rates))
        self.iteration += 1
        return {"moved": moved}

    def expected_informative(self, indices: list[int]) -> float:
        """Mean chance (before the floor) that the groups of these prompts are informative: what the sampler
        expects of a draw, logged beside the observed rate."""
        if not indices:
            return 0.0
        a0 = self.cfg.prior
        a, b = a0 + np.asarray(self.passes)[indices], a0 + np.asarray(self.fails)[indices]
        return sum(informative_chances(a, b, self.group_size).tolist()) / len(indices)

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"tiers": list(self.tiers), "pass_rate": list(self.pass_rate), "passes": list(self.passes),
                "fails": list(self.fails),
                "tier_accuracy": dict(self.tier_accuracy), "rng": copy.deepcopy(self.rng.bit_generator.state),
                "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        if len(state["tiers"]) != len(self.tiers):
            raise ValueError(f"sampler state holds {len(state['tiers'])} prompts, the prompt set {len(self.tiers)}")
        self.tiers = list(state["tiers"])
        self.pass_rate = list(state["pass_rate"])
        # a state saved before the counts were kept: every prompt as if one group at its running rate were behind it
        g = float(self.group_size)
        self.passes = list(state["passes"]) if "passes" in state else [p * g for p in self.pass_rate]
        self.fails = list(state["fails"]) if "fails" in state else [(1 - p) * g for p in self.pass_rate]
        self.tier_accuracy = dict(state["tier_accuracy"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.iteration = int(state["iteration"])
        self._weights = None
