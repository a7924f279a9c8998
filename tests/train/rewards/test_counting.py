"""counting: the exact integer."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score


@pytest.mark.parametrize(("answer", "truth", "expected"), [
    ("7", "7", 1.0), ("seven", "7", 1.0), ("There are 7 apples.", "7", 1.0), ("7.0", "7", 1.0),
    ("6", "7", 0.0), ("8", "7", 0.0), ("7.5", "7", 0.0),
])
def test_counts(answer, truth, expected):
    assert score("counting", answer, truth).score == expected
    assert score("counting", full(answer), truth).score == expected


@pytest.mark.parametrize(("answer", "reason"), [
    ("6 or 7", "hedge:or"),
    ("between 5 and 10", "hedge:between"),
    ("at least 7", "hedge:at least"),
    ("5, 6, 7, 8", "several_values"),
    ("several", "hedge:several"),
    ("9" * 70, "too_long"),
    ("1e999", "not_an_integer"),
])
def test_adversarial(answer, reason):
    v = score("counting", answer, "7")
    assert v.score == 0.0 and v.reason == reason, v
