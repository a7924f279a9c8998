"""`vlmdata train grade`: roll a model out k times per prompt, score with the verifiers, and write each prompt's
pass rate and tier into an RL prompt set (the distillation's schema)."""

from __future__ import annotations

from pathlib import Path

from train.rewards import RewardPool
from train.rlcs.prompts import Prompt, write_parquet
from train.rlcs.rollout import RolloutConfig, make_rollout
from train.rlcs.tiers import tier_of


def grade_prompts(model, processor, prompts: list[Prompt], k: int, rollout: RolloutConfig, pool: RewardPool,
                  pass_score: float = 1.0, seed: int = 0, chunk: int = 16) -> list[int]:
    """Sets each prompt's pass_rate and tier in place; returns the passes per prompt."""
    engine = make_rollout(rollout, model, processor)
    passed = []
    for s in range(0, len(prompts), chunk):
        part = prompts[s:s + chunk]
        groups = engine.generate(part, k, seed=seed + s)
        items = [(p.domain, r.text, p.answer) for p, g in zip(part, groups, strict=True) for r in g]
        scores = pool.score(items)
        for j, p in enumerate(part):
            n = sum(v.score >= pass_score for v in scores[j * k:(j + 1) * k])
            p.pass_rate, p.tier = n / k, tier_of(n / k)
            passed.append(n)
    return passed


def grade(model_path: str | Path, prompts: list[Prompt], output: str | Path, k: int = 8,
          rollout: RolloutConfig | None = None, workers: int = 1, seed: int = 0) -> dict:
    """Grade `prompts` with the saved model at `model_path` and write `output` (Parquet); returns tier counts."""
    from collections import Counter

    from model.build import load

    model, processor = load(model_path)
    with RewardPool(workers=workers, context="forkserver", domains=sorted({p.domain for p in prompts})) as pool:
        passed = grade_prompts(model, processor, prompts, k, rollout or RolloutConfig(), pool, seed=seed)
    write_parquet(prompts, output, k, passed)
    return {"prompts": len(prompts), "k": k, "tiers": dict(Counter(p.tier for p in prompts)),
            "mean_pass_rate": sum(p.pass_rate or 0 for p in prompts) / max(1, len(prompts)), "output": str(output)}
