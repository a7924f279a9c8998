"""choice and text: normalised exact match of the option letter or the option text."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score

OPTIONS = '{"answer": "B", "options": ["Rome", "Paris", "Berlin", "Madrid"]}'


@pytest.mark.parametrize(("answer", "truth"), [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("Option B", "B"), ("b", "B. Paris"),
    ("B", "B. Paris"), ("Paris", "B. Paris"), ("B. Paris", "B. Paris"),
    ("B", OPTIONS), ("paris", OPTIONS), ("(B) Paris", OPTIONS),
    ("A, C", "A, C"), ("C and A", "AC".replace("", " ").strip()),
])
def test_choice_true(answer, truth):
    if answer == "b":  # a lower-case letter is not read as an option letter
        assert score("choice", answer, truth).score == 0.0
        return
    assert score("choice", answer, truth).score == 1.0, score("choice", answer, truth)
    assert score("choice", full(answer), truth).score == 1.0


@pytest.mark.parametrize(("answer", "truth", "reason"), [
    ("A", "B", "mismatch"),
    ("Rome", OPTIONS, "mismatch"),
    ("B. Rome", OPTIONS, "letter_text_disagree"),
    ("A", "A, C", "mismatch"),
])
def test_choice_false(answer, truth, reason):
    v = score("choice", answer, truth)
    assert v.score == 0.0 and v.reason == reason, v


@pytest.mark.parametrize(("answer", "reason"), [
    ("A or B", "hedge:or"),
    ("A, B, C, D", "mismatch"),  # the truth quoted among wrong candidates
    ("either B or C", "hedge:either"),
    ("Paris, Rome", "mismatch"),
])
def test_choice_adversarial(answer, reason):
    v = score("choice", answer, OPTIONS)
    assert v.score == 0.0 and v.reason == reason, v


@pytest.mark.parametrize(("answer", "truth", "expected"), [
    ("The Eiffel Tower.", "eiffel tower", 1.0),
    ("  EIFFEL   tower ", "The Eiffel Tower", 1.0),
    ("Louvre", "Eiffel Tower", 0.0),
    ("Eiffel Tower or Louvre", "Eiffel Tower", 0.0),
    ("Louvre, Eiffel Tower", "Eiffel Tower", 0.0),
    ("", "Eiffel Tower", 0.0),
])
def test_text(answer, truth, expected):
    assert score("text", answer, truth).score == expected
