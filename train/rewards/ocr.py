"""OCR: 1 − edit distance / max length (Levenshtein, rapidfuzz), after Unicode NFKC and whitespace collapsing.

Truth: the text in the image. The answer's final text (its box in a full response, or a bare answer) is the
transcription; a longer answer is penalised by the length in the denominator. Alternatives offered
(`or`, `maybe`, … where the truth has none) score 0.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import Field
from rapidfuzz.distance import Levenshtein

from train.rewards.base import Verdict, Verifier, VerifierConfig


class OcrConfig(VerifierConfig):
    max_answer_chars: int = Field(100_000, description="A longer transcription scores 0.")
    max_words: int | None = Field(None, description="A transcription may be long: no word limit.")


_ALTERNATIVES = re.compile(r"\b(or|either|maybe|perhaps|possibly)\b", re.I)


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


class OcrVerifier(Verifier):
    name = "ocr"
    Config = OcrConfig

    def compare(self, final: str, truth: str) -> Verdict:
        alt = _ALTERNATIVES.search(final)
        if alt and not re.search(rf"\b{alt.group(0)}\b", truth, re.I):
            return Verdict(0.0, final, truth, f"hedge:{alt.group(0).lower()}")  # candidates, not a reading
        got, want = _norm(final), _norm(truth)
        longest = max(len(got), len(want))
        if not longest:
            return Verdict(1.0, got, want, "match")
        dist = Levenshtein.distance(got, want)
        return Verdict(1.0 - dist / longest, got, want, f"edit_distance:{dist}")
