"""grounding: fraction of boxes matched one-to-one at IoU ≥ τ (0–1000 convention)."""

import pytest

from pipelines.formats import box_to_1000, format_box
from tests.train.rewards.conftest import full
from train.rewards import score
from train.rewards.grounding import iou

TRUTH = "[[100,100,200,200],[300,300,400,400]]"


def test_iou():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert iou([10, 10, 0, 0], [0, 0, 10, 10]) == 0.0  # x2 <= x1: not a box


@pytest.mark.parametrize(("answer", "expected"), [
    ("[[300,300,400,400],[100,100,200,200]]", 1.0),  # order does not matter
    ("[[105,100,205,200],[300,300,400,400]]", 1.0),  # IoU 0.9
    ("[[100,100,200,200]]", 0.5),  # one of two
    ("[[100,100,200,200],[600,600,700,700]]", 0.5),
    ("[[150,150,250,250],[300,300,400,400]]", 0.5),  # IoU 0.14 < 0.5
    ("[[100,100,200,200],[100,100,200,200]]", 0.5),  # one-to-one: one true box cannot match twice
    ("[[100,100,200,200],[300,300,400,400],[500,500,600,600],[700,700,800,800]]", 0.5),
    ("[[100,100,200,200],[300,300,400,400],[-5,0,2000,1500]]", 2 / 3),
])
def test_scores(answer, expected):
    assert score("grounding", answer, TRUTH).score == pytest.approx(expected)
    assert score("grounding", full(answer), TRUTH).score == pytest.approx(expected)


def test_pixel_boxes_through_the_shared_format():
    box = box_to_1000([64, 48, 128, 96], 640, 480)
    assert score("grounding", f"The cat is at {format_box(box)}", f"[{format_box(box)}]").score == 1.0


def test_threshold_and_adversarial():
    assert score("grounding", "[[100,100,200,200]]", "[100,100,160,200]", {"iou_threshold": 0.5}).score == 1.0
    assert score("grounding", "[[100,100,200,200]]", "[100,100,160,200]", {"iou_threshold": 0.7}).score == 0.0
    spray = "[" + ",".join(f"[{x},{y},{x + 100},{y + 100}]" for x in range(0, 900, 50) for y in range(0, 900, 50)) + "]"
    assert score("grounding", spray, TRUTH).score == 0.0  # too_long or too many boxes
    assert score("grounding", "the left one", TRUTH).reason == "no_box_coordinates"
    assert score("grounding", "[100,100,200,200] or [300,300,400,400]", TRUTH).reason == "hedge:or"
