"""Heuristic filters of the GLM-4.1V report: resolution, aspect ratio, solid colour, caption normalisation and length."""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
from pydantic import Field

from pipelines.operator import Operator, OperatorConfig, with_verdicts

_SPACES = re.compile(r"\s+")


class HeuristicsConfig(OperatorConfig):
    min_side: int = Field(64, ge=1, description="Drop images whose shorter side is below this (pixels).")
    max_aspect_ratio: float = Field(5.0, ge=1.0, description="Drop images whose long/short side ratio exceeds this.")
    solid_color_std: float = Field(2.0, ge=0.0, description="Drop images whose thumbnail colour std (0-255) is at or below this.")
    min_caption_chars: int = Field(2, ge=1, description="Drop captions shorter than this after normalisation.")
    max_caption_chars: int = Field(4000, ge=1, description="Drop captions longer than this after normalisation.")


def normalize_caption(text: str) -> str:
    """NFC, control/format characters removed, every whitespace run one space, trimmed."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        " " if ch in "\t\n\r\x0b\x0c" else ch
        for ch in text
        if ch in "\t\n\r\x0b\x0c" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
    )
    return _SPACES.sub(" ", text).strip()


class Heuristics(Operator):
    name = "heuristics"
    Config = HeuristicsConfig
    reads = ("text", "width", "height", "color_std")  # the decode stage's columns

    def verdict(self, width: int, height: int, color_std: float, caption: str) -> tuple[str | None, bool]:
        cfg = self.config
        if not caption:
            return "caption_empty", True
        if min(width, height) < cfg.min_side:
            return f"too_small:{width}x{height}", False
        ratio = max(width, height) / max(1, min(width, height))
        if ratio > cfg.max_aspect_ratio:
            return f"aspect_ratio:{ratio:.1f}", False
        if color_std <= cfg.solid_color_std:
            return "solid_color", False
        if len(caption) < cfg.min_caption_chars:
            return "caption_too_short", False
        if len(caption) > cfg.max_caption_chars:
            return "caption_too_long", False
        return None, False

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts = [normalize_caption(t or "") for t in batch.column("text").to_pylist()]
        rows = zip(
            batch.column("width").to_pylist(),
            batch.column("height").to_pylist(),
            batch.column("color_std").to_pylist(),
            texts,
            strict=True,
        )
        verdicts = [self.verdict(w, h, s, t) for w, h, s, t in rows]
        return with_verdicts(
            batch,
            keep=[r is None for r, _ in verdicts],
            reason=[r for r, _ in verdicts],
            error=[e for _, e in verdicts],
            columns={"text": texts},
        )
