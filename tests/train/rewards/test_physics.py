"""physics and chemistry: units parsed (pint) and converted to the truth's unit, then compared as math."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score


@pytest.mark.parametrize(("domain", "answer", "truth"), [
    ("physics", r"3.0 \times 10^{8}\,\mathrm{m/s}", "300000 km/s"),
    ("physics", "9.81 m/s^2", "981 cm/s^2"),
    ("physics", r"25\,^\circ C", "298.15 K"),
    ("physics", r"2\,\mathrm{kN}", "2000 N"),
    ("physics", r"5\,\mu\mathrm{s}", "5e-6 s"),
    ("physics", "12", "12 J"),  # the question named the unit
    ("chemistry", "0.1 mol/L", "100 mmol/L"),
    ("chemistry", "H_2O", "H2O"),
    ("chemistry", r"\frac{1}{4}", "0.25"),
])
def test_true(domain, answer, truth):
    assert score(domain, answer, truth).score == 1.0, score(domain, answer, truth)
    assert score(domain, full(answer), truth).score == 1.0


@pytest.mark.parametrize(("domain", "answer", "truth", "reason"), [
    ("physics", "3.1e8 m/s", "3e8 m/s", "mismatch"),
    ("physics", "9.81 kg", "9.81 m/s^2", "incompatible_units"),
    ("physics", "300 m/s", "300 km/s", "mismatch"),
    ("chemistry", "0.1 mol", "0.1 mol/L", "incompatible_units"),
    ("chemistry", "CO2", "H2O", "mismatch"),
])
def test_false(domain, answer, truth, reason):
    v = score(domain, answer, truth)
    assert v.score == 0.0 and v.reason == reason, v


@pytest.mark.parametrize(("answer", "reason"), [
    ("a value very close to the speed of light", "reasoning_in_box"),
    ("very close to c", "hedge:close to"),
    ("the speed of light", "not_a_quantity"),
    ("fast, relativistic", "not_a_quantity"),
    ("between 2e8 and 4e8 m/s", "hedge:between"),
    ("~3e8 m/s", "hedge:~3"),
    ("1e999 m/s", "not_a_quantity"),
])
def test_descriptive_or_hedged_answer_where_a_quantity_is_asked(answer, reason):
    v = score("physics", answer, "299792458 m/s")
    assert v.score == 0.0 and v.reason == reason, v
