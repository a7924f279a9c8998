"""Reward verifiers for long-CoT distillation and RLCS: one per domain, on the shared answer format, scored in
batches under a hard timeout (`score_batch`, `RewardPool`)."""

from train.rewards.base import Verdict, Verifier, get_verifier, score, verifier_classes
from train.rewards.pool import RewardPool, score_batch

__all__ = ["RewardPool", "Verdict", "Verifier", "get_verifier", "score", "score_batch", "verifier_classes"]
