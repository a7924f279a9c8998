"""chart/numeric: relative tolerance 2.5e-2, years exactly, text by normalised exact match."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score


@pytest.mark.parametrize(("answer", "truth"), [
    ("42", "42.5"),  # within 2.5%
    ("1,234", "1230"),
    ("45%", "45"),
    ("3.2e4", "32000"),
    ("about 12 million".replace("about ", ""), "12"),
    ("2019", "2019"),
    ("Germany", "germany"),
    ("The United States.", "united states"),
])
def test_true(answer, truth):
    assert score("chart", answer, truth).score == 1.0, score("chart", answer, truth)
    assert score("numeric", full(answer), truth).score == 1.0


@pytest.mark.parametrize(("answer", "truth", "reason"), [
    ("40", "42.5", "mismatch"),
    ("2018", "2019", "year_mismatch"),  # years are exact, not within 2.5%
    ("France", "Germany", "mismatch"),
    ("-42.5", "42.5", "mismatch"),
])
def test_false(answer, truth, reason):
    v = score("chart", answer, truth)
    assert v.score == 0.0 and v.reason == reason, v


@pytest.mark.parametrize(("answer", "reason"), [
    ("0-100", "several_values"),
    ("40 or 42", "hedge:or"),
    ("between 40 and 45", "hedge:between"),
    ("roughly 42", "hedge:roughly"),
    ("41, 42, 43", "several_values"),
    ("1e999", "not_finite"),
    ("9" * 80, "huge_number"),
    ("no idea", "no_number"),
])
def test_adversarial(answer, reason):
    v = score("chart", answer, "42")
    assert v.score == 0.0 and v.reason == reason, v
