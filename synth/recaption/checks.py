"""The checks a recaption must pass: the facts of the original (named entities, numbers, quoted text) still there
unless PP-OCR of the image contradicts them, length bounds, the same language, no repetition loop. Each check
returns a short machine-readable reason, or None when the candidate passes."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from pipelines.formats import TAGS, parse_answer
from synth.distill.quality import language, repetition

# Quoted text: straight or typographic double quotes, guillemets, CJK brackets, and single quotes that open after a
# space or the start and close before a space/punctuation (so "don't" and "dogs' toys" are not quotes).
_QUOTE_RES = (
    re.compile(r'"([^"\n]{1,120})"'),
    re.compile(r"“([^”\n]{1,120})”"),
    re.compile(r"«\s*([^»\n]{1,120}?)\s*»"),
    re.compile(r"「([^」\n]{1,120})」"),
    re.compile(r"(?:(?<=\s)|^)'([^'\n]{1,120})'(?=[\s.,;:!?)]|$)"),
)
_NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:[.,:/]\d+)*(?:st|nd|rd|th)?(?![\w])")
_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*", re.U)
# Capitalised words that are not names: articles, pronouns and the like at any position (titles capitalise them).
_NOT_NAMES = frozenset(
    "a an the this that these those there here it its i he she they we you his her their our my your in on at of "
    "and or but with from to for by as is are was were be image picture photo photograph close view background "
    "foreground left right top bottom front".split())


@dataclass
class Facts:
    """What of a caption a faithful rewrite must keep."""

    entities: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().replace("’", "'").split())


def _number_key(n: str) -> str:
    return re.sub(r"(st|nd|rd|th)$", "", n.replace(",", ""))


def facts(text: str) -> Facts:
    """Named entities (runs of capitalised words that are not sentence-initial function words, and all-caps
    acronyms), numbers and quoted text of a caption, in order, without repeats."""
    quoted: list[str] = []
    spans: list[tuple[int, int]] = []
    for rx in _QUOTE_RES:
        for m in rx.finditer(text):
            if m.group(1).strip() and m.group(1).strip() not in quoted:
                quoted.append(m.group(1).strip())
                spans.append(m.span())
    numbers = list(dict.fromkeys(m.group(0) for m in _NUMBER_RE.finditer(text)))
    entities: list[str] = []
    run: list[str] = []

    def close() -> None:
        if run:
            name = " ".join(run)
            if name not in entities:
                entities.append(name)
            run.clear()
    prev_end = 0
    for m in _WORD_RE.finditer(text):
        word = m.group(0).strip("'’-")
        between = text[prev_end:m.start()]
        if run and (between.strip() or any(a <= m.start() < b for a, b in spans)):
            close()  # punctuation or a quote breaks a name
        prev_end = m.end()
        if not word or any(a <= m.start() < b for a, b in spans):
            continue
        capital = word[0].isupper()
        acronym = len(word) >= 2 and word.isupper()
        sentence_start = not text[:m.start()].strip() or text[:m.start()].rstrip()[-1] in ".!?:\n"
        if (capital or acronym) and word.lower() not in _NOT_NAMES and (not sentence_start or acronym or run):
            run.append(word)
        elif capital and sentence_start and word.lower() not in _NOT_NAMES and _capitalised_elsewhere(word, text, m.start()):
            run.append(word)
        else:
            close()
    close()
    return Facts(entities, numbers, quoted)


def _capitalised_elsewhere(word: str, text: str, start: int) -> bool:
    """A sentence-initial capitalised word counts as a name when it appears capitalised mid-sentence too, or
    is not a common lowercase word in the same caption."""
    rest = text[:start] + " " + text[start + len(word):]
    return re.search(rf"\b{re.escape(word.lower())}\b", rest) is None and re.search(rf"\b{re.escape(word)}\b", rest) \
        is not None


def missing_facts(original: str, candidate: str, ocr_text: str | None = None) -> list[str]:
    """The facts of `original` that `candidate` lost, as `kind:fact`. A number or quoted text that PP-OCR of the
    image (`ocr_text`: what it read; None: OCR not run; "" : it read nothing) does not read is excused when OCR
    read something: the image contradicts the original there, so the rewrite may correct it."""
    f = facts(original)
    cand = _norm(candidate)
    cand_numbers = {_number_key(n) for n in _NUMBER_RE.findall(candidate)}
    ocr = _norm(ocr_text) if ocr_text else ""
    ocr_compact = ocr.replace(" ", "")
    lost: list[str] = []
    for e in f.entities:
        if _norm(e) not in cand:
            lost.append(f"entity:{e}")
    for n in f.numbers:
        if _number_key(n) not in cand_numbers and not (ocr and _number_key(n) not in ocr_compact.replace(",", "")):
            lost.append(f"number:{n}")
    for q in f.quoted:
        if _norm(q) not in cand and not (ocr and _norm(q).replace(" ", "") not in ocr_compact):
            lost.append(f"quote:{q}")
    return lost


class RecaptionChecks(BaseModel):
    """Bounds a recaption must respect (the `checks:` block of the recaption stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_chars: int = Field(10, ge=0, description="A shorter recaption fails: too_short.")
    max_chars: int = Field(2000, ge=1, description="A longer recaption fails: too_long.")
    min_length_ratio: float = Field(0.5, ge=0, description="Recaption length / original length below this: too_short.")
    max_length_ratio: float = Field(10.0, gt=0, description="Recaption length / original length above this: too_long.")
    language_min_chars: int = Field(20, ge=1, description="Both texts need this many characters for the language "
                                                          "check (langid is unreliable on a few words).")
    language_min_prob: float = Field(0.9, ge=0, le=1, description="Languages differ only when langid is at least "
                                                                   "this sure of both.")
    repetition_ngram: int = Field(3, ge=1, description="Word n-gram size of the loop check.")
    repetition_max: int = Field(3, ge=1, description="An n-gram seen more often than this is a loop.")
    keep_facts: bool = Field(True, description="Entities, numbers and quoted text of the original must survive.")


def candidate_text(response: str) -> str:
    """The caption inside a teacher response: the answer part of `<think>…</think><answer>…</answer>` when the
    teacher used that form, without box markers; else the whole text."""
    parsed = parse_answer(response)
    text = parsed.answer if parsed.answer is not None and not parsed.bare else response
    for tag in TAGS:
        text = text.replace(tag, " ")
    return " ".join(text.split())


def check_recaption(original: str, candidate: str, checks: RecaptionChecks | None = None,
                    ocr_text: str | None = None) -> str | None:
    """The reason `candidate` may not replace `original`, else None. Order: empty, length, repetition, language,
    lost facts."""
    c = checks or RecaptionChecks()
    cand = candidate.strip()
    if not cand:
        return "empty"
    n, n0 = len(cand), max(len(original.strip()), 1)
    if n < c.min_chars or n < c.min_length_ratio * n0:
        return f"too_short:{n}"
    if n > c.max_chars or n > c.max_length_ratio * n0:
        return f"too_long:{n}"
    loop = repetition(cand, ngram=c.repetition_ngram, max_repeats=c.repetition_max)
    if loop:
        return f"repetition:{loop}"
    if len(original.strip()) >= c.language_min_chars and n >= c.language_min_chars:
        (a, pa_), (b, pb) = language(original), language(cand)
        if a != b and pa_ >= c.language_min_prob and pb >= c.language_min_prob:
            return f"language:{a}->{b}"
    if c.keep_facts:
        lost = missing_facts(original, cand, ocr_text)
        if lost:
            return "lost_" + lost[0]
    return None


def clip_margin_ok(original_score: float, recaption_score: float, margin: float) -> bool:
    """A recaption may score below the original by at most `margin` (cosine)."""
    return recaption_score >= original_score - margin
