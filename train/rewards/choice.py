"""Multiple choice and short text: normalised exact match (the option letter, or the option's text).

Truth for `choice`: a letter (`B`), a letter with its option (`B. Paris`, `(B) Paris`), several letters for a
multi-select question (`A, C`), or JSON `{"answer": "B", "options": ["Rome", "Paris", …]}` (options as a list
lettered A, B, … or a `{"A": …}` object). An answer may name the letter, the option text, or both (then both must
agree). Truth for `text`: the expected text; case, punctuation, articles and spacing are ignored.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata

from pydantic import Field

from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge

_PUNCT = str.maketrans({c: " " for c in string.punctuation + "，。、；：！？（）【】「」《》“”‘’"})


def normalize_text(text: str) -> str:
    """Lower case, NFKC, no punctuation, no English articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


_LETTER_RE = re.compile(r"^\s*(?:the\s+answer\s+is|answer\s*:|option|choice)?\s*\(?([A-Z])\)?(?:[.:)]\s*|\s+|$)(.*)$",
                        re.S | re.I)
_LETTERS_RE = re.compile(r"^\s*\(?[A-Z]\)?(?:\s*(?:,|and|&|\s)\s*\(?[A-Z]\)?)+\s*$")


def _letter_split(text: str, strict_case: bool = True) -> tuple[str | None, str]:
    """(`B`, `Paris`) from `B. Paris`; (None, text) when the text does not start with an option letter."""
    m = _LETTER_RE.match(text)
    if m is None or (strict_case and not m.group(1).isupper()):
        return None, text.strip()
    return m.group(1).upper(), m.group(2).strip().rstrip(".")


def parse_truth(truth: str) -> tuple[set[str], dict[str, str], str]:
    """(correct letters, options by letter, correct option text) from any accepted truth form."""
    try:
        obj = json.loads(truth)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "answer" in obj:
        raw = obj.get("options") or {}
        options = ({chr(65 + i): str(o) for i, o in enumerate(raw)} if isinstance(raw, list)
                   else {str(k).upper(): str(v) for k, v in raw.items()})
        letters, text = parse_truth(str(obj["answer"]))[::2]
        if not letters:
            letters = {k for k, v in options.items() if normalize_text(v) == normalize_text(text)}
        if len(letters) == 1 and not text.strip(" ."):
            text = options.get(next(iter(letters)), "")
        return letters, options, text if len(letters) <= 1 else ""
    if _LETTERS_RE.match(truth):
        return set(re.findall(r"[A-Z]", truth)), {}, ""
    letter, rest = _letter_split(truth)
    if letter and (rest or len(truth.strip(" ().")) == 1):
        return {letter}, ({letter: rest} if rest else {}), rest
    return set(), {}, truth


class ChoiceConfig(VerifierConfig):
    max_words: int | None = Field(25, description="More words than this score 0 (option texts can be long).")


class ChoiceVerifier(Verifier):
    name = "choice"
    Config = ChoiceConfig

    def compare(self, final: str, truth: str) -> Verdict:
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        letters, options, text = parse_truth(truth)
        if len(letters) > 1 or _LETTERS_RE.match(final):
            got = set(re.findall(r"[A-Z]", final)) if _LETTERS_RE.match(final) else set()
            ok = got == letters
            return Verdict(float(ok), ",".join(sorted(got)), ",".join(sorted(letters)), "match" if ok else "mismatch")
        letter, rest = _letter_split(final)
        if letter is not None:
            if letter not in letters:
                return Verdict(0.0, letter, ",".join(sorted(letters)) or text, "mismatch")
            option = options.get(letter, text)
            if rest and not option and re.search(r"(?<![A-Za-z])[A-Z](?![A-Za-z])", rest):
                return Verdict(0.0, final, truth, "several_letters")  # "A is wrong, B …": reasoning, not a pick
            if rest and option and normalize_text(rest) != normalize_text(option):
                return Verdict(0.0, f"{letter}. {rest}", f"{letter}. {option}", "letter_text_disagree")
            return Verdict(1.0, letter, ",".join(sorted(letters)), "match")
        if text and normalize_text(final) == normalize_text(text):
            return Verdict(1.0, normalize_text(final), normalize_text(text), "match")
        return Verdict(0.0, normalize_text(final), normalize_text(text) or ",".join(sorted(letters)), "mismatch")


class TextVerifier(Verifier):
    name = "text"

    def compare(self, final: str, truth: str) -> Verdict:
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        got, want = normalize_text(final), normalize_text(truth)
        ok = bool(want) and got == want
        return Verdict(float(ok), got, want, "match" if ok else "mismatch")
