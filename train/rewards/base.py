"""The verifier contract and registry: `Verifier.score(answer, truth) -> Verdict`, found by domain name.

Built-ins and plug-ins register alike, by entry point in the group `vlmdata.verifiers` (`name = "module:Class"`);
the built-ins are also known without installed metadata, and any `module:Class` import path works as a domain.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from pipelines.formats import BOX_BEGIN, BOX_END, parse_answer
from pipelines.plugins import import_path, load_group

ENTRY_POINT_GROUP = "vlmdata.verifiers"
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # words of prose; \frac, \sqrt, x, y are not

# Built-in domains by name (also registered as entry points in pyproject; listed here so a source checkout
# without refreshed metadata still has them). Several names may share a class.
BUILTINS: dict[str, str] = {
    "math": "train.rewards.math:MathVerifier",
    "physics": "train.rewards.physics:PhysicsVerifier",
    "chemistry": "train.rewards.physics:ChemistryVerifier",
    "chart": "train.rewards.numeric:ChartVerifier",
    "numeric": "train.rewards.numeric:ChartVerifier",
    "choice": "train.rewards.choice:ChoiceVerifier",
    "text": "train.rewards.choice:TextVerifier",
    "ocr": "train.rewards.ocr:OcrVerifier",
    "grounding": "train.rewards.grounding:GroundingVerifier",
    "gui": "train.rewards.gui:GuiVerifier",
    "counting": "train.rewards.counting:CountingVerifier",
    "format": "train.rewards.style:FormatVerifier",
}


class Verdict(NamedTuple):
    """A score in [0, 1], what was extracted from the answer, what it was compared with, and a short
    machine-readable reason (`match`, `mismatch`, `no_box`, `hedge:or`, `timeout`, `error:…`). A named tuple:
    cheap to build and to send between processes by the thousand."""

    score: float
    extracted: str | None = None
    compared: str | None = None
    reason: str = ""


class VerifierConfig(BaseModel):
    """Options every verifier has; subclasses add theirs."""

    model_config = ConfigDict(extra="forbid")
    max_answer_chars: int = Field(200, description="A longer final answer scores 0 (a box holding the reasoning).")
    max_words: int | None = Field(12, description="A final answer with more words (LaTeX commands aside) scores 0: "
                                                   "reasoning in the box, not an answer. None: no limit.")


class Verifier:
    """One domain's reward. Subclasses set `name`, may extend `Config`, and implement `compare(final, truth)`
    on the extracted final answer; `score` does the extraction every verifiable domain shares."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[VerifierConfig]] = VerifierConfig
    verifiable: ClassVar[bool] = True  # a full response must carry its final answer in exactly one box

    def __init__(self, config: dict[str, Any] | VerifierConfig | None = None) -> None:
        self.config = config if isinstance(config, VerifierConfig) else self.Config(**(config or {}))

    def score(self, answer: str, truth: str) -> Verdict:
        final, reason = final_answer(answer, require_box=self.verifiable)
        truth = truth_text(truth)
        if final is None:
            return Verdict(0.0, None, truth, reason)
        if len(final) > self.config.max_answer_chars:
            return Verdict(0.0, final[:80] + "…", truth, "too_long")
        if self.config.max_words is not None and len(_WORD_RE.findall(final)) > self.config.max_words:
            return Verdict(0.0, final, truth, "reasoning_in_box")
        return self.compare(final, truth)

    def compare(self, final: str, truth: str) -> Verdict:
        raise NotImplementedError


def final_answer(answer: str, require_box: bool = True) -> tuple[str | None, str]:
    """The final answer of a full `<think>…</think><answer>…</answer>` response (the content of its one box) or
    of a bare answer (its one box, else the whole text), with the reason it is None when it is."""
    parsed = parse_answer(answer)
    if parsed.problems:
        return None, "malformed:" + ",".join(parsed.problems)
    if len(parsed.boxes) > 1:
        return None, "several_boxes"
    if not parsed.bare and require_box and not parsed.boxes:
        return None, "no_box"
    final = parsed.final
    if not final:
        return None, "empty"
    return final, ""


def truth_text(truth: str) -> str:
    """Ground truth as plain text; a truth written as a boxed response gives its box content."""
    if BOX_BEGIN in truth or BOX_END in truth:
        return parse_answer(truth).final or truth.strip()
    return truth.strip()


# --- hedges and sizes, shared by the verifiers ------------------------------------------------------------------

_HEDGE_RE = re.compile(
    r"\b(or|between|approximately|approx|about|around|roughly|nearly|almost|close to|maybe|perhaps|probably|"
    r"likely|either|somewhere|at least|at most|more than|less than|greater than|fewer than|up to|range|"
    r"estimated?|guess|unknown|not sure|any|some|several|neither|none of|all of)\b"
    r"|≈|≲|≳|\\approx|\\sim\b|\\lesssim|\\gtrsim|(?:^|\s)~\s*\d",
    re.I,
)


def hedge(final: str, truth: str) -> str | None:
    """The first hedge (a range, an approximation, a disjunction, a vague quantifier) in `final` that the truth
    does not contain itself, else None."""
    truth_hedges = {m.group(0).strip().lower() for m in _HEDGE_RE.finditer(truth)}
    for m in _HEDGE_RE.finditer(final):
        word = m.group(0).strip().lower()
        if word not in truth_hedges:
            return word
    return None


_MACRO_RE = re.compile(r"\\(?:def|edef|gdef|newcommand|renewcommand|providecommand|let|expandafter|csname|"
                       r"input|include|catcode|loop|repeat)\b")


def oversized(final: str, max_digits: int = 60, max_depth: int = 40, max_exponent: int = 10_000) -> str | None:
    """Why `final` is too big to hand to a computer algebra system (it could hang or fill memory), else None:
    TeX macro definitions (exponential expansion), deep nesting, long digit runs, power towers, huge
    exponents or factorials."""
    if _MACRO_RE.search(final):
        return "latex_macro"
    depth = top = 0
    for ch in final:
        if ch in "{([":
            depth += 1
            top = max(top, depth)
        elif ch in "})]":
            depth -= 1
    if top > max_depth:
        return "too_deep"
    if re.search(r"\d{" + str(max_digits + 1) + ",}", final):
        return "huge_number"
    for m in re.finditer(r"(\^|\*\*)\s*(\{[^{}]*\}|\(?[-+]?[\d.]+\)?)", final):
        exp = m.group(2).strip("{}() ")
        if re.search(r"\^|\*\*", exp) or (re.fullmatch(r"[-+]?\d+", exp) and abs(int(exp)) > max_exponent):
            return "huge_exponent"
    if re.search(r"(\^|\*\*)\s*\{[^{}]*(\^|\*\*)", final) or re.search(r"(\^|\*\*)[^\s]*\^[^\s]*\^", final):
        return "huge_exponent"
    for m in re.finditer(r"(\d+)\s*!", final):
        if int(m.group(1)) > 1000:
            return "huge_number"
    return None


# --- registry ---------------------------------------------------------------------------------------------------

def verifier_classes() -> dict[str, type[Verifier]]:
    """Every registered verifier by domain name: the built-ins, then the entry points of `vlmdata.verifiers`
    (a plug-in may add a domain or replace a built-in). A broken plug-in is reported, not fatal."""
    found = {name: _load(path) for name, path in BUILTINS.items()}
    found.update(load_group(ENTRY_POINT_GROUP, "verifier"))
    return found


def _load(path: str) -> type[Verifier]:
    return import_path(path, "verifier", Verifier)


def verifier_class(domain: str) -> type[Verifier]:
    """The class for a domain name or a `module:Class` import path."""
    if ":" in domain:
        return _load(domain)
    if domain in BUILTINS:
        points = [ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=domain)]
        return points[0].load() if points else _load(BUILTINS[domain])
    points = [ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=domain)]
    if not points:
        known = ", ".join(sorted(set(BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))
        raise ValueError(f"unknown verifier domain {domain!r}; known domains: {known} (or a module:Class path)")
    return points[0].load()


_INSTANCES: dict[tuple[str, str], Verifier] = {}


def get_verifier(domain: str, config: dict[str, Any] | None = None) -> Verifier:
    """The verifier of `domain` with `config`, built once per process and reused."""
    key = (domain, repr(sorted((config or {}).items())))
    inst = _INSTANCES.get(key)
    if inst is None:
        inst = _INSTANCES[key] = verifier_class(domain)(config)
    return inst


def score(domain: str, answer: str, truth: str, config: dict[str, Any] | None = None) -> Verdict:
    """Score one answer in this process, without a timeout (use `train.rewards.pool` for untrusted input)."""
    return get_verifier(domain, config).score(answer, truth)
