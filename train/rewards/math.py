"""Math answers: `math-verify` (LaTeX and plain expressions; sets, intervals, fractions, radicals, equations,
units in `\\text{…}` stripped), then a sympy numeric fallback at relative tolerance 1e-6.

Truth: the answer as LaTeX or plain text (`\\frac{1}{2}`, `(0, 1]`, `\\{1, 2\\}`, `2\\sqrt{3}`, `5 cm`).
math-verify's own signal-based timeouts are off (they fail off the main thread): run untrusted answers through
`train.rewards.pool`, which enforces a hard timeout per call.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

from pydantic import Field

from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge, oversized
from train.rewards.numbers import numbers

logging.getLogger("math_verify").setLevel(logging.ERROR)


class MathConfig(VerifierConfig):
    rel_tol: float = Field(1e-6, description="Relative tolerance of the numeric fallback.")
    abs_tol: float = Field(1e-9, description="Absolute tolerance of the numeric fallback (answers near 0).")
    max_words: int | None = Field(5, description="More words than this (LaTeX commands aside) score 0.")


def _mv() -> tuple[Any, Any, list[Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    return parse, verify, [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


class MathVerifier(Verifier):
    name = "math"
    Config = MathConfig

    def __init__(self, config: dict[str, Any] | VerifierConfig | None = None) -> None:
        super().__init__(config)
        self._parse, self._verify, self._extraction = _mv()

    def parse(self, text: str) -> list[Any]:
        """math-verify's parse of `text` (read as LaTeX math first, then as a plain expression)."""
        text = text.strip()
        wrapped = text if text.startswith("$") or text.startswith("\\[") or text.startswith("\\(") else f"${text}$"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = self._parse(wrapped, extraction_config=self._extraction, parsing_timeout=None)
            if not found:
                found = self._parse(text, extraction_config=self._extraction, parsing_timeout=None)
        return found

    def compare(self, final: str, truth: str) -> Verdict:
        for text, side in ((final, "answer"), (truth, "truth")):
            why = oversized(text)
            if why:
                return Verdict(0.0, final, truth, f"{why}:{side}")
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        gold, pred = self.parse(truth), self.parse(final)
        shown = str(pred[0]) if pred else final
        if pred and gold:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self._verify(gold, pred, timeout_seconds=None):
                    return Verdict(1.0, shown, str(gold[0]), "match")
        g, p = self.number(gold, truth), self.number(pred, final)
        if g is not None and p is not None:
            ok = math.isclose(p, g, rel_tol=self.config.rel_tol, abs_tol=self.config.abs_tol)
            return Verdict(float(ok), repr(p), repr(g), "numeric_match" if ok else "mismatch")
        return Verdict(0.0, shown, str(gold[0]) if gold else truth, "mismatch" if pred else "unparsed")

    @staticmethod
    def number(parsed: list[Any], text: str) -> float | None:
        """One finite number: the numeric value of the parsed expression, else the only number in the text."""
        if parsed:
            expr = parsed[0]
            try:
                if getattr(expr, "is_number", False) and not getattr(expr, "free_symbols", None):
                    value = complex(expr.evalf(30))
                    if value.imag == 0 and math.isfinite(value.real):
                        return value.real
            except (TypeError, ValueError, OverflowError, AttributeError):
                pass
        found = numbers(text)
        return found[0] if len(found) == 1 else None
