"""The format reward (the report's style rules): well-formed tags, exactly one box for a verifiable task and
none for a non-verifiable one, no long mixed-language runs, no repeated blocks. 1 when every rule holds.

Truth: `verifiable` (the task has a checkable final answer) or `open` (it does not; also `non-verifiable`,
`false`). The answer is the whole response, full or bare (a bare answer has no tags to check).
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from pipelines.formats import TAGS, parse_answer
from train.rewards.base import Verdict, Verifier, VerifierConfig

_SCRIPTS = [
    ("han", re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
]
_SENTENCE_RE = re.compile(r"[.!?。！？;；\n]+")
_BLOCK_RE = re.compile(r"[.!?。！？;；,，\n]+")
_NOT_VERIFIABLE = {"open", "non-verifiable", "nonverifiable", "not verifiable", "false", "no", "0"}


class FormatConfig(VerifierConfig):
    max_answer_chars: int = Field(200_000, description="A longer response fails the format.")
    mixed_switches: int = Field(4, description="Script switches in one sentence that make a mixed-language run.")
    mixed_minority: float = Field(0.2, description="… when the minority script holds at least this share of it.")
    mixed_min_letters: int = Field(20, description="Sentences with fewer letters are not checked.")
    repeat_min_chars: int = Field(20, description="Blocks shorter than this may repeat.")
    repeat_max: int = Field(2, description="A block seen more often than this is a repeated block.")


def _script(ch: str) -> str | None:
    for name, pattern in _SCRIPTS:
        if pattern.match(ch):
            return name
    return None


def mixed_runs(text: str, switches: int, minority: float, min_letters: int) -> int:
    """Sentences that switch between scripts (Han/Kana/Hangul, Latin, Cyrillic, Arabic) often, with a real share
    of each: code-switching mid-sentence, not a quoted term."""
    found = 0
    for sentence in _SENTENCE_RE.split(text):
        scripts = [s for s in map(_script, sentence) if s]
        if len(scripts) < min_letters:
            continue
        counts = Counter(scripts)
        if len(counts) < 2 or min(counts.values()) / len(scripts) < minority:
            continue
        if sum(a != b for a, b in zip(scripts, scripts[1:], strict=False)) >= switches:
            found += 1
    return found


def repeated_blocks(text: str, min_chars: int, most: int) -> list[str]:
    """Sentences or lines of at least `min_chars` that occur more than `most` times."""
    blocks = Counter(" ".join(b.split()).lower() for b in _BLOCK_RE.split(text))
    return [b for b, n in blocks.items() if n > most and len(b) >= min_chars]


class FormatVerifier(Verifier):
    name = "format"
    Config = FormatConfig
    verifiable = False

    def score(self, answer: str, truth: str) -> Verdict:
        verifiable = truth.strip().lower() not in _NOT_VERIFIABLE
        if len(answer) > self.config.max_answer_chars:
            return Verdict(0.0, None, truth, "too_long")
        parsed = parse_answer(answer)
        problems = list(parsed.problems)
        if verifiable and len(parsed.boxes) != 1:
            problems.append("no_box" if not parsed.boxes else "several_boxes")
        if not verifiable and parsed.boxes:
            problems.append("box_in_open_task")
        c = self.config
        text = "\n".join(p for p in (parsed.think, parsed.answer) if p)
        for tag in TAGS:
            text = text.replace(tag, "\n")
        if mixed_runs(text, c.mixed_switches, c.mixed_minority, c.mixed_min_letters):
            problems.append("mixed_language")
        if repeated_blocks(text, c.repeat_min_chars, c.repeat_max):
            problems.append("repeated_block")
        shown = f"boxes={len(parsed.boxes)} bare={parsed.bare}"
        return Verdict(0.0 if problems else 1.0, shown, "verifiable" if verifiable else "open",
                       ",".join(problems) or "well_formed")
