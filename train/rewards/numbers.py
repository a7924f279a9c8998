"""Plain numbers in answer text: `1,234.5`, `-3e8`, `3 \\times 10^{8}`, `45%`, `\\frac{3}{4}`, number words."""

from __future__ import annotations

import math
import re

NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+(?:[eE][-+]?\d+)?"
_SCI_RE = re.compile(r"(" + NUM + r")\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*(?:\^|\*\*)\s*\{?\s*([-+−]?\d+)\s*\}?")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(" + NUM + r")\s*\}\s*\{\s*(" + NUM + r")\s*\}")
NUMBER_RE = re.compile(r"(?<![\w.])(" + NUM + r")(?![\w.]*\d)")

WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def to_float(text: str) -> float | None:
    """A finite float from one number's text, else None (overflow to inf and nan are refused)."""
    try:
        value = float(text.replace(",", "").replace("−", "-"))
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def numbers(text: str) -> list[float | None]:
    """Every number written in `text`, in order (scientific notation and simple fractions count as one);
    None stands for a number that is not finite (`1e999`)."""
    found: list[float | None] = []

    def sci(m: re.Match[str]) -> str:
        mant, exp = to_float(m.group(1)), m.group(2).replace("−", "-")
        value = None if mant is None or abs(int(exp)) > 300 else to_float(f"{mant}e{exp}")
        found.append(value)
        return " "

    def frac(m: re.Match[str]) -> str:
        a, b = to_float(m.group(1)), to_float(m.group(2))
        found.append(a / b if a is not None and b else None)
        return " "

    rest = _FRAC_RE.sub(frac, _SCI_RE.sub(sci, text))
    found.extend(to_float(m.group(1)) for m in NUMBER_RE.finditer(rest))
    return found


def word_numbers(text: str) -> list[int]:
    """Number words (zero … twenty) in `text`."""
    return [WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in WORDS]


def close(a: float, b: float, rel: float, abs_: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
