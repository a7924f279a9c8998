"""GUI agent actions: the action type must match; then the score is the IoU of the target box (0–1000
convention) thresholded at τ, and a typed text or a scroll direction must match as normalised text.

With the default τ = 0.5 a box covering the whole screen does not earn a sliver of reward.

Truth: JSON `{"action": "click", "box": [x1,y1,x2,y2]}` (optional `"text"` for type, `"direction"` for scroll).
Answer: the same JSON, or a call such as `click([x1,y1,x2,y2])`, `click [x1,y1,x2,y2]`, `type("hello")`,
`scroll(down)`. Several boxes for one action score 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field

from pipelines.formats import parse_boxes
from train.rewards.base import Verdict, Verifier, VerifierConfig, hedge
from train.rewards.choice import normalize_text
from train.rewards.grounding import iou

SYNONYMS = {"tap": "click", "left_click": "click", "press": "click", "input": "type", "type_text": "type",
            "swipe": "scroll", "double_click": "doubleclick", "long_press": "longpress"}
_CALL_RE = re.compile(r"^\s*([A-Za-z_]+)\s*[(:]?\s*(.*?)\s*\)?\s*$", re.S)


class GuiConfig(VerifierConfig):
    max_answer_chars: int = Field(400, description="A longer final answer scores 0.")
    iou_threshold: float | None = Field(0.5, description="τ: the score is 1 at IoU ≥ τ; None: the score is the IoU.")


def parse_action(text: str) -> dict[str, Any] | None:
    """`{"action", "boxes", "text", "direction"}` from JSON or a call-like action string, else None."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("action"), str):
        box = obj.get("box")
        boxes = [[float(v) for v in box]] if isinstance(box, list) and len(box) == 4 else parse_boxes(json.dumps(box))
        return {"action": _action(obj["action"]), "boxes": boxes, "text": obj.get("text"),
                "direction": obj.get("direction")}
    m = _CALL_RE.match(text)
    if m is None:
        return None
    args = m.group(2)
    quoted = re.findall(r"[\"“'](.*?)[\"”']", args, re.S)
    bare = args.strip().strip("\"'")
    return {"action": _action(m.group(1)), "boxes": parse_boxes(args), "text": quoted[0] if quoted else None,
            "direction": bare if re.fullmatch(r"[A-Za-z]+", bare) else None}


def _action(name: str) -> str:
    name = name.strip().lower().replace(" ", "_")
    return SYNONYMS.get(name, name)


class GuiVerifier(Verifier):
    name = "gui"
    Config = GuiConfig

    def compare(self, final: str, truth: str) -> Verdict:
        want = parse_action(truth)
        if want is None:
            return Verdict(0.0, final, truth, "truth_not_an_action")
        word = hedge(final, truth)
        if word:
            return Verdict(0.0, final, truth, f"hedge:{word}")
        got = parse_action(final)
        if got is None:
            return Verdict(0.0, final, truth, "not_an_action")
        if got["action"] != want["action"]:
            return Verdict(0.0, got["action"], want["action"], "action_mismatch")
        for key in ("text", "direction"):
            if want[key] is not None and normalize_text(str(got[key] or "")) != normalize_text(str(want[key])):
                return Verdict(0.0, f"{key}={got[key]}", f"{key}={want[key]}", f"{key}_mismatch")
        if not want["boxes"]:
            return Verdict(1.0, got["action"], want["action"], "match")
        if len(got["boxes"]) != 1:
            return Verdict(0.0, f"{got['action']} with {len(got['boxes'])} boxes", truth, "needs_one_box")
        overlap = iou(got["boxes"][0], want["boxes"][0])
        tau = self.config.iou_threshold
        value = overlap if tau is None else float(overlap >= tau)
        return Verdict(value, f"{got['action']} {got['boxes'][0]}", f"{want['action']} {want['boxes'][0]}",
                       f"iou:{overlap:.3f}")
