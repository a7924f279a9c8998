"""The formats synth, train and the verifiers share: the long-CoT answer, boxes in the 0–1000 convention, and the
difficulty tiers a prompt's pass rate falls in (written by distillation and grading, read by RLCS).

GLM-4.1V writes a reasoning answer as `<think>…</think><answer>…</answer>` with the verifiable final answer in
exactly one `<|begin_of_box|>…<|end_of_box|>`; boxes in model text are integers normalised to [0, 1000).
The special tokens are defined here (the data-plane core may not import `model/`); `model.tokens` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

THINK_BEGIN, THINK_END = "<think>", "</think>"
ANSWER_BEGIN, ANSWER_END = "<answer>", "</answer>"
BOX_BEGIN, BOX_END = "<|begin_of_box|>", "<|end_of_box|>"
TAGS = (THINK_BEGIN, THINK_END, ANSWER_BEGIN, ANSWER_END, BOX_BEGIN, BOX_END)

BOX_SCALE = 1000  # boxes in model text: integers in [0, BOX_SCALE)

_BOX_RE = re.compile(re.escape(BOX_BEGIN) + r"(.*?)" + re.escape(BOX_END), re.S)


def build_answer(answer: str, think: str | None = None, boxed: str | None = None) -> str:
    """A response in the report's form. `boxed` (the verifiable final answer) goes inside one box at the end of
    the answer; `think` None means no thinking part (a non-reasoning response)."""
    body = answer
    if boxed is not None:
        body = f"{answer}{BOX_BEGIN}{boxed}{BOX_END}" if answer else f"{BOX_BEGIN}{boxed}{BOX_END}"
    head = f"{THINK_BEGIN}{think}{THINK_END}" if think is not None else ""
    return f"{head}{ANSWER_BEGIN}{body}{ANSWER_END}"


@dataclass
class ParsedAnswer:
    """What a response holds. `problems` lists every format violation found (empty: well formed)."""

    think: str | None
    answer: str | None  # the text inside <answer>…</answer>, or the whole text for a bare answer
    boxes: list[str] = field(default_factory=list)  # contents of every box, in order
    bare: bool = False  # no tags at all: a bare answer
    problems: list[str] = field(default_factory=list)

    @property
    def well_formed(self) -> bool:
        return not self.problems

    @property
    def final(self) -> str | None:
        """The verifiable answer: the one box's content; with no box, the answer text; None if ambiguous."""
        if len(self.boxes) == 1:
            return self.boxes[0].strip()
        if not self.boxes and self.answer is not None:
            return self.answer.strip()
        return None


def parse_answer(text: str) -> ParsedAnswer:
    """Split a response into think / answer / boxes and note every violation of the format.

    Accepted: `<think>T</think><answer>A</answer>` (whitespace between the parts allowed), `<answer>A</answer>`,
    or a bare answer with no tags. Boxes are looked for inside the answer only (a box in the thinking does
    not count as the final answer, but is reported)."""
    problems: list[str] = []
    counts = {t: text.count(t) for t in TAGS}
    has_tags = any(counts[t] for t in (THINK_BEGIN, THINK_END, ANSWER_BEGIN, ANSWER_END))
    if not has_tags:
        boxes = _BOX_RE.findall(text)
        if counts[BOX_BEGIN] != counts[BOX_END] or counts[BOX_BEGIN] != len(boxes):
            problems.append("unbalanced_box")
        return ParsedAnswer(think=None, answer=text, boxes=boxes, bare=True, problems=problems)
    for open_, close in ((THINK_BEGIN, THINK_END), (ANSWER_BEGIN, ANSWER_END)):
        if counts[open_] > 1 or counts[close] > 1:
            problems.append(f"repeated_tag:{open_}")
        if counts[open_] != counts[close]:
            problems.append(f"unbalanced_tag:{open_}")
    think = answer = None
    m = re.fullmatch(
        r"\s*(?:" + re.escape(THINK_BEGIN) + r"(?P<think>.*?)" + re.escape(THINK_END) + r")?\s*"
        + re.escape(ANSWER_BEGIN) + r"(?P<answer>.*)" + re.escape(ANSWER_END) + r"\s*",
        text, re.S,
    )
    if m is None or (m.group("think") is not None and any(t in m.group("think") for t in TAGS[:4])) \
            or any(t in m.group("answer") for t in TAGS[:4]):
        problems.append("malformed_tags")
        # Best effort: the text after the last <answer>, so verifiers can still report what was said.
        tail = text.rsplit(ANSWER_BEGIN, 1)[-1] if ANSWER_BEGIN in text else None
        answer = tail.split(ANSWER_END, 1)[0] if tail is not None else None
        think_m = re.search(re.escape(THINK_BEGIN) + r"(.*?)" + re.escape(THINK_END), text, re.S)
        think = think_m.group(1) if think_m else None
    else:
        think, answer = m.group("think"), m.group("answer")
    boxes = _BOX_RE.findall(answer) if answer is not None else []
    if answer is not None and (answer.count(BOX_BEGIN) != answer.count(BOX_END) or answer.count(BOX_BEGIN) != len(boxes)):
        problems.append("unbalanced_box")
    if think is not None and BOX_BEGIN in think:
        problems.append("box_in_think")
    return ParsedAnswer(think=think, answer=answer, boxes=boxes, bare=False, problems=problems)


def extract_final(text: str) -> str | None:
    """The verifiable answer of a response (full or bare): the content of its only box, else None when it has
    several boxes; a response with no box gives its answer text."""
    return parse_answer(text).final


def extract_boxed(text: str) -> str | None:
    """The content of exactly one box anywhere in `text`, else None (the strict rule for verifiable tasks)."""
    found = _BOX_RE.findall(text)
    return found[0].strip() if len(found) == 1 else None


# --- boxes ----------------------------------------------------------------------------------------------------

def box_to_1000(box: Sequence[float], width: int, height: int) -> list[int]:
    """Pixel `[x1, y1, x2, y2]` of a `width`×`height` image → integers in [0, 1000), as GLM-4.1V writes them."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = (float(v) for v in box)
    top = BOX_SCALE - 1

    def scale(v: float, side: int) -> int:
        return min(top, max(0, int(v * BOX_SCALE / side)))

    return [scale(x1, width), scale(y1, height), scale(x2, width), scale(y2, height)]


def box_from_1000(box: Sequence[float], width: int, height: int) -> list[float]:
    """Integers in [0, 1000) → pixel `[x1, y1, x2, y2]` of a `width`×`height` image (the inverse of box_to_1000
    up to the quantisation of one unit: 1/1000 of a side)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1 * width / BOX_SCALE, y1 * height / BOX_SCALE, x2 * width / BOX_SCALE, y2 * height / BOX_SCALE]


def format_box(box: Sequence[int]) -> str:
    """Model text of one normalised box: `[x1,y1,x2,y2]`."""
    return "[" + ",".join(str(int(v)) for v in box) + "]"


_BOX_TEXT_RE = re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]")


def parse_boxes(text: str) -> list[list[float]]:
    """Every `[x1,y1,x2,y2]` in `text` (also the `[[…],[…]]` list form), in order."""
    return [[float(v) for v in m.groups()] for m in _BOX_TEXT_RE.finditer(text)]


# --- difficulty tiers ----------------------------------------------------------------------------------------

# (name, lowest pass rate in the tier), easiest first: very_hard is 0 < p <= 0.1; a pass rate of 0 is `unsolved`.
TIERS: tuple[tuple[str, float], ...] = (("very_easy", 0.9), ("easy", 0.6), ("medium", 0.3), ("hard", 0.101),
                                        ("very_hard", 1e-9))
UNSOLVED = "unsolved"
TIER_NAMES: tuple[str, ...] = tuple(name for name, _ in TIERS) + (UNSOLVED,)


def tier_of(pass_rate: float | None, tiers: tuple[tuple[str, float], ...] = TIERS) -> str:
    """The tier of a pass rate in [0, 1] (pass@k of a prompt); None (never rolled out) counts as unsolved."""
    if pass_rate is None or pass_rate <= 0:
        return UNSOLVED
    for name, low in tiers:
        if pass_rate >= low:
            return name
    return tiers[-1][0]
