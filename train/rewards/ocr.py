"""OCR: 1 − edit distance / max length (Levenshtein, rapidfuzz), after Unicode NFKC and whitespace collapsing.

Truth: the text in the image. The answer's final text (its box in a full response, or a bare answer) is the
transcription; a longer answer is penalised by the length in the denominator.
"""

from __future__ import annotations

import unicodedata

from pydantic import Field
from rapidfuzz.distance import Levenshtein

from train.rewards.base import Verdict, Verifier, VerifierConfig


class OcrConfig(VerifierConfig):
    max_answer_chars: int = Field(100_000, description="A longer transcription scores 0.")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


class OcrVerifier(Verifier):
    name = "ocr"
    Config = OcrConfig

    def compare(self, final: str, truth: str) -> Verdict:
        got, want = _norm(final), _norm(truth)
        longest = max(len(got), len(want))
        if not longest:
            return Verdict(1.0, got, want, "match")
        dist = Levenshtein.distance(got, want)
        return Verdict(1.0 - dist / longest, got, want, f"edit_distance:{dist}")
