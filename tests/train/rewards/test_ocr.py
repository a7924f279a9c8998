"""ocr: 1 − edit distance / max length."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score


def test_exact_and_whitespace():
    assert score("ocr", "Hello   world\n", "Hello world").score == 1.0
    assert score("ocr", full("Hello world"), "Hello world").score == 1.0


@pytest.mark.parametrize(("answer", "truth", "expected"), [
    ("Hello wrld", "Hello world", 1 - 1 / 11),
    ("Hxllo wxrld", "Hello world", 1 - 2 / 11),
    ("", "Hello world", 0.0),
    ("abcd", "abc", 1 - 1 / 4),
])
def test_partial(answer, truth, expected):
    if not answer:
        assert score("ocr", answer, truth).reason == "empty"
    assert score("ocr", answer, truth).score == pytest.approx(expected)


def test_adversarial_padding_and_candidates_lose():
    truth = "Invoice 2024-113"
    padded = "Invoice 2024-113 " + "or maybe Invoice 2024-118 " * 10
    assert score("ocr", padded, truth).score < 0.1
    assert score("ocr", "<think>x</think><answer>Invoice 2024-113</answer>", truth).reason == "no_box"
