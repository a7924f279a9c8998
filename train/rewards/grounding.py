"""Grounding: predicted boxes matched one-to-one to the truth's at IoU ≥ τ (default 0.5), boxes in the 0–1000
convention of `pipelines.formats`.

Truth: JSON `[[x1,y1,x2,y2], …]` or one `[x1,y1,x2,y2]` (or any text holding such boxes). The score is
matched / max(predicted, true): the fraction of predicted boxes that match when the counts agree, and no full
reward for one easy box out of several nor for a spray of boxes (more than `max_box_ratio` per true box
scores 0). A box outside 0–1000 or with x2 ≤ x1 matches
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment

from pipelines.formats import BOX_SCALE, parse_boxes
from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge


class GroundingConfig(VerifierConfig):
    max_answer_chars: int = Field(2000, description="A longer final answer scores 0.")
    iou_threshold: float = Field(0.5, description="τ: a predicted box matches a true one at IoU ≥ τ.")
    max_boxes: int = Field(100, description="An answer with more boxes scores 0.")
    max_box_ratio: float = Field(3.0, description="An answer with more than this many boxes per true box scores 0 "
                                                  "(a spray of boxes hoping to hit).")


def valid(box: Sequence[float]) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= BOX_SCALE and 0 <= y1 < y2 <= BOX_SCALE


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes (0 for an invalid box)."""
    if not (valid(a) and valid(b)):
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_boxes(pred: list[list[float]], true: list[list[float]], tau: float) -> list[tuple[int, int, float]]:
    """One-to-one matches (pred index, true index, IoU) with IoU ≥ τ, as many as possible, then the best IoU."""
    if not pred or not true:
        return []
    ious = np.array([[iou(p, t) for t in true] for p in pred])
    gain = np.where(ious >= tau, 1.0 + ious, 0.0)  # count first, then overlap
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return [(int(r), int(c), float(ious[r, c])) for r, c in zip(rows, cols, strict=True) if ious[r, c] >= tau]


class GroundingVerifier(Verifier):
    name = "grounding"
    Config = GroundingConfig

    def compare(self, final: str, truth: str) -> Verdict:
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        true = parse_boxes(truth)
        if not true:
            return Verdict(0.0, final, truth, "truth_has_no_box")
        pred = parse_boxes(final)
        if not pred:
            return Verdict(0.0, final, truth, "no_box_coordinates")
        if len(pred) > self.config.max_boxes:
            return Verdict(0.0, f"{len(pred)} boxes", truth, "too_many_boxes")
        if len(pred) > self.config.max_box_ratio * len(true):
            return Verdict(0.0, f"{len(pred)} boxes", f"{len(true)} boxes", "box_spray")
        matches = match_boxes(pred, true, self.config.iou_threshold)
        shown = ";".join(f"{p}->{t}:{v:.2f}" for p, t, v in matches)
        return Verdict(len(matches) / max(len(pred), len(true)), _fmt(pred), _fmt(true),
                       f"matched:{len(matches)}/{len(pred)}/{len(true)}" + (f" {shown}" if shown else ""))


def _fmt(boxes: list[list[float]]) -> str:
    return "[" + ",".join("[" + ",".join(f"{v:g}" for v in b) + "]" for b in boxes) + "]"
