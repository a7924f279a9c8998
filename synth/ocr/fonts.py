"""Fonts for rendered documents: a catalogue of font files (DejaVu, Noto CJK), their character coverage, and
the tofu check made before anything is drawn."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

# Debian's fonts-dejavu-core and fonts-noto-cjk: every weight the packages ship, regular and bold at least.
DEFAULT_FONTS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc#Noto Sans CJK SC",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc#Noto Sans CJK SC",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc#Noto Serif CJK SC",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc#Noto Serif CJK SC",
)


class FontError(Exception):
    """A font file that cannot be opened or has no usable face; the sample that picked it is dropped."""


@dataclass(frozen=True)
class FontFace:
    """One face: a file, the face index inside a collection, its family name and weight, what it covers."""

    spec: str  # as configured: PATH or PATH#FAMILY (a face of a .ttc collection)
    path: str
    index: int
    family: str
    weight: str  # "regular" | "bold" | …, from the face's subfamily name
    cmap: frozenset[int] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.family} {self.weight}".strip()

    def missing(self, text: str) -> list[str]:
        """Characters of `text` this face cannot draw (they would render as tofu); whitespace and controls are
        not drawn, so they never count."""
        out: list[str] = []
        for ch in dict.fromkeys(text):
            if ch.isspace() or unicodedata.category(ch)[0] == "C" and unicodedata.category(ch) != "Co":
                continue
            if ord(ch) not in self.cmap:
                out.append(ch)
        return out

    def pil(self, size: int) -> ImageFont.FreeTypeFont:
        return _pil_font(self.path, self.index, size)


@lru_cache(maxsize=256)
def _pil_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size, index=index)
    except OSError as exc:
        raise FontError(f"font_load_failed:{Path(path).name}: {exc}") from exc


def load_face(spec: str) -> FontFace:
    """The face named by `spec` (PATH, or PATH#FAMILY for one face of a collection); FontError if it cannot load."""
    from fontTools.ttLib import TTCollection, TTFont, TTLibError

    path, _, family = spec.partition("#")
    try:
        if path.lower().endswith((".ttc", ".otc")):
            faces = TTCollection(path, lazy=True).fonts
        else:
            faces = [TTFont(path, lazy=True)]
    except (OSError, TTLibError, AssertionError, ValueError) as exc:
        raise FontError(f"font_load_failed:{Path(path).name}: {exc}") from exc
    for index, face in enumerate(faces):
        names = face["name"]
        fam = str(names.getDebugName(1) or "")
        if family and fam != family:
            continue
        cmap = face.getBestCmap() or {}
        if not cmap:
            raise FontError(f"font_load_failed:{Path(path).name}: no Unicode cmap")
        weight = str(names.getDebugName(2) or "regular").lower()
        return FontFace(spec, path, index, fam, weight, frozenset(cmap))
    raise FontError(f"font_load_failed:{Path(path).name}: no face named {family!r}")


@lru_cache(maxsize=64)
def cached_face(spec: str) -> FontFace:
    """`load_face`, once per worker (reading a CJK collection's cmap takes a moment)."""
    return load_face(spec)
