"""Dynamic sampling with a fixed budget: groups that are all right or all wrong carry no signal; the expansion
ratio 1 / (1 - invalid rate) is tracked as an EMA, the next iteration oversamples by it, and the most balanced
groups are kept up to the fixed batch size (no refill loop)."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field


class DynamicConfig(BaseModel):
    enabled: bool = Field(True, description="Oversample by the expansion ratio and keep the most balanced groups; "
                          "false: draw exactly the batch and learn on every group.")
    ema: float = Field(0.3, ge=0, le=1, description="Weight of the last iteration's ratio in the running ratio.")
    max_ratio: float = Field(4.0, ge=1, description="Cap of the expansion ratio (an iteration with no valid group "
                             "counts as this).")


class ExpansionTracker:
    """The running expansion ratio and how many prompts the next iteration draws."""

    def __init__(self, cfg: DynamicConfig | None = None) -> None:
        self.cfg = cfg or DynamicConfig()
        self.ratio = 1.0

    @staticmethod
    def observed(invalid_rate: float, max_ratio: float) -> float:
        """1 / (1 - invalid rate), capped at max_ratio."""
        valid = 1.0 - invalid_rate
        return max_ratio if valid <= 1.0 / max_ratio else min(max_ratio, 1.0 / valid)

    def update(self, invalid_rate: float) -> float:
        a = self.cfg.ema
        self.ratio = (1 - a) * self.ratio + a * self.observed(invalid_rate, self.cfg.max_ratio)
        return self.ratio

    def prompts_to_draw(self, batch_prompts: int) -> int:
        return math.ceil(batch_prompts * self.ratio - 1e-9) if self.cfg.enabled else batch_prompts

    def state_dict(self) -> dict:
        return {"ratio": self.ratio}

    def load_state_dict(self, state: dict) -> None:
        self.ratio = float(state["ratio"])


def is_valid(rewards: list[float]) -> bool:
    """A group carries signal when its rewards are not all equal."""
    return max(rewards) - min(rewards) > 1e-9


def select_groups(group_rewards: list[list[float]], batch_prompts: int) -> list[int]:
    """Indices of the groups to learn from: the valid ones, most balanced first (mean reward closest to 0.5;
    ties by draw order), at most batch_prompts of them."""
    valid = [i for i, r in enumerate(group_rewards) if is_valid(r)]
    valid.sort(key=lambda i: (abs(sum(group_rewards[i]) / len(group_rewards[i]) - 0.5), i))
    return sorted(valid[:batch_prompts])
