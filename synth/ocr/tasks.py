"""The training conversations of an OCR sample: read all the text; read the text inside a given box (the box in
GLM-4.1V's 0–1000 convention). Both tasks are in every sample; their order is drawn per sample, so SFT (which
learns the last assistant turn) sees each task as the target about half the time."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pipelines import columns as C
from pipelines.formats import box_to_1000, format_box

READ_ALL = "Read all the text in the image, line by line."
READ_BOX = "Read the text inside the box {box}."


def ocr_messages(text: str, regions: Sequence[tuple[str, Sequence[float]]], width: int, height: int,
                 rnd: random.Random) -> list[dict[str, Any]]:
    """`text`: the full text in reading order; `regions`: (text, pixel box) of lines or detections, one of which is
    asked about."""
    read_all = [C.user(READ_ALL), C.assistant(text)]
    if not regions:
        return read_all
    region_text, box = regions[rnd.randrange(len(regions))]
    read_box = [C.user(READ_BOX.format(box=format_box(box_to_1000(box, width, height)))), C.assistant(region_text)]
    # The image goes with the first user turn only.
    if rnd.random() < 0.5:
        return read_all + [C.user(read_box[0]["content"][-1]["text"], images=0), read_box[1]]
    return read_box + [C.user(READ_ALL, images=0), read_all[1]]
