"""math: math-verify plus a numeric fallback at 1e-6; sets, intervals, fractions, radicals, units stripped."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score


@pytest.mark.parametrize(("answer", "truth"), [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{3}{4}", "3/4"),
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\{2, 1\}", r"\{1,2\}"),
    ("(0, 1]", "(0,1]"),
    (r"(2, \infty)", "x > 2"),
    (r"5\text{ cm}", "5"),
    ("5 cm", "5"),
    ("1,000", "1000"),
    ("5.0000001", "5"),  # the numeric fallback, relative tolerance 1e-6
    ("x = 5", "5"),
])
def test_true(answer, truth):
    v = score("math", answer, truth)
    assert v.score == 1.0, v
    assert score("math", full(answer), truth).score == 1.0


@pytest.mark.parametrize(("answer", "truth"), [
    (r"\frac{1}{3}", "0.5"),
    ("[0, 1]", "(0,1]"),
    (r"\{1, 2, 3\}", r"\{1,2\}"),
    ("5.0001", "5"),  # outside 1e-6
    (r"\sqrt{13}", r"2\sqrt{3}"),
])
def test_false(answer, truth):
    assert score("math", answer, truth).score == 0.0
    assert score("math", full(answer), truth).score == 0.0


@pytest.mark.parametrize(("answer", "reason"), [
    ("a correct number between 0 and 10", "hedge:between"),
    ("approximately 5", "hedge:approximately"),
    (r"3 \text{ or } 5", "hedge:or"),
    (r"\approx 5", r"hedge:\approx"),
    ("[0, 10]", "mismatch"),
    ("5, 7", "mismatch"),
    (r"10^{10^{10}}", "huge_exponent:answer"),
    ("9" * 150, "huge_number:answer"),
    ("9" * 500, "too_long"),
    (r"\def\a{\b\b}\def\b{\c\c}\a 5", "latex_macro:answer"),
])
def test_adversarial(answer, reason):
    v = score("math", answer, "5")
    assert v.score == 0.0 and v.reason == reason, v


def test_full_response_needs_exactly_one_box():
    assert score("math", "<think>5</think><answer>The answer is 5.</answer>", "5").reason == "no_box"
    two = "<think>t</think><answer><|begin_of_box|>5<|end_of_box|> <|begin_of_box|>7<|end_of_box|></answer>"
    assert score("math", two, "5").reason == "several_boxes"
    # a bare answer is verified as it is
    assert score("math", "5", "5").score == 1.0
