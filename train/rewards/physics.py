"""Physics and chemistry: a quantity with units (parsed by `pint`), converted to the truth's unit and compared as
math does (relative tolerance 1e-6); a descriptive answer where a quantity is asked scores 0. A truth that is not
a quantity (a formula, an expression, a word) is compared as text, then as math.

Truth: `3e8 m/s`, `2.998 \\times 10^{8}\\,\\mathrm{m/s}`, `9.81 m/s^2`, `0.1 mol/L`, `25 °C`, or a bare number
(the question names the unit; an answer's number is then taken as is), or a non-quantity such as `H2O`.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from pydantic import Field

from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge, oversized
from train.rewards.choice import normalize_text
from train.rewards.math import MathVerifier
from train.rewards.numbers import NUM, to_float


class PhysicsConfig(VerifierConfig):
    rel_tol: float = Field(1e-6, description="Relative tolerance after unit conversion.")
    abs_tol: float = Field(1e-12, description="Absolute tolerance (quantities near 0).")
    max_words: int | None = Field(6, description="More words than this (LaTeX commands aside) score 0.")


@lru_cache(maxsize=1)
def units() -> Any:
    """One pint registry per process (building it takes a few hundred ms)."""
    import pint

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


_LATEX = [
    (r"\$", ""), (r"\\[,;:! ]", " "), (r"~", " "), (r"\\left|\\right", ""),
    (r"\\(?:text|mathrm|textrm|operatorname|rm|mbox)\s*\{([^{}]*)\}", r" \1 "),
    (r"\^\s*\{?\\circ\}?\s*C\b", " degC"), (r"\^\s*\{?\\circ\}?\s*F\b", " degF"), (r"\^\s*\{?\\circ\}?", " deg"),
    (r"°\s*C\b", " degC"), (r"°\s*F\b", " degF"), (r"°", " deg"), (r"\\%|%", " percent"),
    (r"\\mu\s*|µ|μ", "u"), (r"\\Omega|Ω", "ohm"), (r"\\AA|Å", "angstrom"),
    (r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)"),
    (r"\\cdot|·|⋅", "*"), (r"\\times|×", "*"), (r"\^\s*\{([^{}]*)\}", r"**(\1)"), (r"\^", "**"),
    (r"−", "-"), (r"[{}]", " "),
]
_LATEX_RE = [(re.compile(a), b) for a, b in _LATEX]
_SCI_RE = re.compile(r"^\s*(" + NUM + r")"
                     r"(?:\s*\*\s*10\s*\*\*\s*\(?\s*([-+]?\d+)\s*\)?)?\s*(.*)$", re.S)


def plain(text: str) -> str:
    """LaTeX units and scientific notation as pint reads them."""
    for pattern, repl in _LATEX_RE:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def quantity(text: str) -> tuple[float, Any] | None:
    """`(magnitude, pint unit)` for a text that is exactly one number and an optional unit, else None."""
    m = _SCI_RE.match(plain(text))
    if m is None:
        return None
    mag = to_float(m.group(1))
    if mag is None:
        return None
    if m.group(2):
        exp = int(m.group(2))
        if abs(exp) > 300:
            return None
        mag = to_float(f"{mag}e{exp}")
        if mag is None:
            return None
    unit_text = m.group(3).strip().rstrip(".")
    if not unit_text:
        return mag, None
    if re.search(r"\d{3,}|[=<>]", unit_text) or len(unit_text) > 40:
        return None
    try:
        unit = units().parse_units(unit_text.replace(" per ", "/"))
    except Exception:  # noqa: BLE001 - pint raises many kinds for text that is not a unit
        return None
    return mag, unit


class PhysicsVerifier(Verifier):
    name = "physics"
    Config = PhysicsConfig

    def __init__(self, config: dict[str, Any] | VerifierConfig | None = None) -> None:
        super().__init__(config)
        self._math = MathVerifier({"max_answer_chars": self.config.max_answer_chars,
                                   "max_words": self.config.max_words})

    def compare(self, final: str, truth: str) -> Verdict:
        why = oversized(final)
        if why:
            return Verdict(0.0, final, truth, why)
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        want = quantity(truth)
        if want is None:  # not a quantity: a formula, a name, an expression
            if normalize_text(final) == normalize_text(truth) or _formula(final) == _formula(truth):
                return Verdict(1.0, final, truth, "text_match")
            return self._math.compare(final, truth)
        got = quantity(final)
        if got is None:  # an expression (\frac{1}{4}, 2\sqrt{3}) is a quantity in the truth's unit
            value = self._math.number(self._math.parse(final), "")
            if value is None:
                return Verdict(0.0, final, truth, "not_a_quantity")
            got = value, None
        (g_mag, g_unit), (w_mag, w_unit) = got, want
        if w_unit is not None and g_unit is not None:
            try:
                q = units().Quantity(g_mag, g_unit).to(w_unit)
            except Exception:  # noqa: BLE001 - pint's DimensionalityError and friends
                return Verdict(0.0, f"{g_mag} {g_unit}", f"{w_mag} {w_unit}", "incompatible_units")
            g_mag = float(q.magnitude)
        ok = math.isfinite(g_mag) and math.isclose(g_mag, w_mag, rel_tol=self.config.rel_tol,
                                                   abs_tol=self.config.abs_tol)
        unit = f" {w_unit}" if w_unit is not None else ""
        return Verdict(float(ok), f"{g_mag:.10g}{unit}", f"{w_mag:.10g}{unit}", "match" if ok else "mismatch")


class ChemistryVerifier(PhysicsVerifier):
    name = "chemistry"


def _formula(text: str) -> str:
    """A chemical formula without sub/superscript markup: `H_2O`, `H$_2$O`, `\\mathrm{H_2O}` → `H2O`."""
    return re.sub(r"[\s$_{}^]|\\mathrm|\\text|\\rm", "", text)
