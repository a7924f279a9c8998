"""gui: action type, then IoU of the target box; typed text and scroll direction by normalised match."""

import pytest

from tests.train.rewards.conftest import full
from train.rewards import score

CLICK = '{"action": "click", "box": [100, 100, 200, 200]}'


@pytest.mark.parametrize(("answer", "expected"), [
    ("click([100,100,200,200])", 1.0),
    ("CLICK [100, 100, 200, 200]", 1.0),
    ("tap([100,100,200,200])", 1.0),
    ('{"action": "click", "box": [100, 100, 200, 200]}', 1.0),
    ("click([100,100,200,150])", 1.0),  # IoU 0.5 ≥ τ
    ("click([100,100,200,140])", 0.0),  # IoU 0.4
    ("click([0,0,1000,1000])", 0.0),  # the whole screen
    ("click([300,300,400,400])", 0.0),
    ("type([100,100,200,200])", 0.0),
    ("click([100,100,200,200],[300,300,400,400])", 0.0),
    ("click()", 0.0),
])
def test_click(answer, expected):
    assert score("gui", answer, CLICK).score == pytest.approx(expected)
    assert score("gui", full(answer), CLICK).score == pytest.approx(expected)


def test_type_and_scroll():
    truth = '{"action": "type", "text": "Hello World"}'
    assert score("gui", 'type("hello world")', truth).score == 1.0
    assert score("gui", 'type("hello")', truth).reason == "text_mismatch"
    scroll = '{"action": "scroll", "direction": "down"}'
    assert score("gui", "scroll(down)", scroll).score == 1.0
    assert score("gui", "scroll(up)", scroll).score == 0.0


def test_threshold_and_hedge():
    assert score("gui", "click([100,100,200,140])", CLICK, {"iou_threshold": None}).score == pytest.approx(0.4)
    assert score("gui", "click([100,100,200,140])", CLICK, {"iou_threshold": 0.3}).score == 1.0
    assert score("gui", "click([100,100,200,200]) or click([300,300,400,400])", CLICK).reason == "hedge:or"
    assert score("gui", "click", "[1, 2]").reason == "truth_not_an_action"
