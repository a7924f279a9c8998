"""`gui_qa`: a screenshot with its elements → referring-expression QA pairs (where is "…" → box; what is at this
box → text), boxes in the model text in the 0–1000 convention and in pixels in `boxes`.

Elements with text shown on screen are first read back with PP-OCR; those whose crop does not read as their text
become dropped children (reason ocr_too_small | ocr_empty | ocr_mismatch) and never a QA pair. Per screenshot,
the counts of checked and matched elements go into `gui_ocr` on its first QA child, so summing `gui_ocr` over kept
samples gives the run's match rate.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field

from filters.heuristics import normalize_caption
from pipelines import columns as C
from pipelines.formats import box_to_1000, build_answer, format_box
from pipelines.operator import Drop, Generator, OperatorConfig
from synth.gui.verify import OcrVerifier, normalize

OCR_COUNTS = ("checked", "matched", "ocr_too_small", "ocr_empty", "ocr_mismatch")
GUI_OCR = pa.field("gui_ocr", pa.struct([(k, pa.int32()) for k in OCR_COUNTS]))
QA_TASK = pa.field("qa_task", pa.string())  # "rec" (text → box) | "reg" (box → text)

REC_QUESTIONS = (
    'Where is the {role} "{text}" in this screenshot? Answer with its bounding box.',
    'Locate "{text}" on the screen.',
    'Give the box of the {role} labelled "{text}".',
)
REG_QUESTIONS = (
    "What is shown in the region {box} of this screenshot?",
    "What does the {role} at {box} say?",
    "Read the element at {box}.",
)


class GuiQAConfig(OperatorConfig):
    per_screenshot: int = Field(4, ge=1, le=1000, description="QA pairs (children) made per screenshot at most.")
    rec_share: float = Field(0.5, ge=0, le=1, description="Share of pairs that ask for a box (the rest ask for text).")
    seed: int = Field(0, description="Picks elements and templates (with the screenshot's key): reruns agree.")
    min_text_chars: int = Field(2, ge=1, description="Elements with fewer letters/digits are not asked about.")
    max_text_chars: int = Field(80, ge=1, description="Elements with longer text are not asked about.")
    verify_ocr: bool = Field(True, description="Read each shown text back with PP-OCR before asking about it.")
    min_ocr_ratio: float = Field(80.0, ge=0, le=100, description="rapidfuzz ratio (0-100) of OCR text vs DOM text "
                                                                 "an element needs.")
    min_ocr_height: float = Field(8.0, ge=0, description="Boxes lower than this (px) cannot be read: ocr_too_small.")
    single_line_height: float = Field(48.0, gt=0, description="Crops up to this high go to the recogniser alone; "
                                                              "taller ones get text detection first.")
    max_checks: int = Field(16, ge=1, description="Elements read back per screenshot at most (OCR is the cost).")
    rec_questions: tuple[str, ...] = Field(REC_QUESTIONS, min_length=1, description="Templates: {text}, {role}.")
    reg_questions: tuple[str, ...] = Field(REG_QUESTIONS, min_length=1, description="Templates: {box}, {role}.")


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,39}")


def _role_word(element: dict[str, Any]) -> str:
    """The element's role (or tag) as a word for the question; anything else a page wrote there is "element"."""
    role = next((r for r in (element.get("role"), element.get("tag")) if r and _WORD.fullmatch(r)), "element")
    return {"listitem": "list item", "textbox": "text field", "img": "image", "columnheader": "column header",
            "searchbox": "search field", "combobox": "drop-down"}.get(role, role)


class GuiQA(Generator):
    name = "gui_qa"
    Config = GuiQAConfig
    reads = ("image", "elements", "width", "height")
    adds = (C.MESSAGES, C.BOXES, QA_TASK, GUI_OCR)

    def setup(self) -> None:
        self._verifier: OcrVerifier | None = None

    @property
    def verifier(self) -> OcrVerifier:
        if getattr(self, "_verifier", None) is None:
            c = self.config
            self._verifier = OcrVerifier(c.min_ocr_ratio, c.min_ocr_height, c.single_line_height)
        return self._verifier

    def candidates(self, elements: list[dict[str, Any]]) -> list[int]:
        """Indexes of elements one can ask about: text of the right length, unique on the screenshot (a
        question about one of two identical links has no single answer)."""
        seen: dict[str, int] = {}
        for e in elements:
            key = normalize(e.get("text") or "")
            seen[key] = seen.get(key, 0) + 1
        out = []
        for i, e in enumerate(elements):
            text = e.get("text") or ""
            key = normalize(text)
            if self.config.min_text_chars <= len(key) and len(text) <= self.config.max_text_chars and seen[key] == 1:
                out.append(i)
        return out

    def generate(self, row: dict[str, Any]):
        c = self.config
        # Targets carry text as the screenshot can show it (gui_screenshot normalises already; rows from
        # elsewhere may not): control characters out, whitespace collapsed, an emptied text no target.
        elements = [{**e, "text": normalize_caption(e.get("text") or "") or None} for e in row.get("elements") or []]
        shown = row.get("elements_text_shown") or [True] * len(elements)
        width, height = int(row["width"]), int(row["height"])
        pool = self.candidates(elements)
        if not pool:
            raise Drop("no_text_elements")
        rng = random.Random(f"{c.seed}:{row['key']}")
        rng.shuffle(pool)
        image = None
        counts = dict.fromkeys(OCR_COUNTS, 0)
        children: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for i in pool:
            if len(children) >= c.per_screenshot:
                break
            e = elements[i]
            box = [float(v) for v in e["box"]]
            if c.verify_ocr and shown[i]:
                if counts["checked"] >= c.max_checks:
                    continue
                if image is None:
                    with Image.open(io.BytesIO(row["image"])) as im:
                        image = np.asarray(im.convert("RGB"))
                check = self.verifier.check(image, box, e["text"])
                counts["checked"] += 1
                if not check.ok:
                    counts[check.reason] += 1
                    failed.append({"keep": False, "reason": f"{check.reason}:{check.ratio:.0f}", "text": e["text"],
                                   "boxes": [{"box": box, "label": e["text"], "score": None}],
                                   "messages": None, "qa_task": None})
                    continue
                counts["matched"] += 1
            children.append(self.pair(e, box, width, height, rng, bool(shown[i])))
        if children:
            children[0]["gui_ocr"] = counts
        elif not failed:
            raise Drop("no_text_elements")
        return children + failed

    def pair(self, e: dict[str, Any], box: list[float], width: int, height: int, rng: random.Random,
             shown: bool = True) -> dict[str, Any]:
        c = self.config
        text, role = e["text"], _role_word(e)
        norm_box = format_box(box_to_1000(box, width, height))
        if rng.random() < c.rec_share:
            question = rng.choice(c.rec_questions).format(text=text, role=role)
            answer, task = build_answer("", boxed=norm_box), "rec"
        else:
            question = rng.choice(c.reg_questions).format(box=norm_box, role=role)
            lead = f"The {role} reads: " if shown else f"The {role} is labelled: "
            answer, task = build_answer(lead, boxed=text), "reg"
        return {"messages": C.qa(question, answer), "boxes": [{"box": box, "label": text, "score": None}],
                "text": text, "qa_task": task, "gui_ocr": None}
