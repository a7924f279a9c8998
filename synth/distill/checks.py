"""What makes a teacher sample usable for long-CoT SFT, and how pass@k becomes a difficulty tier.

Checks run in a fixed order and a sample is dropped with the first reason that applies:
`truncated`, `format:…` (missing or repeated tags, no/several boxes on a verifiable task, a box on an open one),
`wrong_answer:…` (the domain's verifier), then `mixed_language:…`, `repetition:…`, `overlong_think:…`.
A sample *passes* (counts towards pass@k) when it is well formed and right; the later style checks drop it from
SFT without making the prompt look harder. `counts_as_pass` reads that back from a ledger reason.
"""

from __future__ import annotations

from functools import cache

from pipelines.formats import TIERS, UNSOLVED, parse_answer, tier_of  # noqa: F401 - TIERS/UNSOLVED re-exported

FAIL_PREFIXES = ("truncated", "format:", "wrong_answer")
UNVERIFIABLE = "unverifiable"


@cache
def _verifiable_domain(domain: str) -> bool:
    from train.rewards.base import verifier_class

    try:
        cls = verifier_class(domain)
    except ValueError:
        return False
    return bool(cls.verifiable) and domain != "format"


def is_verifiable(domain: str | None, answer: str | None) -> bool:
    """A prompt is verifiable when it has a ground-truth answer and its domain names a verifier that checks a
    boxed final answer."""
    return bool(domain) and answer is not None and str(answer).strip() != "" and _verifiable_domain(str(domain))


def format_problem(text: str, verifiable: bool, finish_reason: str = "stop") -> str | None:
    """`truncated` or `format:…` for a response that breaks the report's format, else None."""
    if finish_reason == "length":
        return "truncated"
    parsed = parse_answer(text)
    if parsed.bare:
        return "format:no_tags"
    if parsed.problems:
        return "format:" + parsed.problems[0]
    if parsed.think is None:
        return "format:no_think"
    if not (parsed.answer or "").strip():
        return "format:empty_answer"
    if verifiable and not parsed.boxes:
        return "format:no_box"
    if verifiable and len(parsed.boxes) > 1:
        return "format:several_boxes"
    if not verifiable and parsed.boxes:
        return "format:box_on_open_task"
    return None


def counts_as_pass(status: str, reason: str | None) -> bool:
    """Whether a sample, given its ledger status and reason, counted towards its prompt's pass@k."""
    if status == "kept":
        return True
    return status == "dropped" and bool(reason) and not str(reason).startswith(FAIL_PREFIXES)


def tier(pass_at_k: float | None, tiers: tuple[tuple[str, float], ...] = TIERS) -> str:
    """The offline difficulty tier of a prompt: very_easy … very_hard by pass@k, unsolved at 0; a prompt with no
    verifiable answer is `unverifiable`."""
    return UNVERIFIABLE if pass_at_k is None else tier_of(pass_at_k, tiers)
