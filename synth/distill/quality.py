"""Text-quality checks shared by long-CoT distillation and recaptioning: repetition loops, mixed scripts
(mixed-language text) and the language of a text; plain rules, no model, so every verdict can be explained."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache

_WORD_RE = re.compile(r"\w+", re.U)
# LaTeX, code spans and box/tag markup are not prose: they are left out of the script count.
_NOT_PROSE_RE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|`[^`]*`|<\|?/?[a-z_]+\|?>|\\[A-Za-z]+", re.S)


def repetition(text: str, ngram: int = 4, max_repeats: int = 4, min_period_chars: int = 3,
               max_period_repeats: int = 6) -> str | None:
    """Why `text` looks like a generation loop, else None: a word `ngram` seen more than `max_repeats` times
    (`ngram_loop:…`), or a stretch of at least `min_period_chars` characters repeated back to back more than
    `max_period_repeats` times (`char_loop:…`)."""
    loop = re.compile(r"(.{" + str(min_period_chars) + r",}?)\1{" + str(max_period_repeats) + ",}", re.S)
    for m in loop.finditer(text):
        if any(ch.isalnum() for ch in m.group(1)):  # a ruled line (-----) or dot leaders are not a loop
            return f"char_loop:{m.group(1).strip()[:20]}"
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if len(words) >= ngram:
        grams = Counter(tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1))
        gram, n = grams.most_common(1)[0]
        if n > max_repeats:
            return f"ngram_loop:{' '.join(gram)[:40]}x{n}"
    return None


def script_of(ch: str) -> str | None:
    """The writing system of a letter: latin, cjk (Han, kana, hangul), cyrillic, greek, arabic, hebrew, thai,
    devanagari or other; None for anything that is not a letter."""
    if not ch.isalpha():
        return None
    return _script(ch)


@cache
def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    for word, script in (("LATIN", "latin"), ("CJK", "cjk"), ("HIRAGANA", "cjk"), ("KATAKANA", "cjk"),
                         ("HANGUL", "cjk"), ("CYRILLIC", "cyrillic"), ("GREEK", "greek"), ("ARABIC", "arabic"),
                         ("HEBREW", "hebrew"), ("THAI", "thai"), ("DEVANAGARI", "devanagari")):
        if name.startswith(word) or f" {word} " in f" {name} ":
            return script
    return "other"


def scripts(text: str) -> Counter[str]:
    """Letters per writing system in the prose of `text` (LaTeX, code and tags left out)."""
    prose = _NOT_PROSE_RE.sub(" ", text)
    return Counter(s for s in map(script_of, prose) if s is not None)


def mixed_language(text: str, max_share: float = 0.05, min_letters: int = 8, allowed: tuple[str, ...] = ("greek",)
                   ) -> str | None:
    """Why `text` mixes writing systems, else None: a second script (other than `allowed` ones, e.g. Greek
    letters of maths) holding more than `max_share` of the letters and at least `min_letters` of them, as when a
    response drifts from English into Chinese halfway."""
    counts = scripts(text)
    for name in allowed:
        counts.pop(name, None)
    if len(counts) < 2:
        return None
    (first, _), (second, n) = counts.most_common(2)
    total = sum(counts.values())
    if n >= min_letters and n / total > max_share:
        return f"mixed_language:{first}+{second}"
    return None


_IDENTIFIER = None


def language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of `text` by langid (normalised probabilities)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from langid.langid import LanguageIdentifier, model

        _IDENTIFIER = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    lang, prob = _IDENTIFIER.classify(text)
    return str(lang), float(prob)
