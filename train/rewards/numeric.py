"""Chart and numeric answers: numbers at relative tolerance 2.5e-2, years exactly, text by normalised exact match.

Truth: one number (`42.5`, `1,234`, `45%`, `3.2e4`), a year (four digits, 1800–2100, compared exactly; other four-digit values are numbers), or text
(`Germany`). The answer must hold exactly one number (a unit or a few words around it are fine); ranges, several
candidates and hedges score 0.
"""

from __future__ import annotations

import math
import re

from pydantic import Field

from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge, oversized
from train.rewards.choice import normalize_text
from train.rewards.numbers import numbers


class ChartConfig(VerifierConfig):
    max_answer_chars: int = Field(100, description="A longer final answer scores 0.")
    rel_tol: float = Field(2.5e-2, description="Relative tolerance for numbers (not years).")
    max_words: int | None = Field(6, description="More words than this score 0.")


_YEAR_RE = re.compile(r"\s*(?:18\d\d|19\d\d|20\d\d|2100)\s*")


class ChartVerifier(Verifier):
    name = "chart"
    Config = ChartConfig

    def compare(self, final: str, truth: str) -> Verdict:
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        want = numbers(truth)
        if len(want) != 1 or want[0] is None:  # a text answer
            got_t, want_t = normalize_text(final), normalize_text(truth)
            ok = bool(want_t) and got_t == want_t
            return Verdict(float(ok), got_t, want_t, "match" if ok else "mismatch")
        why = oversized(final)
        if why:
            return Verdict(0.0, final, truth, why)
        got = numbers(final)
        if len(got) != 1:
            return Verdict(0.0, final, truth, "several_values" if got else "no_number")
        g, w = got[0], want[0]
        if g is None:
            return Verdict(0.0, final, truth, "not_finite")
        if _YEAR_RE.fullmatch(truth):
            ok = g == w
            return Verdict(float(ok), f"{g:g}", f"{w:g}", "match" if ok else "year_mismatch")
        ok = math.isclose(g, w, rel_tol=self.config.rel_tol, abs_tol=0.0 if w else 1e-12)
        return Verdict(float(ok), f"{g:.10g}", f"{w:.10g}", "match" if ok else "mismatch")
