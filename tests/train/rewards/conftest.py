"""One warm reward pool for the reward tests, and a helper that writes a full long-CoT response."""

import pytest

from pipelines.formats import build_answer


def full(boxed: str, answer: str = "So the result is ", think: str = "Let me work it out step by step.") -> str:
    """A well-formed `<think>…</think><answer>…</answer>` response with `boxed` in its one box."""
    return build_answer(answer, think=think, boxed=boxed)


@pytest.fixture(scope="session")
def pool():
    from train.rewards.pool import RewardPool

    with RewardPool(workers=2, timeout_s=3.0) as p:
        yield p
