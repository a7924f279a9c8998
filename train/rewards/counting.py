"""Counting: the exact integer. Truth: an integer (`7`). The answer holds one integer (digits or a number word
up to twenty); ranges, several candidates and hedges score 0."""

from __future__ import annotations

from pydantic import Field

from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge, oversized
from train.rewards.numbers import numbers, word_numbers


class CountingConfig(VerifierConfig):
    max_answer_chars: int = Field(60, description="A longer final answer scores 0.")
    max_words: int | None = Field(6, description="More words than this score 0.")


class CountingVerifier(Verifier):
    name = "counting"
    Config = CountingConfig

    def compare(self, final: str, truth: str) -> Verdict:
        want = numbers(truth)
        if len(want) != 1 or want[0] is None or want[0] != int(want[0]):
            return Verdict(0.0, final, truth, "truth_not_an_integer")
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        why = oversized(final)
        if why:
            return Verdict(0.0, final, truth, why)
        got: list[float | None] = [*numbers(final), *word_numbers(final)]
        if len(got) != 1:
            return Verdict(0.0, final, truth, "several_values" if got else "no_number")
        g = got[0]
        if g is None or g != int(g):
            return Verdict(0.0, final, truth, "not_an_integer")
        ok = int(g) == int(want[0])
        return Verdict(float(ok), str(int(g)), str(int(want[0])), "match" if ok else "mismatch")
